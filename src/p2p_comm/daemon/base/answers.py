"""Work held until a request's answer is written: a command's publications cost its client
no wait.

The socket server (agent layer) opens a hold for each connection and releases it once the
answer is written; lower layers (outbound publishing) only ask `when_answered`, so they
need not know about the server.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("p2p.server")


class Held:
    """What the handler of one request started, held until its answer is written."""

    __slots__ = ("released", "starts", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None  # the task running the handler
        self.starts: list[Callable[[], None]] = []
        self.released = False


_held: contextvars.ContextVar[Held | None] = contextvars.ContextVar("held", default=None)


def when_answered(start: Callable[[], None]) -> None:
    """Call ``start`` once the answer of the request being handled is written to its client:
    a command's publications (wrapping and publishing) then cost its client no wait. At
    once outside a handler's own task (inbound work, timers, tasks a handler spawned)."""
    held = _held.get()
    if held is None or held.released or held.task is not asyncio.current_task():
        start()
    else:
        held.starts.append(start)


def answered() -> None:
    """The answer of the request served in this context is written (or never will be):
    start what its handler held. Tasks started here run after the current step, that is,
    after the writes made in it."""
    held = _held.get()
    if held is None or held.released:
        return
    held.released = True
    starts, held.starts = held.starts, []
    for start in starts:
        try:
            start()
        except Exception:  # one failing start must not keep the others back
            log.exception("starting held work failed")


def hold_for_this_connection() -> None:
    """A connection's task starts: what its request's handler starts is held from now on."""
    _held.set(Held())


def hold_in_this_task() -> None:
    """The request's handler runs in the current task: its publications wait for the answer."""
    held = _held.get()
    if held is not None and not held.released:
        held.task = asyncio.current_task()
