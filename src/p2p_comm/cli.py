"""``p2p``: the thin command-line client.

Parses arguments, asks the daemon over its Unix socket, and prints either short
plain text for an LLM agent or one JSON document (``--json``). It imports neither
asyncio nor nostr_sdk: agents run it hundreds of times per task.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import rpc, textout
from .locations import home_str, socket_path

TYPE_CHECKING = False  # not `from typing import`: typing costs the CLI ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

    from .paths import HomePaths

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DAEMON = 3
EXIT_TIMEOUT = 4


class CliError(Exception):
    """A user-facing failure: one sentence and an exit code."""

    def __init__(self, message: str, code: str = "error", exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code


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


class Home:
    """The home as strings; the full `HomePaths` (and pathlib) only for commands that need it."""

    __slots__ = ("dir", "socket")

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.socket = socket_path(directory)

    @property
    def paths(self) -> HomePaths:
        from pathlib import Path

        from .paths import HomePaths

        return HomePaths(Path(self.dir))


if TYPE_CHECKING:
    Command = Callable[[argparse.Namespace, Home], Any]


def _daemon_call(
    home: Home,
    method: str,
    params: dict[str, Any] | None = None,
    timeout: float | None = 30.0,
    on_progress: rpc.ProgressCallback | None = None,
) -> Any:
    """Ask the daemon, starting it first if nothing answers."""
    try:
        return rpc.request(home.socket, method, params, timeout, on_progress)
    except rpc.DaemonUnavailable:
        pass
    except rpc.RpcError as exc:
        raise _from_rpc(exc) from None
    from . import launcher

    try:
        launcher.start(home.paths)
        return rpc.request(home.socket, method, params, timeout, on_progress)
    except launcher.LaunchError as exc:
        message = f"cannot start the daemon: {exc}"
        raise CliError(message, "daemon_unavailable", EXIT_DAEMON) from None
    except rpc.RpcError as exc:
        raise _from_rpc(exc) from None


def _from_rpc(exc: rpc.RpcError) -> CliError:
    unreachable = exc.code in {"daemon_unavailable", "daemon_gone", "unsafe_socket", "timeout"}
    return CliError(exc.message, exc.code, EXIT_DAEMON if unreachable else EXIT_ERROR)


# Commands ---------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "status")


def cmd_whoami(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "whoami")


def cmd_list(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "list", {"capability": args.capability})


def _with_call(args: argparse.Namespace, **params: Any) -> dict[str, Any]:
    return {"call": args.call, **params}


def cmd_call(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "call", {"agent": args.agent, "topic": args.topic})


def cmd_answer(args: argparse.Namespace, home: Home) -> Any:
    if args.decision == "accept" and args.reason:
        raise CliError("a reason goes only with 'reject'.", "usage", EXIT_USAGE)
    params = _with_call(args, decision=args.decision, reason=args.reason or "")
    return _daemon_call(home, "answer", params)


def cmd_send(args: argparse.Namespace, home: Home) -> Any:
    text = sys.stdin.read() if args.message == "-" else args.message
    return _daemon_call(home, "send", _with_call(args, text=text), timeout=120)


def cmd_sendfile(args: argparse.Namespace, home: Home) -> Any:
    if (args.base64 is None) == (args.path is None):
        raise CliError(
            "give the content as base64 (or '-' for stdin), or --path FILE.", "usage", EXIT_USAGE
        )
    if args.path is not None:
        params = _with_call(args, name=args.name, path=os.path.abspath(args.path))
    else:
        data = sys.stdin.read() if args.base64 == "-" else args.base64
        params = _with_call(args, name=args.name, data=data)
    progress = None if args.json else _ProgressPrinter(args.name)
    return _daemon_call(home, "sendfile", params, timeout=600, on_progress=progress)


class _ProgressPrinter:
    """One stderr line per tenth of a transfer: enough for an agent, not a flood."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shown = -1

    def __call__(self, update: dict[str, Any]) -> None:
        done, total = int(update.get("done", 0)), max(1, int(update.get("total", 1)))
        tenth = done * 10 // total
        if tenth > self.shown:
            self.shown = tenth
            print(
                f"sending {self.name}: {done}/{total} chunks handed to relays ({tenth * 10}%)",
                file=sys.stderr,
                flush=True,
            )


def cmd_escalate(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "escalate", _with_call(args, text=args.message))


def cmd_end(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "end", _with_call(args, reason=args.reason or ""))


def cmd_inbox(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "inbox")


def cmd_wait(args: argparse.Namespace, home: Home) -> Any:
    if args.timeout < 0:
        raise CliError("--timeout must not be negative.", "usage", EXIT_USAGE)
    result = _daemon_call(home, "wait", {"timeout": args.timeout}, timeout=args.timeout + 30)
    if result.get("timed_out"):
        result["_exit"] = EXIT_TIMEOUT
    return result


def cmd_transcript(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "transcript", {"call": args.call_id or args.call})


def cmd_history(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "history")


def cmd_contacts(args: argparse.Namespace, home: Home) -> Any:
    if args.action != "list" and not args.agent:
        raise CliError(
            f"'contacts {args.action}' needs an agent (npub, hex key or name).", "usage", EXIT_USAGE
        )
    params = {"action": args.action, "agent": args.agent or "", "name": args.name or ""}
    return _daemon_call(home, "contacts", params)


def cmd_block(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, args.command, {"agent": args.agent})


def cmd_daemon(args: argparse.Namespace, home: Home) -> Any:
    from . import launcher

    try:
        if args.action == "start":
            already = launcher.lock_held(home.paths)
            launcher.ensure_running(home.paths)
            return {
                "daemon": "running",
                "started": not already,
                **rpc.request(home.socket, "ping"),
            }
        if args.action == "stop":
            return {"daemon": "stopped", "was_running": launcher.stop(home.paths)}
        if args.action == "restart":
            launcher.stop(home.paths)
            launcher.start(home.paths)
            return {"daemon": "running", "started": True, **rpc.request(home.socket, "ping")}
    except launcher.LaunchError as exc:
        raise CliError(str(exc), "daemon_unavailable", EXIT_DAEMON) from None
    except rpc.RpcError as exc:
        raise _from_rpc(exc) from None
    return {"log": os.fspath(home.paths.log), "lines": _tail(home.paths, args.lines)}


def _tail(paths: HomePaths, count: int) -> list[str]:
    try:
        with open(paths.log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 256 * count))
            lines = handle.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        raise CliError(f"no daemon log yet at {paths.log}.", "not_found") from None
    return lines[-count:]


def cmd_skill(args: argparse.Namespace, home: Home) -> Any:
    """Copy the packaged SKILL.md where OpenClaw looks for skills."""
    from importlib import resources

    target = args.dir or os.path.join(home.dir, "skills", "p2p-comm")
    text = resources.files("p2p_comm").joinpath("skill/SKILL.md").read_text(encoding="utf-8")
    try:
        os.makedirs(target, exist_ok=True)
        path = os.path.join(target, "SKILL.md")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"cannot write the skill to {target}: {exc.strerror}.") from None
    return {"installed": path}


def cmd_relay(args: argparse.Namespace, home: Home) -> Any:
    from . import relay

    sys.exit(relay.main(args.host, args.port, args.db))


def cmd_demo(args: argparse.Namespace, home: Home) -> Any:
    from . import demo

    sys.exit(demo.main(json_output=args.json))


# Parser -----------------------------------------------------------------------


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

    def add(name: str, func: Command, help_text: str) -> Any:
        if only is not None and name != only:
            return _Skipped()
        built.append(name)
        cmd = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        cmd.set_defaults(func=func)
        return cmd

    with_call = _Parser(add_help=False)
    with_call.add_argument("--call", help="call id or unambiguous prefix (implied with one call)")

    def add_in_call(name: str, func: Command, help_text: str) -> Any:
        if only is not None and name != only:
            return _Skipped()
        built.append(name)
        cmd = sub.add_parser(
            name, parents=[common, with_call], help=help_text, description=help_text
        )
        cmd.set_defaults(func=func)
        return cmd

    add("status", cmd_status, "identity, relays, calls, unread counts")
    add("whoami", cmd_whoami, "own name, npub, hex key and relays")
    listing = add("list", cmd_list, "agents online now")
    listing.add_argument("--capability", help="only agents that announce this capability")
    call = add("call", cmd_call, "ring an agent (npub, hex key, or unique online name)")
    call.add_argument("agent")
    call.add_argument("topic")
    answer = add_in_call("answer", cmd_answer, "accept or reject a ringing call")
    answer.add_argument("decision", choices=["accept", "reject"])
    answer.add_argument("reason", nargs="?", help="why, with reject")
    send = add_in_call("send", cmd_send, "send a message in the active call ('-' reads stdin)")
    send.add_argument("message")
    sendfile = add_in_call("sendfile", cmd_sendfile, "send a file: base64 content, '-', or --path")
    sendfile.add_argument("name")
    sendfile.add_argument("base64", nargs="?", help="file content as base64, or '-' for stdin")
    sendfile.add_argument("--path", help="read the file from this path instead")
    escalate = add_in_call(
        "escalate", cmd_escalate, "tell the peer and the owner: a human is needed"
    )
    escalate.add_argument("message")
    end = add_in_call("end", cmd_end, "end the call and print its transcript")
    end.add_argument("reason", nargs="?", help="optional closing note for the peer")
    add("inbox", cmd_inbox, "print unread events and mark them read")
    wait = add("wait", cmd_wait, "block until an event arrives (exit 4 on timeout)")
    wait.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    transcript = add_in_call("transcript", cmd_transcript, "a call's transcript (default: latest)")
    transcript.add_argument("call_id", nargs="?", metavar="CALL")
    add("history", cmd_history, "past and current calls")
    contacts = add("contacts", cmd_contacts, "manage who may call under call_policy=contacts")
    contacts.add_argument("action", choices=["add", "remove", "list"])
    contacts.add_argument("agent", nargs="?", help="npub, hex key, or online name")
    contacts.add_argument("--name", help="label to keep for this contact")
    for verb, text in (("block", "drop everything from an agent"), ("unblock", "undo a block")):
        blocking = add(verb, cmd_block, text)
        blocking.add_argument("agent", help="npub, hex key, or online name")
    daemon = add("daemon", cmd_daemon, "manage the background daemon (never required)")
    daemon.add_argument("action", choices=["start", "stop", "restart", "logs"])
    daemon.add_argument("-n", "--lines", type=int, default=50, help="log lines to show")
    skill = add("skill", cmd_skill, "install the OpenClaw skill (SKILL.md)")
    skill.add_argument("action", choices=["install"])
    skill.add_argument("--dir", help="target folder (default: <home>/skills/p2p-comm)")
    relay = add("relay", cmd_relay, "run an embedded Nostr relay in the foreground")
    relay.add_argument("--host", default="127.0.0.1")
    relay.add_argument("--port", type=int, default=7777, help="0 picks a free port")
    relay.add_argument("--db", help="LMDB directory to persist events (default: in memory)")
    add("demo", cmd_demo, "run a whole exchange between two local agents on an embedded relay")
    return parser, bool(built)


def _emit(command: str, result: Any, as_json: bool) -> int:
    exit_code = result.pop("_exit", EXIT_OK) if isinstance(result, dict) else EXIT_OK
    if as_json:
        payload = (
            {"ok": True, **result} if isinstance(result, dict) else {"ok": True, "result": result}
        )
        print(json.dumps(payload, ensure_ascii=False, indent=None))
    else:
        print(textout.render(command, result))
    return int(exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = _parser_for(argv).parse_args(argv)
        if not getattr(args, "command", None):
            raise CliError("a command is needed (see 'p2p --help').", "usage", EXIT_USAGE)
        as_json = args.json = getattr(args, "json", False)
        command = args.command if args.command != "daemon" else f"daemon {args.action}"
        return _emit(command, args.func(args, Home(home_str())), as_json)
    except CliError as exc:
        if as_json:
            print(json.dumps({"ok": False, "error": {"code": exc.code, "message": exc.message}}))
        else:
            print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        message = f"unexpected failure ({type(exc).__name__}: {exc}); see 'p2p daemon logs'."
        if as_json:
            print(json.dumps({"ok": False, "error": {"code": "internal", "message": message}}))
        else:
            print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
