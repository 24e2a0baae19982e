"""The argparse side of the CLI, imported only when a command needs real parsing.

Building the full parser costs several milliseconds, so the commands agents run most
(`status`, `inbox`, ...) bypass this module entirely; see `cli.main`.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from . import cli
from .cli import EXIT_USAGE, CliError


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
        raise CliError(f"{message} (see 'p2p --help').", "usage", EXIT_USAGE)


class _Skipped:
    """Stands in for the sub-parser of a command this run does not need."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """Just the named command's sub-parser (building all ~20 costs ~9 ms of every run);
    the full parser when there is no known command, so that it can explain."""
    word = next((w for w in argv if not w.startswith("-")), None)
    if word is not None:
        parser, built = _build(only=word)
        if built:
            return parser
    return build_parser()


def build_parser() -> argparse.ArgumentParser:
    return _build(only=None)[0]


def _build(only: str | None) -> tuple[argparse.ArgumentParser, bool]:
    common = _Parser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document instead of text",
    )
    parser = _Parser(
        prog="p2p",
        parents=[common],
        description="Encrypted real-time calls between AI agents over Nostr.",
    )
    # An explicit prog spares argparse a help formatter (and importing shutil) on every run.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, prog="p2p")

    built: list[str] = []

    def add(name: str, func: cli.Command, help_text: str) -> Any:
        if only is not None and name != only:
            return _Skipped()
        built.append(name)
        cmd = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        cmd.set_defaults(func=func)
        return cmd

    with_call = _Parser(add_help=False)
    with_call.add_argument("--call", help="call id or unambiguous prefix (implied with one call)")

    def add_in_call(name: str, func: cli.Command, help_text: str) -> Any:
        if only is not None and name != only:
            return _Skipped()
        built.append(name)
        cmd = sub.add_parser(
            name, parents=[common, with_call], help=help_text, description=help_text
        )
        cmd.set_defaults(func=func)
        return cmd

    add("status", cli.cmd_status, "identity, relays, calls, unread counts")
    add("doctor", cli.cmd_doctor, "probe each relay with a message to ourselves; a verdict each")
    add("whoami", cli.cmd_whoami, "own name, npub, hex key and relays")
    listing = add("list", cli.cmd_list, "agents online now")
    listing.add_argument("--capability", help="only agents that announce this capability")
    call = add("call", cli.cmd_call, "ring an agent (npub, hex key, or unique online name)")
    call.add_argument("agent")
    call.add_argument("topic")
    answer = add_in_call("answer", cli.cmd_answer, "accept or reject a ringing call")
    answer.add_argument("decision", choices=["accept", "reject"])
    answer.add_argument("reason", nargs="?", help="why, with reject")
    send = add_in_call("send", cli.cmd_send, "send a message in the active call ('-' reads stdin)")
    send.add_argument("message")
    send.add_argument(
        "--force", action="store_true", help="send although a runaway loop is suspected"
    )
    invite = add_in_call("invite", cli.cmd_invite, "add an agent to the active call (a group)")
    invite.add_argument("agent")
    invite.add_argument(
        "--anyone-may-invite",
        action="store_true",
        help="when the call becomes a group: every participant may invite (default: only you)",
    )
    sendfile = add_in_call(
        "sendfile", cli.cmd_sendfile, "send a file: base64 content, '-', or --path"
    )
    sendfile.add_argument("name", nargs="?", help="file name (default with --path: the file's)")
    sendfile.add_argument("base64", nargs="?", help="file content as base64, or '-' for stdin")
    sendfile.add_argument("--path", help="read the file from this path instead")
    escalate = add_in_call(
        "escalate", cli.cmd_escalate, "tell the peer and the owner: a human is needed"
    )
    escalate.add_argument("message")
    end = add_in_call("end", cli.cmd_end, "end the call and print its transcript")
    end.add_argument("reason", nargs="?", help="optional closing note for the peer")
    end.add_argument("--all", action="store_true", help="end a group call for everyone (starter)")
    inbox = add_in_call("inbox", cli.cmd_inbox, "print unread events, then mark them read")
    inbox.add_argument("--peek", action="store_true", help="show without marking them read")
    wait = add_in_call("wait", cli.cmd_wait, "block until an event arrives (exit 4 on timeout)")
    wait.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    wait.add_argument("--peek", action="store_true", help="show without marking them read")
    transcript = add_in_call(
        "transcript", cli.cmd_transcript, "a call's transcript (default: latest)"
    )
    transcript.add_argument("call_id", nargs="?", metavar="CALL")
    history = add("history", cli.cmd_history, "past and current calls, newest first, with times")
    history.add_argument("--limit", type=int, help="only the N newest calls")
    contacts = add("contacts", cli.cmd_contacts, "manage who may call under call_policy=contacts")
    contacts.add_argument("action", choices=["add", "remove", "list"])
    contacts.add_argument("agent", nargs="?", help="npub, hex key, or online name")
    contacts.add_argument("--name", help="label to keep for this contact")
    for verb, text in (("block", "drop everything from an agent"), ("unblock", "undo a block")):
        blocking = add(verb, cli.cmd_block, text)
        blocking.add_argument("agent", help="npub, hex key, or online name")
    daemon = add("daemon", cli.cmd_daemon, "manage the background daemon (never required)")
    daemon.add_argument("action", choices=["start", "stop", "restart", "status", "logs"])
    daemon.add_argument("-n", "--lines", type=int, default=50, help="log lines to show")
    skill = add("skill", cli.cmd_skill, "install the OpenClaw skill (SKILL.md)")
    skill.add_argument("action", choices=["install"])
    skill.add_argument("--dir", help="target folder (default: <home>/skills/p2p-comm)")
    relay = add("relay", cli.cmd_relay, "run an embedded Nostr relay in the foreground")
    relay.add_argument("--host", default="127.0.0.1")
    relay.add_argument("--port", type=int, default=7777, help="0 picks a free port")
    relay.add_argument("--db", help="LMDB directory to persist events (default: in memory)")
    add("mcp", cli.cmd_mcp, "serve these commands as MCP tools on stdio (needs p2p-comm[mcp])")
    add("demo", cli.cmd_demo, "run a whole exchange between two local agents on an embedded relay")
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


def parse(argv: list[str]) -> argparse.Namespace:
    return _parser_for(argv).parse_args(_call_option_last(argv))
