"""Render the files a distribution package ships besides the code, from the code itself: the
man pages, the bash and zsh completion, the systemd units (as `multihome export --format
systemd` writes them) and the commented example config.

    python3 -m multihome.cli.distfiles DIR [--executable /usr/bin/multihome]

writes DIR/multihome.8, DIR/multihome.toml.5, DIR/bash-completion/multihome,
DIR/zsh/_multihome, DIR/multihome.service, DIR/multihome-watch.service and
DIR/multihome.toml and DIR/rt_protos.d/multihome.conf. debian/rules runs it at build time.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from multihome import RT_PROTOS
from multihome.cli import completion, manpage
from multihome.core import configkeys
from multihome.core.model import Desired, Ownership
from multihome.render import HEADER, Options
from multihome.render import systemd as render_systemd

UNIT_HEADER = (
    "shipped by the multihome package (disabled); `systemctl enable --now` it, "
    "and override with `systemctl edit`"
)

def units(executable: str) -> dict[str, str]:
    """multihome.service and multihome-watch.service, the text `multihome export --format
    systemd` renders, with a header that says where they come from."""
    rendered = render_systemd.render(Desired(Ownership()), Options(executable=executable))
    return {
        name: text.replace(HEADER, UNIT_HEADER)
        for name, text in rendered.files.items()
        if name.endswith(".service")
    }


def render(executable: str) -> dict[str, str]:
    from multihome.cli import build_parser

    parser = build_parser()
    return {
        "multihome.8": manpage.multihome_8(parser),
        "multihome.toml.5": manpage.multihome_toml_5(),
        "bash-completion/multihome": completion.bash(parser),
        "zsh/_multihome": completion.zsh(parser),
        "multihome.toml": configkeys.example_config(),
        # as apply writes it where the directory exists (kernel.py), so a host that ran
        # multihome before the package has the same file and dpkg asks nothing
        "rt_protos.d/multihome.conf": RT_PROTOS,
        **units(executable),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m multihome.cli.distfiles")
    parser.add_argument("directory")
    parser.add_argument("--executable", default="/usr/bin/multihome")
    args = parser.parse_args(argv)
    for name, text in render(args.executable).items():
        path = os.path.join(args.directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
