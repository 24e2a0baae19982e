"""What relays and strangers make the daemon do for nothing, and what it does about it.

Each relay's waste is counted over a window: a wrap shed by the inbound gate counts 1; one
that leads nowhere (undecryptable, malformed, not our kind, for a call we do not have, from a
key not in the call, or a stranger's past the strangers' budget) counts `WEIGHT`, since it
cost a decryption; a copy of an event the relay already sent us counts 1 (the relay pool
counts those). Over the limit the relay is muted, unless it is the last inbox relay up. Junk
decides on a slow machine: there the daemon reads a flood slower than the gate's rate, and
nothing is shed.

Junk is remembered by id in memory only: a stranger can send it without end, and a database
row each would grow the disk at its rate. It is logged one by one for the first few a
minute, then as a count, for the same reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ... import clock
from ...protocol.limits import InboundLimits, RecentIds
from .nostr_io import RelayPool
from .relay_events import InboundEvent

log = logging.getLogger("p2p.inbound")

FLOOD_WINDOW = 10.0
FLOOD_LIMIT = 2000  # 2000 shed or 200 that led nowhere, in the window
WEIGHT = 10  # what one wrap that led nowhere counts: it cost a decryption
# 100,000 ids are about 15 MiB; past that the oldest are forgotten (and opened again if a
# catch-up brings them back).
MEMORY = 100_000
LOG_EVERY = 60.0  # seconds: at most LOG_LINES junk wraps are logged one by one
LOG_LINES = 20


class Waste:
    """Per-relay waste (a flood mutes its relay), junk ids, and the drop counters."""

    def __init__(
        self,
        pool: RelayPool,
        limits: InboundLimits,
        dropped: dict[str, Any],
        after_mute: Callable[[], None],
    ) -> None:
        self.pool = pool
        self.limits = limits
        self.dropped = dropped  # reason -> count, shown in `status`
        self.after_mute = after_mute  # what the flood crowded out comes with a catch-up
        self.ids = RecentIds(MEMORY)
        self.found = 0  # junk wraps so far: a catch-up compares before and after a page
        self._counts: dict[str, tuple[float, int]] = {}  # relay -> (since, count)
        self._logged: list[float] = [0.0, 0]  # (since, lines) in this log period

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def junk(self, event: InboundEvent, reason: str, now: float, live: bool, detail: str) -> None:
        """A wrap that leads nowhere: remembered in memory, and counted against its relay
        when it came live (a catch-up, or the replay after a mute, reads back what a relay
        stored, maybe while it was muted for this very junk: no new flood)."""
        self.drop(reason)
        self.ids.add(event.id)
        self.found += 1
        if live and not event.stored:
            self.wasted(event.relay, WEIGHT, now)
        if now - self._logged[0] > LOG_EVERY:
            if self._logged[1] > LOG_LINES:
                quiet = self._logged[1] - LOG_LINES
                log.info("dropped %d more wraps that led nowhere (see status)", quiet)
            self._logged = [now, 0]
        self._logged[1] += 1
        if self._logged[1] <= LOG_LINES:
            log.info("dropped wrap %s (%s): %s", event.id[:12], reason, detail)

    def turned_away(self, event: InboundEvent, now: float, live: bool) -> None:
        """A stranger's wrap past the strangers' budget, opened to its seal only: it cost a
        decryption, as junk does, and is remembered as junk is, so a catch-up that brings
        it back (they page through a flood's wraps) does not open it again; a sender that
        is genuine re-sends it as a fresh wrap, with a fresh id."""
        self.ids.add(event.id)
        self.found += 1
        if live and not event.stored:
            self.wasted(event.relay, WEIGHT, now)

    def wasted(self, relay: str, weight: int, now: float | None = None) -> None:
        """Count ``weight`` against ``relay``; mute it when its window is over the limit:
        even shed, a flood costs the CPU that wraps from good relays need."""
        if not relay:
            return
        now = clock.now() if now is None else now
        start, count = self._counts.get(relay, (now, 0))
        if now - start > FLOOD_WINDOW:
            start, count = now, 0
        count += weight
        self._counts[relay] = (start, count)
        if count < FLOOD_LIMIT:
            return
        del self._counts[relay]
        seconds = self.limits.relay_mute_seconds
        if self.pool.mute(relay, seconds):
            log.warning(
                "relay %s floods us (over %d shed, or %d junk, in %ss); muted for %ss",
                relay,
                FLOOD_LIMIT,
                FLOOD_LIMIT // WEIGHT,
                FLOOD_WINDOW,
                seconds,
            )
            self.after_mute()
