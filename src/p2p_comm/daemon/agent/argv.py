"""A ``p2p`` command line turned into one daemon request, and its result into output bytes.

The CLI sends its argv over the socket and copies back what this module renders (see
daemon/agent/pipe.py), so it imports neither argparse nor json. Everything here is pure: no
daemon state, no asyncio. The CLI also calls `plan` itself when no daemon answers, so that a
wrong command line is said before a daemon is started for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ... import textout
from ...cli_args import HelpRequested, UsageError, parse
from ...codes import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT, MAX_WAIT, REQUEST_TIMEOUT, WAIT_MARGIN
from ...registry import BY_NAME, Command
from ...schema import document, error_document

__all__ = ["HelpRequested", "Plan", "UsageError", "plan"]


@dataclass
class Plan:
    """What one command line asks of the daemon, and how to show the answer."""

    command: str
    as_json: bool = False
    local: bool = False  # runs in the CLI's own process (daemon, relay, skill, mcp, demo)
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    stdin_param: str | None = None  # the parameter standard input fills (`send -`, ...)
    timeout: float = REQUEST_TIMEOUT  # how long the CLI waits for the answer
    consume: bool = False  # inbox/wait: events are acknowledged once the CLI has shown them
    limit: int | None = None  # history --limit
    file_name: str = ""  # sendfile: for its progress lines


def _check_utf8(argv: list[bytes]) -> list[str]:
    words = []
    for number, word in enumerate(argv, 1):
        try:
            words.append(word.decode())
        except UnicodeDecodeError:
            raise UsageError(f"argument {number} is not valid UTF-8 text.") from None
    return words


def plan(argv: list[bytes], cwd: str, in_daemon: bool = True) -> Plan:
    """Parse and check a command line. Raises `UsageError` (exit 2), and in the daemon
    `HelpRequested`. ``argv`` is the CLI's, as bytes that must be UTF-8; ``cwd`` is the
    CLI's directory, for relative paths."""
    args = parse(_check_utf8(argv), in_daemon)
    command = getattr(args, "command", None)
    if not command:
        raise UsageError("a command is needed (see 'p2p --help').")
    result = Plan(command, as_json=getattr(args, "json", False))
    if command in ("daemon", "skill", "relay", "mcp", "demo"):
        result.local = True
        return result
    result.method = command
    try:
        result.params = _params(BY_NAME[command], args)
        special = _SPECIAL.get(command)
        if special is not None:
            special(args, result, cwd)
    except UsageError as exc:
        exc.as_json = result.as_json
        raise
    return result


def _params(command: Command, args: Any) -> dict[str, Any]:
    """The daemon request's parameters, by the registry: what the command line gave."""
    params: dict[str, Any] = {}
    for param in command.params:
        value = getattr(args, param.key, None)
        if value is None:
            continue
        if param.minimum is not None and not isinstance(value, bool) and value < param.minimum:
            word = param.cli if param.cli.startswith("--") else param.cli.lower()
            raise UsageError(f"{word} must be at least {param.minimum:g}.")
        params[param.key] = value
    return params


# What the registry cannot say: defaults the daemon must see, words that go together, standard
# input, and how long the CLI waits for the answer.


def _answer(args: Any, p: Plan, cwd: str) -> None:
    if args.decision == "accept" and args.reason:
        raise UsageError("a reason goes only with 'reject'.")
    p.params["reason"] = args.reason or ""


def _send(args: Any, p: Plan, cwd: str) -> None:
    p.stdin_param = "text" if args.text == "-" else None
    p.timeout = 120.0


def _sendfile(args: Any, p: Plan, cwd: str) -> None:
    name, path, data = args.name, args.path, args.data
    if path is not None and data is None and name is not None:
        pass  # `sendfile NAME --path FILE`
    elif path is not None and name is None:
        name = os.path.basename(os.path.normpath(path))  # `sendfile --path FILE`
    elif path is not None or name is None or data is None:
        raise UsageError(
            "give a name and the content as base64 (or '-' for stdin), or --path FILE"
            " (the name defaults to the file's)."
        )
    p.file_name, p.timeout = name, 600.0
    p.params["name"] = name
    if path is not None:
        if "\0" in path:
            raise UsageError("--path cannot hold a NUL character.")
        if not os.path.isabs(path) and not cwd:
            raise UsageError("the current directory is gone: give --path as an absolute path.")
        p.params["path"] = os.path.normpath(os.path.join(cwd, path))
    else:
        p.stdin_param = "data" if data == "-" else None


def _end(args: Any, p: Plan, cwd: str) -> None:
    p.params["reason"] = args.reason or ""


def _inbox(args: Any, p: Plan, cwd: str) -> None:
    p.consume = not args.peek


def _wait(args: Any, p: Plan, cwd: str) -> None:
    timeout = REQUEST_TIMEOUT if args.timeout is None else args.timeout
    # NaN fails every comparison, so test the good range rather than the bad one.
    if not (0 <= timeout <= MAX_WAIT):
        raise UsageError(f"--timeout must be a number of seconds from 0 to {MAX_WAIT:.0f}.")
    p.params["timeout"] = timeout
    p.consume = not args.peek
    p.timeout = timeout + WAIT_MARGIN


def _transcript(args: Any, p: Plan, cwd: str) -> None:
    if args.call_id:
        p.params["call"] = args.call_id


def _history(args: Any, p: Plan, cwd: str) -> None:
    p.limit = args.limit


def _contacts(args: Any, p: Plan, cwd: str) -> None:
    if args.action != "list" and not args.agent:
        raise UsageError(f"'contacts {args.action}' needs an agent (npub, hex key or name).")
    p.params.update(agent=args.agent or "", name=args.name or "")


_SPECIAL = {
    "answer": _answer,
    "send": _send,
    "sendfile": _sendfile,
    "end": _end,
    "inbox": _inbox,
    "wait": _wait,
    "transcript": _transcript,
    "history": _history,
    "contacts": _contacts,
}


# Rendering ---------------------------------------------------------------------------


def event_ids(result: Any) -> list[int]:
    """The ids of the events a result hands over (what the CLI acknowledges once shown)."""
    events = result.get("events") if isinstance(result, dict) else None
    return [e["event_id"] for e in events or () if isinstance(e, dict) and "event_id" in e]


def finish(p: Plan, result: Any) -> tuple[int, Any]:
    """The exit code, and the result as shown (``history --limit`` trimmed)."""
    code = EXIT_OK
    if isinstance(result, dict):
        if p.command == "wait" and result.get("timed_out"):
            code = EXIT_TIMEOUT
        if result.get("ok") is False:  # a report that is also a failure (`doctor`)
            code = EXIT_ERROR
        if p.limit is not None:
            result = {**result, "calls": result.get("calls", [])[: p.limit]}  # newest first
    return code, result


def render(p: Plan, result: Any) -> bytes:
    """Standard output for a successful command: one JSON document, or text."""
    if p.as_json:
        payload = document(result if isinstance(result, dict) else {"result": result})
        text = json.dumps(payload, ensure_ascii=False, indent=None)
    else:
        text = textout.render(p.command, result)
    return (text + "\n").encode()


def render_error(code: str, message: str, as_json: bool) -> tuple[bytes, bytes]:
    """(stdout, stderr) for a failure: the JSON error document, or one ``error:`` line."""
    if as_json:
        text = json.dumps(error_document(code, message))
        return (text + "\n").encode(), b""
    return b"", f"error: {message}\n".encode()


def queued_fallback(p: Plan, update: dict[str, Any]) -> bytes:
    """What a `sendfile` shows if the daemon goes away after the file was durably queued:
    it goes out when the daemon runs again, so the agent must not send it a second time."""
    result = {key: value for key, value in update.items() if key != "queued"}
    message = "the daemon closed the connection."
    result.update(queued=True, note=f"queued; {message} It is sent on restart.")
    return render(p, result)


class ProgressLines:
    """One stderr line per tenth of a transfer: enough for an agent, not a flood."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shown = -1

    def __call__(self, update: dict[str, Any]) -> bytes:
        done, total = int(update.get("done", 0)), max(1, int(update.get("total", 1)))
        tenth = done * 10 // total
        if tenth <= self.shown:
            return b""
        self.shown = tenth
        line = f"sending {self.name}: {done}/{total} chunks handed to relays ({tenth * 10}%)\n"
        return line.encode()
