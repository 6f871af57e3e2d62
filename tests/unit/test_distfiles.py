"""What the package ships besides the code, checked against the code: the man pages and the
completion against the argument parser, the config's documentation and example against the
config loader, the systemd units against `multihome export --format systemd`."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from multihome import __version__
from multihome.cli import build_parser, completion, distfiles, manpage
from multihome.cli.manpage import help_text, options, subcommands
from multihome.core import config, configkeys, records
from multihome.host import configfile

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLE = REPO / "examples" / "multihome.toml"
REGENERATE = (
    "python3 -c 'from multihome.core.configkeys import example_config; "
    "print(example_config(), end=\"\")' > examples/multihome.toml"
)


def settings(cfg: config.Config) -> config.Config:
    """A config without where it came from, to compare what it says."""
    return records.replace(cfg, path="", lines={})


def man(text: str, tmp_path: Path) -> str:
    """The page as `man` shows it, one line per paragraph (a very wide terminal), checking
    that groff has no warning about it."""
    page = tmp_path / "page"
    page.write_text(text)
    result = subprocess.run(
        ["man", "--warnings", "-l", str(page)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "1000", "LC_ALL": "C.UTF-8"},
        check=True,
    )
    assert result.stderr == "", result.stderr
    return re.sub(r"[ \t]+", " ", result.stdout)


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("`", "")).strip()


# -- the config file: one table of keys, checked against the loader


def test_the_key_table_names_every_key_the_loader_knows() -> None:
    documented: dict[str, set[str]] = {}
    for key in configkeys.KEYS:
        documented.setdefault(key.section, set()).add(key.name)
    loader = {**config._SECTIONS, configkeys.UPLINK_SECTION: config._UPLINK_KEYS}
    assert documented == loader
    assert {s for s, _ in configkeys.SECTIONS} == set(loader)


@pytest.mark.parametrize("key", configkeys.KEYS, ids=lambda k: k.dotted)
def test_each_documented_default_is_the_loaders_default(key: configkeys.Key) -> None:
    section = key.section.replace("NAME", "eth0")
    bare = config.parse(f"[{section}]\n")
    if key.default is None:
        # computed defaults: the key is unset unless given
        field = {"gateway": "gateway4"}.get(key.name, key.name)
        assert getattr(bare.uplinks[0], field) is None
        return
    given = config.parse(f"[{section}]\n{key.name} = {key.default}\n")
    assert settings(given) == settings(bare)


@pytest.mark.parametrize("key", configkeys.KEYS, ids=lambda k: k.dotted)
def test_each_documented_example_is_accepted(key: configkeys.Key) -> None:
    section = key.section.replace("NAME", "eth0")
    config.parse(f"[{section}]\n{key.name} = {key.example}\n")


def test_the_example_config_is_the_rendered_one() -> None:
    assert EXAMPLE.read_text() == configkeys.example_config(), f"regenerate it: {REGENERATE}"


def test_the_example_config_loads_as_the_defaults() -> None:
    # the real loader, with its permission check, on the file as shipped
    assert settings(configfile.load(str(EXAMPLE))) == settings(config.Config())


def test_the_example_config_uncommented_sets_every_key(tmp_path: Path) -> None:
    text = re.sub(r"^#(\[|\w+ = )", r"\1", EXAMPLE.read_text(), flags=re.M)
    path = tmp_path / "multihome.toml"
    path.write_text(text)
    path.chmod(0o600)
    loaded = configfile.load(str(path))
    assert set(loaded.lines) >= {k.dotted.replace("NAME", "eth0") for k in configkeys.KEYS}
    (uplink,) = loaded.uplinks
    assert (uplink.name, str(uplink.gateway4), str(uplink.gateway6), uplink.table) == (
        "eth0",
        "192.0.2.1",
        "fe80::1",
        100,
    )
    assert [str(p) for p in uplink.probe] == ["203.0.113.100"]


def test_the_config_page_documents_every_key_with_its_default_and_an_example(
    tmp_path: Path,
) -> None:
    page = man(manpage.multihome_toml_5(), tmp_path)
    for key in configkeys.KEYS:
        assert f"{key.name} = {key.example}\n" in page, key
        assert flat(key.meaning) in flat(page), key
        assert f"Default: {configkeys.default_description(key)}." in page, key
    example = page.split("EXAMPLE\n", 1)[1].split("SEE ALSO", 1)[0]
    parsed = config.parse("\n".join(line.strip() for line in example.splitlines()))
    assert [u.name for u in parsed.uplinks] == ["eth0"]


# -- multihome(8) and the completion: from the parser


def parser_items() -> list[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    parser = build_parser()
    items = [("", parser, a) for a in options(parser)]
    for name, sub in subcommands(parser).items():
        items += [(name, sub, a) for a in options(sub)]
    return items


def test_the_man_page_has_every_command_and_option_with_its_help(tmp_path: Path) -> None:
    parser = build_parser()
    page = man(manpage.multihome_8(parser), tmp_path)
    flat_page = flat(page)
    commands = "\n" + page.split("\nCOMMANDS\n", 1)[1]
    for name, sub in subcommands(parser).items():
        assert f"\n {name}\n multihome {name} [-" in commands, name
        assert flat(sub.description or "") in flat_page, name
    for name, sub, action in parser_items():
        for flag in action.option_strings:
            assert flag in page, (name, flag)
        assert flat(help_text(sub, action)) in flat_page, (name, action.dest)
    assert flat(parser.epilog or "") in flat_page


def scenarios() -> list[str]:
    """The lab's scenarios, from its positional argument."""
    lab = subcommands(build_parser())["lab"]
    (scenario,) = [a for a in options(lab) if a.dest == "scenario"]
    return sorted(map(str, scenario.choices or ()))


def complete(script: str, words: list[str], tmp_path: Path) -> list[str]:
    """What bash offers for the last word, running the generated completion function."""
    path = tmp_path / "completion.bash"
    path.write_text(script)
    shell = f"""
        source {path}
        COMP_WORDS=({" ".join(repr(w) for w in words)})
        COMP_CWORD={len(words) - 1}
        _multihome
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True)
    return sorted(filter(None, out.stdout.splitlines()))


def test_bash_completes_commands_options_and_values(tmp_path: Path) -> None:
    parser = build_parser()
    script = completion.bash(parser)
    assert complete(script, ["multihome", ""], tmp_path) == sorted(
        ["--netns", "--json", "-c", "--config", "--version", "-h", "--help", *subcommands(parser)]
    )
    assert complete(script, ["multihome", "un"], tmp_path) == ["uninstall"]
    assert complete(script, ["multihome", "--netns", "x", "pl"], tmp_path) == ["plan"]
    assert complete(script, ["multihome", "plan", "--"], tmp_path) == sorted(
        ["--help", "--netns", "--json", "--config", "--format", "--check"]
    )
    assert complete(script, ["multihome", "plan", "--format", ""], tmp_path) == ["diff", "ip"]
    assert complete(script, ["multihome", "export", "--format", "n"], tmp_path) == [
        "netplan",
        "networkd",
        "networkmanager",
    ]
    assert complete(script, ["multihome", "counters", "--format", ""], tmp_path) == [
        "ifconfig",
        "table",
    ]
    assert complete(script, ["multihome", "lab", ""], tmp_path) == scenarios()
    assert complete(script, ["multihome", "lab", "seed", "--ke"], tmp_path) == ["--keep"]
    # interface names (this machine's), then `=`
    assert complete(script, ["multihome", "export", "--network-file", "l"], tmp_path) == [
        "lo="
    ]
    # network namespaces: the names under /run/netns
    expected = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    assert complete(script, ["multihome", "--netns", ""], tmp_path) == expected
    (tmp_path / "some.toml").write_text("")
    assert complete(script, ["multihome", "-c", str(tmp_path / "so")], tmp_path) == [
        str(tmp_path / "some.toml")
    ]


def test_every_option_with_choices_completes_them(tmp_path: Path) -> None:
    script = completion.bash(build_parser())
    for name, _sub, action in parser_items():
        if action.choices is None or not action.option_strings:
            continue
        words = ["multihome", *([name] if name else []), action.option_strings[0], ""]
        assert complete(script, words, tmp_path) == sorted(map(str, action.choices)), words


def test_zsh_completion_names_every_command_and_option() -> None:
    parser = build_parser()
    script = completion.zsh(parser)
    assert script.startswith("#compdef multihome\n")
    for name, _sub, action in parser_items():
        for flag in action.option_strings:
            assert flag in script, (name, flag)
        if action.choices is not None:
            assert "(" + " ".join(map(str, action.choices)) + ")" in script
    for name in subcommands(parser):
        assert f"\n                {name})\n" in script


def need(program: str) -> None:
    if shutil.which(program) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{program} is missing; scripts/test.sh installs it")
        pytest.skip(f"needs {program}")


def test_zsh_completes_commands_options_and_values(tmp_path: Path) -> None:
    need("zsh")
    (tmp_path / "_multihome").write_text(completion.zsh(build_parser()))
    cases = {
        "multihome pl": ["plan"],
        "multihome plan --": ["--check", "--config", "--format", "--help", "--json", "--netns"],
        "multihome plan --format ": ["diff", "ip"],
        "multihome export --format n": ["netplan", "networkd", "networkmanager"],
        "multihome lab ": scenarios(),
        "multihome export --network-file l": ["lo"],
    }
    # each run waits for its pseudo-terminal to close: run them side by side
    runs = {
        line: subprocess.Popen(
            ["zsh", "-f", str(HERE / "zsh_capture.zsh"), str(tmp_path), line],
            stdout=subprocess.PIPE,
            text=True,
        )
        for line in cases
    }
    for line, run in runs.items():
        out, _ = run.communicate(timeout=30)
        assert sorted(filter(None, out.splitlines())) == cases[line], line


# -- the units


def test_the_packaged_units_are_the_exported_ones() -> None:
    units = distfiles.units("/usr/bin/multihome")
    assert set(units) == {"multihome.service", "multihome-watch.service"}
    assert "ExecStart=/usr/bin/multihome apply\n" in units["multihome.service"]
    assert "Type=notify\nExecStart=/usr/bin/multihome watch\n" in units["multihome-watch.service"]
    assert all(text.startswith(f"# {distfiles.UNIT_HEADER}\n") for text in units.values())


def test_distfiles_writes_every_file(tmp_path: Path) -> None:
    assert distfiles.main([str(tmp_path)]) == 0
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    install = (REPO / "debian" / "multihome.install").read_text()
    manpages = (REPO / "debian" / "multihome.manpages").read_text()
    for name in written:
        assert f"debian/generated/{name}" in install + manpages, name


def test_the_package_version_is_the_code_version() -> None:
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    match = re.match(r"multihome \(([^)-]+)-\d+\) ", first)
    assert match and match.group(1) == __version__, (first, __version__)
