"""multihome: source-based policy routing for multi-homed Linux hosts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("multihome")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

PROTOCOL = 77  # rtnetlink protocol number of every rule and route multihome creates
