"""Shell completion for bash and zsh, generated from the argument parser: the commands, each
command's options, the values of options with choices (formats, scenarios), network
namespaces for --netns, interface names for --network-file, files and directories.
The Debian package renders them at build time (`python3 -m multihome.cli.distfiles`).
"""

from __future__ import annotations

import argparse
import enum

from multihome.cli.manpage import help_text, options, subcommands, summaries

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from multihome.cli import Parser


class Value(enum.Enum):
    """What an option's value is, for completing it."""

    NONE = "none"  # a flag
    WORDS = "words"  # one of its choices
    FILE = "file"
    DIR = "dir"
    NETNS = "netns"
    IFACE = "iface"  # an interface name, then `=`
    OTHER = "other"  # free text: nothing to offer


def value_of(action: argparse.Action) -> Value:
    if action.nargs == 0:
        return Value.NONE
    if action.choices is not None:
        return Value.WORDS
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if action.dest == "netns":
        return Value.NETNS
    if metavar.startswith("IFACE"):
        return Value.IFACE
    if metavar.startswith("FILE"):
        return Value.FILE
    if metavar == "DIR":
        return Value.DIR
    return Value.OTHER


def _words(action: argparse.Action) -> str:
    return " ".join(str(c) for c in action.choices or ())


def _bash_value(action: argparse.Action) -> str:
    kind = value_of(action)
    if kind is Value.WORDS:
        return f'COMPREPLY=($(compgen -W "{_words(action)}" -- "$cur"))'
    if kind is Value.FILE:
        return 'COMPREPLY=($(compgen -f -- "$cur"))'
    if kind is Value.DIR:
        return 'COMPREPLY=($(compgen -d -- "$cur"))'
    if kind is Value.NETNS:
        return 'COMPREPLY=($(compgen -W "$(_multihome_ls /run/netns)" -- "$cur"))'
    if kind is Value.IFACE:
        return (
            'COMPREPLY=($(compgen -S = -W "$(_multihome_ls /sys/class/net)" -- "$cur"))\n'
            "            compopt -o nospace 2>/dev/null"
        )
    return "COMPREPLY=()"


def bash(parser: Parser) -> str:
    commands = subcommands(parser)
    global_opts = [s for a in options(parser) for s in a.option_strings]
    takes_value = sorted(
        {
            s
            for p in (parser, *commands.values())
            for a in options(p)
            if a.option_strings and a.nargs != 0
            for s in a.option_strings
        }
    )
    out = [
        "# bash completion for multihome; generated from its argument parser by",
        "# multihome.cli.completion, do not edit",
        "",
        "_multihome_ls() {",
        "    local path",
        '    for path in "$1"/*; do [[ -e $path ]] && printf "%s\\n" "${path##*/}"; done',
        "}",
        "",
        "_multihome() {",
        '    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}',
        '    local command="" positional=0 i',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case ${COMP_WORDS[i]} in',
        f"            {'|'.join(takes_value)}) ((i++)) ;;",
        "            -*) ;;",
        '            *) if [[ -z $command ]]; then command=${COMP_WORDS[i]}; '
        "else ((positional++)); fi ;;",
        "        esac",
        "    done",
        '    case $command:$prev in',
    ]
    shared = set(global_opts)
    for name, sub in (("", parser), *commands.items()):
        for action in options(sub):
            if sub is not parser and shared & set(action.option_strings):
                continue  # handled for every command by the shared branch
            if action.nargs == "?" and value_of(action) is Value.OTHER:
                continue  # an optional number: offer the options as well
            if action.option_strings and action.nargs != 0:
                # the shared options work before and after the command
                scope = "*" if sub is parser else name
                patterns = "|".join(f"{scope}:{s}" for s in action.option_strings)
                out.append(f"        {patterns})")
                out.append(f"            {_bash_value(action)}")
                out.append("            return ;;")
    out += ["    esac", '    case $command in']
    out.append("        \"\")")
    out.append(
        f'            COMPREPLY=($(compgen -W "{" ".join([*global_opts, "-h", "--help"])} '
        f'{" ".join(commands)}" -- "$cur")) ;;'
    )
    for name, sub in commands.items():
        flags = ["-h", "--help", *(s for a in options(sub) for s in a.option_strings)]
        positionals = [a for a in options(sub) if not a.option_strings]
        out.append(f"        {name})")
        if positionals:
            out.append('            if [[ $cur != -* && $positional -eq 0 ]]; then')
            out.append(f"                {_bash_value(positionals[0])}")
            out.append("                return")
            out.append("            fi")
        out.append(f'            COMPREPLY=($(compgen -W "{" ".join(flags)}" -- "$cur")) ;;')
    out += ["    esac", "}", "", "complete -F _multihome multihome", ""]
    return "\n".join(out)


def _zsh_quote(text: str) -> str:
    """Text inside a single-quoted zsh word, in an _arguments description."""
    text = text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return text.replace("'", "'\\''")


def _zsh_action(action: argparse.Action) -> str:
    kind = value_of(action)
    name = (action.metavar if isinstance(action.metavar, str) else action.dest).lower()
    if kind is Value.WORDS:
        return f":{name}:({_words(action)})"
    if kind is Value.FILE:
        return f":{name}:_files"
    if kind is Value.DIR:
        return f":{name}:_files -/"
    if kind is Value.NETNS:
        return f":{name}:_multihome_netns"
    if kind is Value.IFACE:
        return f":{name}:_multihome_iface"
    return f":{name}: "


def _zsh_specs(parser: Parser) -> list[str]:
    specs = ["'(- *)'{-h,--help}'[show help]'"]
    position = 0
    for action in options(parser):
        description = _zsh_quote(help_text(parser, action))
        value = "" if action.nargs == 0 else _zsh_action(action)
        if value and action.nargs == "?":
            value = ":" + value  # an optional argument
        if not action.option_strings:
            position += 1
            specs.append(f"'{position}{value}'")
            continue
        flags = action.option_strings
        if len(flags) == 1:
            specs.append(f"'{flags[0]}[{description}]{value}'")
        else:
            exclusive = " ".join(flags)
            specs.append(f"'({exclusive})'{{{','.join(flags)}}}'[{description}]{value}'")
    return specs


def zsh(parser: Parser) -> str:
    commands = subcommands(parser)
    summary_of = summaries(parser)
    out = [
        "#compdef multihome",
        "# zsh completion for multihome; generated from its argument parser by",
        "# multihome.cli.completion, do not edit",
        "",
        "_multihome_netns() {",
        "    local -a names; names=(/run/netns/*(N:t))",
        "    _describe 'network namespace' names",
        "}",
        "",
        "_multihome_iface() {",
        "    local -a names; names=(/sys/class/net/*(N:t))",
        "    compadd -S = -q -a names",
        "}",
        "",
        "_multihome() {",
        "    local curcontext=$curcontext state line ret=1",
        "    typeset -A opt_args",
        "    _arguments -C \\",
        *(f"        {spec} \\" for spec in _zsh_specs(parser) if "--version" not in spec),
        "        '--version[show the version]' \\",
        "        '1:command:->command' \\",
        "        '*::argument:->argument' && ret=0",
        "    case $state in",
        "        command)",
        "            local -a commands",
        "            commands=(",
        *(
            f"                '{name}:{_zsh_quote(summary_of.get(name, ''))}'"
            for name in commands
        ),
        "            )",
        "            _describe command commands && ret=0 ;;",
        "        argument)",
        "            curcontext=${curcontext%:*}-$line[1]:",
        "            case $line[1] in",
    ]
    for name, sub in commands.items():
        out.append(f"                {name})")
        out.append("                    _arguments \\")
        out += [f"                        {spec} \\" for spec in _zsh_specs(sub)]
        out.append("                        && ret=0 ;;")
    out += ["            esac ;;", "    esac", "    return ret", "}", "", '_multihome "$@"', ""]
    return "\n".join(out)
