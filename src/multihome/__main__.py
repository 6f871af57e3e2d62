"""`python -m multihome` is the `multihome` command."""

from multihome.cli import main

raise SystemExit(main())
