"""`python -m multihome` is the `multihome` command."""

from multihome.cli import run

run()
