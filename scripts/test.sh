#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian/Ubuntu machine (as root) and run them
# all: lint (ruff), types (mypy --strict), unit tests, and the network-namespace tests
# against the real kernel. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
# the persistence tests run the real systemd-networkd in a namespace
[[ -x /lib/systemd/systemd-networkd ]] || need_apt+=(systemd)
# ... and the real netplan and ifupdown on the rendered files
command -v netplan >/dev/null || need_apt+=(netplan.io)
command -v ifup >/dev/null || need_apt+=(ifupdown)
# ... the real NetworkManager (and dnsmasq as a DHCP server) in a namespace
command -v NetworkManager >/dev/null || need_apt+=(network-manager)
command -v dnsmasq >/dev/null || need_apt+=(dnsmasq-base)
# the units run in their sandbox under a real systemd, booted in a container (systemd-nspawn)
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
# the Debian package is built (debhelper, pybuild) and installed in a root made by mmdebstrap;
# the man pages are checked with man, the completion with bash and zsh
for package in debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
    mmdebstrap man-db zsh; do
    dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'ok installed' ||
        need_apt+=("$package")
done
# gateway mode writes nftables and conntrack through their tools; the coexistence tests
# build Docker's, wg-quick's and kube-proxy's nftables tables
command -v nft >/dev/null || need_apt+=(nftables)
command -v conntrack >/dev/null || need_apt+=(conntrack)
# ... and read the firewall as Docker, libvirt and kube-proxy write it: iptables-nft rules
# (iptables-save), which `nft -j` shows only as opaque xt expressions
command -v iptables-save >/dev/null || need_apt+=(iptables)
if ((${#need_apt[@]})); then
    echo "== installing ${need_apt[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
    echo "== creating the virtualenv .venv"
    python3 -m venv .venv
fi
echo "== installing multihome with its test tools into .venv"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,lab]'

echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== mypy --strict"
.venv/bin/mypy --strict
echo "== pytest (unit and netns)"
mkdir -p .test-results
.venv/bin/python -m pytest -ra --junitxml=.test-results/junit.xml "$@"
