"""The ``p2p`` command line as an argparse parser, built without exiting or printing.

The daemon parses the argv each ``p2p`` run sends it (daemon/argv.py), so the CLI process
never imports argparse on its hot path; the CLI itself uses this parser only for the
commands that must work without a daemon (``--help``, ``relay``, ``daemon ...``, ...).
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn


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

    with_call = parser_class(add_help=False)
    with_call.add_argument("--call", help="call id or unambiguous prefix (implied with one call)")

    def add_in_call(name: str, help_text: str) -> Any:
        if only is not None and name != only:
            return _Skipped()
        built.append(name)
        return sub.add_parser(
            name, parents=[common, with_call], help=help_text, description=help_text
        )

    add("status", "identity, relays, calls, unread counts")
    add("doctor", "probe each relay with a message to ourselves; a verdict each")
    add("whoami", "own name, npub, hex key and relays")
    listing = add("list", "agents online now")
    listing.add_argument("--capability", help="only agents that announce this capability")
    call = add("call", "ring an agent (npub, hex key, or unique online name)")
    call.add_argument("agent")
    call.add_argument("topic")
    answer = add_in_call("answer", "accept or reject a ringing call")
    answer.add_argument("decision", choices=["accept", "reject"])
    answer.add_argument("reason", nargs="?", help="why, with reject")
    send = add_in_call("send", "send a message in the active call ('-' reads stdin)")
    send.add_argument("message")
    send.add_argument(
        "--force", action="store_true", help="send although a runaway loop is suspected"
    )
    invite = add_in_call("invite", "add an agent to the active call (a group)")
    invite.add_argument("agent")
    invite.add_argument(
        "--anyone-may-invite",
        action="store_true",
        help="when the call becomes a group: every participant may invite (default: only you)",
    )
    sendfile = add_in_call("sendfile", "send a file: base64 content, '-', or --path")
    sendfile.add_argument("name", nargs="?", help="file name (default with --path: the file's)")
    sendfile.add_argument("base64", nargs="?", help="file content as base64, or '-' for stdin")
    sendfile.add_argument("--path", help="read the file from this path instead (a regular file)")
    escalate = add_in_call("escalate", "tell the peer and the owner: a human is needed")
    escalate.add_argument("message")
    end = add_in_call("end", "end the call and print its transcript")
    end.add_argument("reason", nargs="?", help="optional closing note for the peer")
    end.add_argument("--all", action="store_true", help="end a group call for everyone (starter)")
    inbox = add_in_call("inbox", "print unread events, then mark them read")
    inbox.add_argument("--peek", action="store_true", help="show without marking them read")
    inbox.add_argument("--max", type=int, help="at most N events (the rest stay unread)")
    inbox.add_argument("--after", type=int, help="only events after this cursor (event id)")
    wait = add_in_call("wait", "block until an event arrives (exit 4 on timeout)")
    wait.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    wait.add_argument("--peek", action="store_true", help="show without marking them read")
    wait.add_argument("--max", type=int, help="at most N events (the rest stay unread)")
    wait.add_argument("--after", type=int, help="only events after this cursor (event id)")
    transcript = add_in_call("transcript", "a call's transcript (default: latest)")
    transcript.add_argument("call_id", nargs="?", metavar="CALL")
    history = add("history", "past and current calls, newest first, with times")
    history.add_argument("--limit", type=int, help="only the N newest calls")
    contacts = add("contacts", "manage who may call under call_policy=contacts")
    contacts.add_argument("action", choices=["add", "remove", "list"])
    contacts.add_argument("agent", nargs="?", help="npub, hex key, or online name")
    contacts.add_argument("--name", help="label to keep for this contact")
    for verb, text in (("block", "drop everything from an agent"), ("unblock", "undo a block")):
        blocking = add(verb, text)
        blocking.add_argument("agent", help="npub, hex key, or online name")
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
