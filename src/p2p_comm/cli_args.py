"""The ``p2p`` command line as an argparse parser, built without exiting or printing.

The daemon parses the argv each ``p2p`` run sends it (daemon/agent/argv.py), so the CLI process
never imports argparse on its hot path; the CLI itself uses this parser only for the
commands that must work without a daemon (``--help``, ``relay``, ``daemon ...``, ...).
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from .registry import COMMANDS, Param


class UsageError(Exception):
    """The command line is wrong; the message is one sentence for the user (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.as_json = False  # set once the command line is known to ask for JSON


class HelpRequested(Exception):
    """``-h``/``--help`` where printing is not ours to do (in the daemon): run it locally."""


class _FixedWidthFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=100)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A fixed width: argparse otherwise asks shutil for the terminal size on every
        # add_argument, which costs each run milliseconds; the reader is an LLM anyway.
        kwargs.setdefault("formatter_class", _FixedWidthFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see 'p2p --help').")


class _NoHelpParser(_Parser):
    """The daemon's parser: help goes back to the CLI instead of to the daemon's stdout."""

    def print_help(self, file: Any = None) -> None:
        raise HelpRequested()


class _Skipped:
    """Stands in for the sub-parser of a command this run does not need."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass


# The commands that run in the CLI's own process: they must work with no daemon running.
LOCAL_COMMANDS = frozenset({"daemon", "skill", "relay", "mcp", "demo"})

_CACHE: dict[tuple[str | None, bool], argparse.ArgumentParser] = {}


def _parser_for(argv: list[str], in_daemon: bool) -> argparse.ArgumentParser:
    """Just the named command's sub-parser (building all ~20 costs ~9 ms); the full parser
    when there is no known command, so that it can explain. Parsers are kept: parsing does
    not change them, and the daemon parses every run's argv."""
    word = next((w for w in argv if not w.startswith("-")), None)
    key = (word, in_daemon)
    parser = _CACHE.get(key)
    if parser is not None:
        return parser
    if word is not None:
        parser, built = _build(word, _NoHelpParser if in_daemon else _Parser)
        if built:
            _CACHE[key] = parser  # only known command words: hostile argv cannot grow this
            return parser
    parser = _build(None, _NoHelpParser if in_daemon else _Parser)[0]
    _CACHE[(None, in_daemon)] = parser
    return parser


def _build(only: str | None, parser_class: type[_Parser]) -> tuple[argparse.ArgumentParser, bool]:
    common = parser_class(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document instead of text",
    )
    parser = parser_class(
        prog="p2p",
        parents=[common],
        description="Encrypted real-time calls between AI agents over Nostr.",
    )
    # An explicit prog spares argparse a help formatter (and importing shutil) on every run.
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=parser_class, prog="p2p"
    )

    built: list[str] = []

    def add(name: str, help_text: str) -> Any:
        if only is not None and name != only:
            return _Skipped()
        built.append(name)
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    # The commands the daemon serves, from their one description (registry.py).
    for command in COMMANDS:
        parser_for = add(command.name, command.summary)
        for param in command.params:
            _add_param(parser_for, param)
        if command.name == "transcript":  # the call also as a word, as it always was
            parser_for.add_argument("call_id", nargs="?", metavar="CALL", help="default: latest")
    daemon = add("daemon", "manage the background daemon (never required)")
    daemon.add_argument("action", choices=["start", "stop", "restart", "status", "logs"])
    daemon.add_argument("-n", "--lines", type=int, default=50, help="log lines to show")
    skill = add("skill", "install the OpenClaw skill (SKILL.md)")
    skill.add_argument("action", choices=["install"])
    skill.add_argument("--dir", help="target folder (default: <home>/skills/p2p-comm)")
    relay = add("relay", "run an embedded Nostr relay in the foreground")
    relay.add_argument("--host", default="127.0.0.1")
    relay.add_argument("--port", type=int, default=7777, help="0 picks a free port")
    relay.add_argument("--db", help="LMDB directory to persist events (default: in memory)")
    add("mcp", "serve these commands as MCP tools on stdio (needs p2p-comm[mcp])")
    add("demo", "run a whole exchange between two local agents on an embedded relay")
    return parser, bool(built)


_TYPES: dict[str, Any] = {"integer": int, "number": float, "string": str}


def _add_param(parser: Any, param: Param) -> None:
    """One registry parameter as argparse has it: ``--flag`` (a switch when boolean), or a
    positional word (optional unless required)."""
    if param.cli.startswith("--"):
        if param.type == "boolean":
            parser.add_argument(param.cli, dest=param.key, action="store_true", help=param.help)
        else:
            kind = _TYPES[param.type]
            parser.add_argument(param.cli, dest=param.key, type=kind, help=param.help)
        return
    parser.add_argument(
        param.key,
        metavar=param.cli,
        nargs=None if param.required else "?",
        choices=list(param.enum) or None,
        type=_TYPES[param.type],
        help=param.help,
    )


def _call_option_last(argv: list[str]) -> list[str]:
    """Move `--call X` after the positionals: argparse fills a command's positionals in one
    go before the first option, so `answer reject --call X "reason"` would leave the
    reason unmatched. `--call` always takes one value, so moving the pair changes nothing
    else; nothing after a `--` is touched."""
    stop = argv.index("--") if "--" in argv else len(argv)
    head: list[str] = []
    moved: list[str] = []
    index = 0
    while index < stop:
        word = argv[index]
        if word == "--call" and index + 1 < stop:
            moved += argv[index : index + 2]
            index += 2
            continue
        (moved if word.startswith("--call=") else head).append(word)
        index += 1
    return head + moved + argv[stop:]


def parse(argv: list[str], in_daemon: bool = False) -> argparse.Namespace:
    """The parsed command line; `UsageError` when it is wrong, and in the daemon
    `HelpRequested` for ``-h``/``--help`` (elsewhere argparse prints the help and exits)."""
    return _parser_for(argv, in_daemon).parse_args(_call_option_last(argv))
