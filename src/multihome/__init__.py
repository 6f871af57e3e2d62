"""multihome: source-based policy routing for multi-homed Linux hosts."""

__version__ = "0.1.0"

PROTOCOL = 77  # rtnetlink protocol number of every rule and route multihome creates
