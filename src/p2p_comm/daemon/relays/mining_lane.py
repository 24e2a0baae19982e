"""The mining lane: proof of work for wraps is mined one at a time, receipts first, then
first sends, then re-sends (each in arrival order), so a burst of re-sends never holds up a
receipt or a new message.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import AsyncIterator

RECEIPT, FIRST_SEND, RETRANSMIT = 0, 1, 2  # turns in the mining lane, first to last


class Lane:
    """One at a time, the lowest priority number first (then in arrival order)."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = 0

    @contextlib.asynccontextmanager
    async def turn(self, priority: int) -> AsyncIterator[None]:
        if self._busy:
            ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._arrivals += 1
            heapq.heappush(self._waiting, (priority, self._arrivals, ticket))
            try:
                await ticket
            except asyncio.CancelledError:
                if ticket.done() and not ticket.cancelled():
                    self._next()  # handed the turn just as we were cancelled: pass it on
                else:
                    ticket.cancel()  # skipped when its turn comes
                raise
        self._busy = True
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        while self._waiting:
            _, _, ticket = heapq.heappop(self._waiting)
            if not ticket.done():
                ticket.set_result(None)  # stays busy: the turn passes straight on
                return
        self._busy = False
