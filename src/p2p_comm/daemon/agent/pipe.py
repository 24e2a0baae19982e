"""The daemon's end of the CLI's byte pipe: argv in, rendered output and an exit code out.

The wire format is described in rpc.py. One connection serves one ``p2p`` run: the command
line is parsed here (daemon/agent/argv.py), standard input is asked for only when the command
reads ``-``, the request goes through the same dispatch as a JSON request, and the output is
rendered here. Events that `inbox`/`wait` hand over are marked read only when the CLI says it
has written and flushed them, so a killed CLI or a closed stdout loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from ... import rpc
from ...codes import EXIT_ERROR, EXIT_USAGE
from ..base.answers import answered
from . import argv as argv_mod
from .argv import HelpRequested, Plan, UsageError
from .progress import progress_sink, unless_gone

log = logging.getLogger("p2p.pipe")

Reply = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

# How long the daemon waits for the CLI to show what it was sent and say so. A CLI whose
# reader is that slow sees the events again next time: shown twice beats lost.
ACK_DEADLINE = 600.0
STDIN_DEADLINE = 60.0  # for the bytes of standard input, once the CLI said how many


class _Frames:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def send(self, tag: bytes, payload: bytes = b"") -> None:
        if tag in (b"1", b"2") and not payload:
            return
        self.writer.write(b"%s%d\n%s" % (tag, len(payload), payload))

    def error(self, code: str, message: str, as_json: bool, exit_code: int) -> None:
        out, err = argv_mod.render_error(code, message, as_json)
        self.send(b"1", out)
        self.send(b"2", err)
        self.send(b"X", b"%d" % exit_code)


def _decode_hello(line: bytes) -> tuple[str, list[bytes]]:
    fields = line[len(rpc.PIPE_HELLO) :].rstrip(b"\n").split(b" ")
    cwd = os.fsdecode(bytes.fromhex(fields[0].decode("ascii")))
    return cwd, [bytes.fromhex(field.decode("ascii")) for field in fields[1:]]


async def serve(
    line: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    reply: Reply,
    max_bytes: int,
) -> None:
    """Serve one ``p2p`` run whose first line was ``line``."""
    frames = _Frames(writer)
    try:
        cwd, words = _decode_hello(line)
    except (ValueError, UnicodeDecodeError):
        frames.error("bad_request", "the command line did not arrive intact.", False, EXIT_ERROR)
        return
    as_json = b"--json" in words
    try:
        plan = argv_mod.plan(words, cwd)
        if plan.local:
            frames.send(b"L")
            return
        if plan.stdin_param is not None:
            plan.params[plan.stdin_param] = await _read_stdin(frames, reader, max_bytes)
    except HelpRequested:
        frames.send(b"L")
        return
    except UsageError as exc:
        frames.error("usage", exc.message, exc.as_json or as_json, EXIT_USAGE)
        return
    except (
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        ConnectionError,
        TimeoutError,
        ValueError,
    ):
        return  # the CLI went away (or could not read its stdin, and says so itself)
    frames.send(b"T", b"%r" % plan.timeout)
    await _run(plan, frames, reader, reply)


async def _read_stdin(frames: _Frames, reader: asyncio.StreamReader, max_bytes: int) -> str:
    frames.send(b"I")
    await frames.writer.drain()
    header = await reader.readuntil(b"\n")
    size = int(header)
    if not 0 <= size <= max_bytes:
        raise UsageError("standard input is larger than the daemon accepts.")
    data = await asyncio.wait_for(reader.readexactly(size), STDIN_DEADLINE)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UsageError("standard input is not valid UTF-8 text.") from None


async def _run(plan: Plan, frames: _Frames, reader: asyncio.StreamReader, reply: Reply) -> None:
    progress = argv_mod.ProgressLines(plan.file_name)

    def on_progress(update: dict[str, Any]) -> None:
        if update.get("queued"):
            frames.send(b"Q", argv_mod.queued_fallback(plan, update))
        elif not plan.as_json:
            frames.send(b"2", progress(update))

    progress_sink.set(on_progress)
    answer = await unless_gone(reply(plan.method, plan.params), reader)
    if answer is None:
        return
    # What the command held (its publications) starts after the frames written in this
    # step, the result and the exit code, whatever they are.
    asyncio.get_running_loop().call_soon(answered)
    if not answer.get("ok"):
        err = answer.get("error") or {}
        code, message = str(err.get("code", "error")), str(err.get("message", "unknown error"))
        frames.error(code, message, plan.as_json, EXIT_ERROR)
        return
    try:
        exit_code, result = argv_mod.finish(plan, answer.get("result"))
        output = argv_mod.render(plan, result)
    except Exception as exc:  # a bug of ours: still one sentence, and the log has the rest
        log.exception("rendering %s failed", plan.command)
        message = f"internal error ({type(exc).__name__}); see 'p2p daemon logs'."
        frames.error("internal", message, plan.as_json, EXIT_ERROR)
        return
    frames.send(b"1", output)
    ids = argv_mod.event_ids(result) if plan.consume else []
    if ids and not await _acknowledged(frames, reader):
        return  # not shown (a closed stdout, a killed CLI): the events stay unread
    if ids:
        marked = await reply("ack", {"event_ids": ids})
        if not marked.get("ok"):
            # They were shown; only marking them read failed. One document on stdout stays
            # the rule, so this goes to stderr, and the events come again later.
            message = (marked.get("error") or {}).get("message", "unknown error")
            warning = (
                f"warning: could not mark these events read ({message}); "
                "they will be shown again.\n"
            )
            frames.send(b"2", warning.encode())
    frames.send(b"X", b"%d" % exit_code)


async def _acknowledged(frames: _Frames, reader: asyncio.StreamReader) -> bool:
    frames.send(b"A")
    await frames.writer.drain()
    try:
        return await asyncio.wait_for(reader.read(1), ACK_DEADLINE) == b"a"
    except TimeoutError:
        log.info("a CLI did not confirm its output in %ss; events stay unread", ACK_DEADLINE)
        return False
