"""What a relay's flood costs the reader, measured: notifications a second (the reader
naps under a flood) and copies of one event sent again and again (counted as waste).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ...protocol.limits import RepeatCounter

REPEAT_WINDOW = 10.0  # seconds over which copies of one event from one relay are counted
# Under a flood the reader naps a moment each time it has emptied the SDK's channel, so
# the next events are read in a run: a read that must wait costs a wake-up from Rust's
# threads (a pipe write, an epoll round, the GIL changing hands), a read of what is
# queued costs none. Measured with 1,000 junk wraps a second: 9 wake-ups per 10 events
# without the nap, 1 with it; Python CPU per event 44-68 us -> 39-42 us. Below BUSY_RATE
# notifications a second the reader never naps, so a quiet call's latency is unchanged;
# in a flood, the peer's messages wait at most NAP more.
BUSY_RATE = 300
NAP = 0.01
YIELD_EVERY = 32  # notifications read without waiting before the reader lets others run


class FloodMeter:
    """Notifications read a second, over the last full second and the current one."""

    def __init__(self) -> None:
        self._busy = (0.0, 0, False)  # (window start, notifications in it, busy last window)

    def flooded(self, now: float) -> bool:
        """Count one notification; whether the reader has had more than BUSY_RATE a
        second, over the last full second or the current one so far."""
        start, count, before = self._busy
        count += 1
        if now - start >= 1.0:
            before, start, count = count > BUSY_RATE * (now - start), now, 0
        self._busy = (start, count, before)
        return before or count > BUSY_RATE


class Pacer:
    """When one reader of notifications lets the event loop run others: after a wait (the
    channel was empty), a nap if its relays flood it (``meter``: the reader's, None for a
    connection that only publishes); else every YIELD_EVERY notifications. A ready answer
    does not yield to the loop (sdk_speedups): a channel that never empties, as under a
    flood on a slow machine, would otherwise keep every other task (the inbound queue,
    commands, re-sends) from running."""

    def __init__(self, meter: FloodMeter | None) -> None:
        self.meter = meter
        self._unyielded = 0

    async def after(self, waited: bool) -> None:
        """Called after each notification; ``waited``: reading it had to wait."""
        flooded = self.meter is not None and self.meter.flooded(time.monotonic())
        if waited:
            self._unyielded = 0
            if flooded:
                await asyncio.sleep(NAP)  # let a run build up
            return
        self._unyielded += 1
        if self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
            await asyncio.sleep(0)


class RepeatWatch:
    """Copies of one event from the relays we read, told to ``on_waste`` past an allowance."""

    def __init__(self, relays: int, on_waste: Callable[[str, int], None] | None) -> None:
        self.on_waste = on_waste
        self._repeats = RepeatCounter(REPEAT_WINDOW)
        # By id over all relays we read (see `count`): each may send an event once.
        self._copies = RepeatCounter(REPEAT_WINDOW, self._repeats.allowance * relays)

    def count(self, note: Any, event: Any) -> None:
        """Every event a relay sends comes here but the first copy of each (the SDK passes
        that on as a new event, and the reader skips the message that carried it): a relay
        repeating one is wasting our CPU on purpose. Copies
        are counted by id over all relays first, and per relay only past the allowance
        for all of them (each relay sends an event once per subscription): reading the
        relay's address costs a call into Rust, which most events need not pay."""
        if self.on_waste is None:
            return
        event_id, now = event.id().to_hex(), time.monotonic()
        if not self._copies.repeated("", event_id, now):
            return
        url = str(note.relay_url)
        if self._repeats.repeated(url, event_id, now):
            self.on_waste(url, 1)
