"""``p2p``: the thin command-line client.

Parses arguments, asks the daemon over its Unix socket, and prints either short
plain text for an LLM agent or one JSON document (``--json``). It imports neither
asyncio nor nostr_sdk: agents run it hundreds of times per task.
"""

from __future__ import annotations

import json
import os
import sys

from . import rpc, textout
from .client import Client, P2PError
from .locations import home_str
from .schema import document, error_document

TYPE_CHECKING = False  # not `from typing import`: typing costs the CLI ~4 ms

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

    from .paths import HomePaths

# Exit codes (README "Exit codes"): one meaning each, for agents that branch on them.
EXIT_OK = 0
EXIT_ERROR = 1  # the command was understood and failed: the message says why
EXIT_USAGE = 2  # the command line is wrong
EXIT_DAEMON = 3  # the daemon cannot be started or reached (`daemon status`: not running)
EXIT_TIMEOUT = 4  # `wait` timed out with no event
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_PIPE = 141  # the reader of our output went away (`p2p history | head -1`): quiet
MAX_WAIT = 3600.0


class CliError(Exception):
    """A user-facing failure: one sentence and an exit code."""

    def __init__(self, message: str, code: str = "error", exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code


class Home:
    """The home as strings; the full `HomePaths` (and pathlib) only for commands that need it."""

    __slots__ = ("client", "dir", "socket")

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.client = Client(directory)
        self.socket = self.client.socket

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
    """Ask the daemon through the Python API's client, starting the daemon if nothing answers."""
    try:
        return home.client.request(method, params, timeout, on_progress)
    except P2PError as exc:
        raise _from_client(exc) from None


def _from_client(exc: P2PError) -> CliError:
    return CliError(exc.message, exc.code, EXIT_DAEMON if exc.unreachable else EXIT_ERROR)


def _from_rpc(exc: rpc.RpcError) -> CliError:
    return _from_client(P2PError(exc.code, exc.message))


# Commands ---------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "status")


def cmd_doctor(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "doctor")


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


def _stdin() -> str:
    try:
        return sys.stdin.read()
    except UnicodeDecodeError:
        raise CliError("standard input is not valid UTF-8 text.", "usage", EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot read standard input: {exc.strerror or exc}.") from None


def cmd_send(args: argparse.Namespace, home: Home) -> Any:
    text = _stdin() if args.message == "-" else args.message
    params = _with_call(args, text=text, **({"force": True} if args.force else {}))
    return _daemon_call(home, "send", params, timeout=120)


def cmd_invite(args: argparse.Namespace, home: Home) -> Any:
    params = _with_call(args, agent=args.agent, anyone_may_invite=args.anyone_may_invite)
    return _daemon_call(home, "invite", params)


def cmd_sendfile(args: argparse.Namespace, home: Home) -> Any:
    if args.path is not None and args.base64 is None and args.name is not None:
        pass  # `sendfile NAME --path FILE`
    elif args.path is not None and args.name is None:
        args.name = os.path.basename(os.path.normpath(args.path))  # `sendfile --path FILE`
    elif args.path is not None or args.name is None or args.base64 is None:
        raise CliError(
            "give a name and the content as base64 (or '-' for stdin), or --path FILE"
            " (the name defaults to the file's).",
            "usage",
            EXIT_USAGE,
        )
    if args.path is not None:
        params = _with_call(args, name=args.name, path=os.path.abspath(args.path))
    else:
        data = _stdin() if args.base64 == "-" else args.base64
        params = _with_call(args, name=args.name, data=data)
    printer = None if args.json else _ProgressPrinter(args.name)
    queued: dict[str, Any] = {}

    def progress(update: dict[str, Any]) -> None:
        if update.get("queued"):
            queued.update(update)
        elif printer is not None:
            printer(update)

    try:
        return _daemon_call(home, "sendfile", params, timeout=600, on_progress=progress)
    except CliError as exc:
        if not queued or exc.exit_code != EXIT_DAEMON:
            raise
        # The daemon had it durably queued before it went away: it goes out when the
        # daemon runs again, so the agent must not send it a second time.
        queued.pop("queued", None)
        return {**queued, "queued": True, "note": f"queued; {exc.message} It is sent on restart."}


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
    params = _with_call(args, reason=args.reason or "", **({"all": True} if args.all else {}))
    return _daemon_call(home, "end", params)


def _consume_after_print(result: Any, args: argparse.Namespace) -> Any:
    """Events leave the unread set only once printed: `main` acknowledges them after the
    output is flushed, so a killed command or a closed stdout loses nothing."""
    if not args.peek and isinstance(result, dict):
        ids = [e["event_id"] for e in result.get("events", []) if "event_id" in e]
        if ids:
            result["_ack"] = ids
    return result


def cmd_inbox(args: argparse.Namespace, home: Home) -> Any:
    result = _daemon_call(home, "inbox", {"call": args.call, "peek": args.peek})
    return _consume_after_print(result, args)


def cmd_wait(args: argparse.Namespace, home: Home) -> Any:
    timeout = args.timeout
    # NaN fails every comparison, so test the good range rather than the bad one.
    if not (0 <= timeout <= MAX_WAIT):
        raise CliError(
            f"--timeout must be a number of seconds from 0 to {MAX_WAIT:.0f}.",
            "usage",
            EXIT_USAGE,
        )
    params = {"timeout": timeout, "call": args.call, "peek": args.peek}
    result = _daemon_call(home, "wait", params, timeout=timeout + 30)
    if result.get("timed_out"):
        result["_exit"] = EXIT_TIMEOUT
    return _consume_after_print(result, args)


def cmd_transcript(args: argparse.Namespace, home: Home) -> Any:
    return _daemon_call(home, "transcript", {"call": args.call_id or args.call})


def cmd_history(args: argparse.Namespace, home: Home) -> Any:
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise CliError("--limit must be at least 1.", "usage", EXIT_USAGE)
    result = _daemon_call(home, "history")
    if limit is not None and isinstance(result, dict):
        result["calls"] = result.get("calls", [])[:limit]  # newest first
    return result


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

    if args.lines < 1:
        raise CliError("--lines must be at least 1.", "usage", EXIT_USAGE)
    try:
        if args.action == "status":
            # Never starts the daemon: it says whether one runs (exit 3 when not).
            if not launcher.lock_held(home.paths):
                return {"daemon": "not running", "_exit": EXIT_DAEMON}
            return {"daemon": "running", "started": False, **rpc.request(home.socket, "ping")}
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
        return {"log": os.fspath(home.paths.log), "lines": _tail(home.paths, args.lines)}
    except launcher.LaunchError as exc:
        raise CliError(str(exc), "daemon_unavailable", EXIT_DAEMON) from None
    except rpc.RpcError as exc:
        raise _from_rpc(exc) from None
    except OSError as exc:
        message = (
            f"cannot use the home {home.dir} ({exc.strerror or exc}); make it writable"
            " or point P2P_HOME elsewhere."
        )
        raise CliError(message, "daemon_unavailable", EXIT_DAEMON) from None


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
    os.umask(0o077)  # like every file we write under the home: the owner's alone
    try:
        os.makedirs(target, exist_ok=True)
        path = os.path.join(target, "SKILL.md")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)  # an older, looser copy is replaced by this one
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"cannot write the skill to {target}: {exc.strerror}.") from None
    return {"installed": path}


def cmd_relay(args: argparse.Namespace, home: Home) -> Any:
    if not 0 <= args.port <= 65535:
        raise CliError("--port must be from 0 to 65535 (0 picks a free port).", "usage", EXIT_USAGE)
    from . import relay

    sys.exit(relay.main(args.host, args.port, args.db, json_output=args.json))


def cmd_mcp(args: argparse.Namespace, home: Home) -> Any:
    from importlib.util import find_spec

    if find_spec("mcp") is None:
        raise CliError(
            "p2p mcp needs the MCP SDK, which is not installed: pip install 'p2p-comm[mcp]'.",
            "missing_dependency",
        )
    from . import mcp_server

    sys.exit(mcp_server.main(home.dir))


def cmd_demo(args: argparse.Namespace, home: Home) -> Any:
    from . import demo

    sys.exit(demo.main(json_output=args.json))


# Parser -----------------------------------------------------------------------


def _fast_args(argv: list[str]) -> Any:
    """Arguments of the argument-less commands agents run most, without argparse (whose
    import and parser building cost several milliseconds a run); None for anything else."""
    if not argv or argv[0] not in _FAST or any(word != "--json" for word in argv[1:]):
        return None
    from types import SimpleNamespace

    return SimpleNamespace(
        command=argv[0],
        json="--json" in argv,
        func=_FAST[argv[0]],
        capability=None,
        call=None,
        peek=False,
    )


_FAST: dict[str, Command] = {
    "status": cmd_status,
    "whoami": cmd_whoami,
    "inbox": cmd_inbox,
    "history": cmd_history,
    "list": cmd_list,
}


def _emit(command: str, result: Any, as_json: bool, home: Home) -> int:
    exit_code = result.pop("_exit", EXIT_OK) if isinstance(result, dict) else EXIT_OK
    ack = result.pop("_ack", None) if isinstance(result, dict) else None
    if as_json:
        payload = document(result if isinstance(result, dict) else {"result": result})
        text = json.dumps(payload, ensure_ascii=False, indent=None)
    else:
        text = textout.render(command, result)
    # A closed pipe raises here, before the acknowledgement: the events stay unread.
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    if ack:
        try:
            rpc.request(home.socket, "ack", {"event_ids": ack})
        except rpc.RpcError as exc:
            # The events were handed over; only marking them read failed. One document on
            # stdout stays the rule, so this is said on stderr, and they come again later.
            print(
                f"warning: could not mark these events read ({exc.message}); "
                "they will be shown again.",
                file=sys.stderr,
            )
    return int(exit_code)


def _check_utf8(argv: list[str]) -> None:
    """Bytes that are not UTF-8 reach us as lone surrogates; say so instead of failing later."""
    for number, word in enumerate(argv, 1):
        try:
            word.encode()
        except UnicodeEncodeError:
            raise CliError(
                f"argument {number} is not valid UTF-8 text.", "usage", EXIT_USAGE
            ) from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        return _pipe_closed()


def _pipe_closed() -> int:
    """Our reader went away: nothing left to say to it, and no 'Exception ignored' noise at
    exit (Python flushes stdout once more then; point it at /dev/null)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_PIPE


def _main(argv: list[str]) -> int:
    as_json = "--json" in argv
    try:
        _check_utf8(argv)
        args = _fast_args(argv)
        if args is None:
            from .cli_args import parse

            args = parse(argv)
        if not getattr(args, "command", None):
            raise CliError("a command is needed (see 'p2p --help').", "usage", EXIT_USAGE)
        as_json = args.json = getattr(args, "json", False)
        command = args.command if args.command != "daemon" else f"daemon {args.action}"
        home = Home(home_str())
        return _emit(command, args.func(args, home), as_json, home)
    except CliError as exc:
        _error(exc.code, exc.message, as_json)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except OSError as exc:  # the machine refused something: name what, in one sentence
        where = f" ({exc.filename})" if exc.filename else ""
        _error("os_error", f"{exc.strerror or exc}{where}.", as_json)
        return EXIT_ERROR
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        message = f"internal error ({type(exc).__name__}: {exc}); see 'p2p daemon logs'."
        _error("internal", message, as_json)
        return EXIT_ERROR


def _error(code: str, message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(error_document(code, message)))
        sys.stdout.flush()
    else:
        print(f"error: {message}", file=sys.stderr)
