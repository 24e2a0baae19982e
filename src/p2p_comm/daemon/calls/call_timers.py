"""The calls' timers: ring timeouts and re-sends when due, and pruning what is too old.

One task sleeps until the nearest deadline of any call that has one (`CallService.timed`)
or until a commit changed a call, then ticks the calls that are due in one transaction.
Once an hour the processed wrap ids past the lookback and stale partial files go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ... import clock
from ..relays.catch_up import WRAP_LOOKBACK

if TYPE_CHECKING:
    from .calls import CallService

log = logging.getLogger("p2p.calls")

SEEN_MARGIN = 3600.0  # keep processed wrap ids this much past the lookback


class CallTimers:
    """Fires the deadlines of one `CallService`'s calls."""

    def __init__(self, service: CallService) -> None:
        self.service = service
        self._event = asyncio.Event()
        self._pruned_at = 0.0

    def wake(self) -> None:
        """A call changed: look at the deadlines again."""
        self._event.set()

    async def run(self) -> None:
        """Fire ring timeouts and retransmits when due; never dies of one failure."""
        while True:
            deadlines = [
                d
                for cid in self.service.timed
                if (d := self.service.calls[cid].next_deadline()) is not None
            ]
            delay = max(0.0, min(deadlines) - clock.now()) if deadlines else SEEN_MARGIN
            self._event.clear()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._event.wait()
                    continue  # something changed: look at the deadlines again, tick if due
                except TimeoutError:
                    pass
            try:
                self.tick(clock.now())
            except Exception:
                log.exception("timers failed; retrying in a second")
                self.service.reload()
                await asyncio.sleep(1.0)

    def tick(self, now: float) -> None:
        work: list[Awaitable[None]] = []
        with self.service.store.transaction():
            if now - self._pruned_at > SEEN_MARGIN:
                self.service.store.prune_seen(now - WRAP_LOOKBACK - SEEN_MARGIN)
                self._pruned_at = now
                self.service.store.after_commit(lambda: self.service.sweep_partials(now))
            for call_id in list(self.service.timed):
                call = self.service.calls[call_id]
                deadline = call.next_deadline()
                if deadline is not None and deadline <= now:
                    work += self.service.apply(call, call.tick(now), now)
        self.service.publish(work)

    def peer_seen(self, pubkey: str, now: float) -> None:
        """The peer announced itself after a silence: re-send at once what waited."""
        window = self.service.config.effective_liveness_window
        if not self.service.directory.came_back(pubkey, now, window):
            return
        for call_id in self.service.timed:
            call = self.service.calls[call_id]
            if call.peer == pubkey and call.nudge(now):
                self._event.set()
