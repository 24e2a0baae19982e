"""What a request's handler has of its client while it is served: a channel for progress
lines, and cancellation when the client goes away before its answer.

Used by the socket server (JSON lines) and the CLI's byte pipe (pipe.py) alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("p2p.server")

# Set while a request is served: a handler reports progress to its client through it.
progress_sink: contextvars.ContextVar[Callable[[dict[str, Any]], None] | None] = (
    contextvars.ContextVar("progress_sink", default=None)
)


def report_progress(update: dict[str, Any]) -> None:
    """Send a progress line to the client of the current request, if it has one."""
    sink = progress_sink.get()
    if sink is not None:
        sink(update)


async def unless_gone(
    work: Awaitable[dict[str, Any]], reader: asyncio.StreamReader
) -> dict[str, Any] | None:
    """The reply ``work`` gives; None if the client closed its end first. The handler is then
    cancelled: nothing it would have handed over is consumed (a killed `p2p wait` stops
    waiting)."""
    answer = asyncio.ensure_future(work)
    while True:
        gone = asyncio.ensure_future(reader.read(65536))
        done, _ = await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        if answer in done:
            gone.cancel()
            return answer.result()
        if gone.exception() is None and gone.result():
            continue  # stray bytes after the request: not a hang-up
        break
    answer.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await answer
    log.info("client went away before its answer; request cancelled")
    return None
