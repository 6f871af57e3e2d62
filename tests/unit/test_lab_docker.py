"""`multihome lab docker` without Docker: the cgroup mounts dockerd gets, the report, and the
message when Docker is not installed."""

from __future__ import annotations

import pytest

from multihome import cli
from multihome.lab import docker, dockerd

# /proc/self/mountinfo of a hybrid host (Debian 12 in a VM), shortened
HYBRID = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
40 22 0:40 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=400000k,mode=755
"""
UNIFIED = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""


def test_cgroup_hierarchies_are_mounted_again_parents_first() -> None:
    mounts = dockerd.cgroup_mounts(HYBRID)
    assert [(m.fstype, m.target) for m in mounts] == [
        ("tmpfs", "/sys/fs/cgroup"),
        ("cgroup2", "/sys/fs/cgroup/unified"),
        ("cgroup", "/sys/fs/cgroup/systemd"),
        ("cgroup", "/sys/fs/cgroup/cpu,cpuacct"),
        ("cgroup", "/sys/fs/cgroup/memory"),
    ]
    # the mount's flags and the superblock's options: the controllers, name=systemd
    assert mounts[2].options == "rw,nosuid,nodev,noexec,relatime,xattr,name=systemd"
    assert mounts[3].options.endswith(",cpu,cpuacct")
    assert mounts[0].options == "rw,nosuid,nodev,noexec,mode=755"  # the mount points go in it
    assert [(m.fstype, m.target) for m in dockerd.cgroup_mounts(UNIFIED)] == [
        ("cgroup2", "/sys/fs/cgroup")
    ]


def test_a_name_that_is_no_cgroup_name_is_refused() -> None:
    for name in ("../x", "", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            dockerd.Dockerd("ns", "/tmp/x", name)


def _result() -> docker.DockerResult:
    def phase(name: str, eth1: int, tx1: int) -> docker.PhaseResult:
        return docker.PhaseResult(
            name=name,
            ok={"eth0": 20, "eth1": eth1},
            failed={"eth0": 0, "eth1": 20 - eth1},
            tx_packets={"eth0": 1400, "eth1": tx1},
        )

    return docker.DockerResult(
        options=docker.DockerOptions(),
        docker_version="20.10.24+dfsg1",
        storage_driver="overlay2",
        addresses={"eth0": "192.0.2.10", "eth1": "192.0.2.42"},
        phases=(phase("stock", 0, 0), phase("multihome", 20, 1400)),
    )


def test_report_shows_the_connections_per_isp_like_the_seed_table() -> None:
    result = _result()
    assert docker.summary(result) == [
        "phase      via eth0 (192.0.2.10:8080)  via eth1 (192.0.2.42:8080)  eth0 TX  eth1 TX",
        "stock                           20/20                        0/20  100.00%    0.00%",
        "multihome                       20/20                       20/20   50.00%   50.00%",
    ]
    data = docker.to_json(result)
    assert data["phases"][0]["uplinks"]["eth1"] == {
        "address": "192.0.2.42",
        "ok": 0,
        "failed": 20,
        "tx_packets": 0,
        "tx_share": 0.0,
    }
    assert docker.title(result).startswith("multihome lab docker: the real dockerd in a server")


def test_without_docker_the_lab_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(dockerd, "DOCKERD", "/nonexistent/dockerd")
    assert cli.main(["lab", "docker"]) == 2
    err = capsys.readouterr().err
    assert "the real Docker is not installed: no /nonexistent/dockerd (docker.io)" in err
    assert "apt-get install docker.io busybox-static iptables" in err


def test_lab_docker_refuses_options_it_does_not_take(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lab", "docker", "--keep"]) == 2
    assert "--keep does not go with `lab docker`" in capsys.readouterr().err
