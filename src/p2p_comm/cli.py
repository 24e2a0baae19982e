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

TYPE_CHECKING = False  # not `from typing import`: typing costs the CLI ~4 ms

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

    from .paths import HomePaths

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DAEMON = 3
EXIT_TIMEOUT = 4
MAX_WAIT_TIMEOUT = 3600.0


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
    return _daemon_call(home, "end", _with_call(args, reason=args.reason or ""))


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
    if not (0 <= timeout <= MAX_WAIT_TIMEOUT):
        raise CliError(
            f"--timeout must be a number of seconds from 0 to {MAX_WAIT_TIMEOUT:.0f}.",
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
        payload = (
            {"ok": True, **result} if isinstance(result, dict) else {"ok": True, "result": result}
        )
        text = json.dumps(payload, ensure_ascii=False, indent=None)
    else:
        text = textout.render(command, result)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Nobody is reading: nothing is acknowledged, so the events stay unread.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    if ack:
        try:
            rpc.request(home.socket, "ack", {"event_ids": ack})
        except rpc.RpcError as exc:
            raise CliError(
                f"printed the events but could not mark them read ({exc.message}); "
                "they will be shown again.",
                exc.code,
                EXIT_DAEMON,
            ) from None
    return int(exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
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
