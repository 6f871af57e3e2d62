"""multihome: source-based policy routing for multi-homed Linux hosts."""

__version__ = "0.1.0"

CONFIG_PATH = "/etc/multihome/multihome.toml"  # the default config file
PROTOCOL = 77  # rtnetlink protocol number of every rule and route multihome creates
# /etc/iproute2/rt_protos.d/multihome.conf: `ip` shows the name instead of the number
RT_PROTOS = f"# rules and routes created by multihome\n{PROTOCOL}\tmultihome\n"
# what `multihome install` wrote, relative to its root (operations reads it on every plan)
INSTALL_MANIFEST = "var/lib/multihome/installed.json"
