"""Wraps over their sender's byte budget (`bytes_per_peer_per_minute`, counted in what the
wraps carry: the rumor's content, not the wrap's twice-encrypted size), kept opened until the
budget allows them.

Dropping them cost a catch-up that fetched and opened each again every few seconds until the
budget let it through: a file after other files took 10-25 times as long, most of it spent
opening the same wraps again (issue 20). Kept here, each is opened once; a sender's wraps go
in the order they came; a re-send of one already waiting (the same rumor in a fresh wrap)
spends nothing. At most `MAX_BYTES` are kept; past that a wrap is left to a catch-up, as
before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ... import clock
from ...nostr import nip59
from ...protocol.limits import InboundGate
from ..base.tasks import spawn
from .relay_events import InboundEvent

log = logging.getLogger("p2p.inbound")

MAX_BYTES = 32 * 1024 * 1024  # opened wraps kept for their senders' budgets

# (wrap, what it carried, now, live, where to put the outcome): the checks after opening.
Opened = Callable[[InboundEvent, nip59.Unwrapped, float, bool, list[Any]], None]


class BudgetWait:
    """Opened wraps waiting for their senders' budgets, oldest first."""

    def __init__(self, gate: InboundGate, opened: Opened, take: Callable[[list[Any]], None]):
        self.gate = gate
        self.opened = opened
        self.take = take
        self._waiting: dict[str, tuple[str, InboundEvent, nip59.Unwrapped]] = {}  # by wrap id
        self._bytes = 0
        self._by_sender: dict[str, int] = {}
        self._rumors: set[tuple[str, str]] = set()  # (sender, rumor id) waiting
        self._task: asyncio.Task[Any] | None = None

    def __contains__(self, wrap_id: object) -> bool:
        return wrap_id in self._waiting

    def has_room(self, size: int) -> bool:
        return self._bytes + size <= MAX_BYTES

    def waiting_from(self, sender: str) -> bool:
        """Whether ``sender`` has wraps waiting: later ones wait behind them (its messages
        are taken in order anyway)."""
        return self._by_sender.get(sender, 0) > 0

    def keep(
        self, event: InboundEvent, gift: nip59.Unwrapped, when_full: Callable[[], None]
    ) -> bool:
        """Keep an opened wrap until its sender's budget allows it. True if it is a re-send
        of a message already waiting: nothing to keep, and it must not spend the budget a
        second time. ``when_full``: what to do when nothing more can be kept."""
        key = (gift.sender, gift.rumor_id)
        if key in self._rumors:
            return True
        size = len(event.content)
        # A ratchet message is kept whatever the room: read, its key is spent, and dropped
        # it could never be read again. (Unwrapper reads none when there is no room.)
        if self._bytes + size > MAX_BYTES and gift.ratchet_call is None:
            log.info("wrap %s over its sender's budget, none kept; later", event.id[:12])
            when_full()
            return False
        self._rumors.add(key)
        self._waiting[event.id] = (gift.sender, event, gift)
        self._bytes += size
        self._by_sender[gift.sender] = self._by_sender.get(gift.sender, 0) + 1
        if self._task is None or self._task.done():
            self._task = spawn(self._release(), "budget-release")
        return False

    def _forget(self, wrap_id: str, sender: str, size: int) -> None:
        self._rumors.discard((sender, self._waiting[wrap_id][2].rumor_id))
        del self._waiting[wrap_id]
        self._bytes -= size
        self._by_sender[sender] -= 1
        if not self._by_sender[sender]:
            del self._by_sender[sender]

    async def _release(self) -> None:
        while self._waiting:
            wait = self.release_due()
            if wait is None:
                return
            await asyncio.sleep(max(0.05, wait))

    def release_due(self) -> float | None:
        """Hand over the wraps whose senders' budgets allow them now; the seconds until the
        next one may go (None when none waits). A catch-up asks first, too."""
        now = clock.now()
        ready: list[Any] = []
        waits: list[float] = []
        blocked: set[str] = set()
        for wrap_id, (sender, event, gift) in list(self._waiting.items()):
            if sender in blocked:
                continue
            size, charge = len(event.content), len(gift.content)
            wait = self.gate.bytes_wait(sender, charge, now)
            if wait <= 0 and self.gate.admit_bytes(sender, charge, now):
                self._forget(wrap_id, sender, size)
                self.opened(event, gift, now, False, ready)
                continue
            blocked.add(sender)  # its later wraps wait behind this one
            if wait == float("inf"):  # larger than the whole budget: it never goes
                self._forget(wrap_id, sender, size)
                log.info("wrap %s is larger than its sender's whole budget", event.id[:12])
            else:
                waits.append(wait)
        if ready:
            self.take(ready)
        return min(waits) if waits else None
