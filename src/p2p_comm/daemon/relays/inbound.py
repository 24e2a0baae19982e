"""Inbound: gift wraps from relays to the call core, in batches, exactly once.

A wrap passes a cheap gate (size, the rate of its relay) and waits in its relay's queue;
queues are served in turn, a batch at a time. Each batch is unwrapped and checked
(unwrap.py), then sorted by (call, seq) and handed to the calls service in ONE
transaction with the marks that say it was processed. A wrap dropped for a passing
reason (a limit, a failed transaction) is not marked: a catch-up (catch_up.py) fetches it
again, and its sender re-sends it as a fresh wrap.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable
from typing import Any

import nostr_sdk as ns

from ... import clock
from ...nostr import kinds
from ...protocol.limits import InboundGate
from ...store import Store
from .catch_up import BATCH, WRAP_LOOKBACK, CatchUp
from .lanes import LaneWatch
from .nostr_io import InboundEvent, RelayPool
from .unwrap import CallSink, Taken, Unwrapper
from .waste import Waste

__all__ = ["BATCH", "WRAP_LOOKBACK", "CallSink", "Inbound", "Taken"]

log = logging.getLogger("p2p.inbound")


class Inbound:
    """Queues wraps as they arrive and takes them in batches; fetches what it missed."""

    def __init__(
        self,
        keys: Any,
        pubkey_hex: str,
        pool: RelayPool,
        store: Store,
        gate: InboundGate,
        sink: CallSink,
        lanes: bool = True,
    ) -> None:
        self.keys = keys
        self.pubkey = pubkey_hex
        self.pool = pool
        self.store = store
        self.gate = gate
        self.sink = sink
        self.stats: dict[str, Any] = {
            "unwrapped": 0,
            "catch_ups": 0,  # finished, and the pages they read: what a flood makes them cost
            "catch_up_pages": 0,
            "dropped": {},
            "max_delivery_delay_s": 0.0,
        }
        # One queue per relay, served in turn: a relay that floods us cannot make wraps
        # that arrive through a good relay wait behind its junk.
        self._queues: dict[str, collections.deque[InboundEvent]] = {}
        self._ready = asyncio.Event()
        # Wraps of our calls known by their one-time key (lanes.py): served before the rest.
        self.lanes = LaneWatch(keys, sink.lane_calls if lanes else list)  # `call_lanes`
        self._lane: collections.deque[InboundEvent] = collections.deque()
        self.catching = CatchUp(self)
        self.waste = Waste(pool, gate.limits, self.stats["dropped"], self.schedule_catch_up)
        self.reader = Unwrapper(
            keys, gate, sink, self.waste, self.stats, self.schedule_catch_up, self._take_released
        )
        self.fragments = self.reader.fragments
        self.deferred = self.reader.deferred
        # Ratchet seals read and not yet taken (see `Unwrapper.reading`): the same dict.
        self._reading = self.reader.reading
        self._parked: list[Taken] = []  # ratchet messages read, waiting for their call

    def known(self, event_id: str) -> bool:
        """Processed already, known junk, or waiting for its sender's budget: skipped
        without unwrapping."""
        return event_id in self.waste.ids or event_id in self.deferred or self.store.seen(event_id)

    def wrap_filter(self) -> Any:
        since = ns.Timestamp.from_secs(int(clock.now() - WRAP_LOOKBACK))
        me = ns.PublicKey.parse(self.pubkey)
        return ns.Filter().kind(ns.Kind(kinds.GIFT_WRAP)).pubkey(me).since(since)

    # Arrival --------------------------------------------------------------------------

    def submit(self, event: InboundEvent) -> None:
        """A live wrap from a subscription: gate it and queue it."""
        now = clock.now()
        self.lanes.refresh(now)
        if not self.lanes.idle and self.lanes.expects(event.pubkey):
            # A wrap of one of our calls, known by its key: never shed, and opened first.
            if not self.known(event.id) and self.gate.admit_size(len(event.content)):
                self._lane.append(event)
                self._ready.set()
            return
        # A relay's backlog is mostly what we took before: that spends none of its rate.
        if event.backlog and self.known(event.id):
            return
        # Else the rate first: a wrap shed there is read no further (its id and content stay
        # in the SDK), so a flood's shed wraps cost little more than their arrival.
        if self.gate.admit_rate(now, event.relay):
            if not event.backlog and self.known(event.id):
                return
            if self.gate.admit_size(len(event.content)):
                self._queues.setdefault(event.relay, collections.deque()).append(event)
                self._ready.set()
                return
        self.schedule_catch_up()
        if not (event.stored or event.backlog):  # what it stored is no flood
            self.waste.wasted(event.relay, 1, now)

    def _next_batch(self) -> list[InboundEvent]:
        """Up to BATCH queued wraps, taken from each relay's queue in turn."""
        batch: list[InboundEvent] = []
        while self._lane and len(batch) < BATCH:
            batch.append(self._lane.popleft())
        while len(batch) < BATCH and self._queues:
            for relay in list(self._queues):
                queue = self._queues[relay]
                batch.append(queue.popleft())
                if not queue:
                    del self._queues[relay]
                if len(batch) >= BATCH:
                    break
        return batch

    async def run(self) -> None:
        """Take queued wraps in batches until cancelled; a failing batch never stops it."""
        while True:
            await self._ready.wait()
            batch = self._next_batch()
            if not self._queues and not self._lane:
                self._ready.clear()
            try:
                self.take(self.reader.unwrap_all(batch, live=True), live=True)
            except Exception:
                log.exception("an inbound batch failed; its wraps will be fetched again")
                self.recover()
                self.schedule_catch_up()
            await asyncio.sleep(0)  # let commands in between two batches

    # Taking -------------------------------------------------------------------------

    def recover(self) -> None:
        """After a failure between reading wraps and taking them: the calls and their
        ratchets as the database has them, so what was read and not taken reads again."""
        self.sink.reload()
        self._reading.clear()
        self._parked.clear()  # their calls' ratchets were never written: they read again

    def _take_released(self, items: list[Taken | str]) -> None:
        """Wraps whose senders' budgets now allow them, handed over like a batch."""
        try:
            self.take(items)
        except Exception:
            log.exception("deferred wraps failed; a catch-up fetches them again")
            self.schedule_catch_up()

    def take(self, items: list[Taken | str], live: bool = False) -> None:
        """Hand a batch to the calls, in (call, seq) order, in one transaction.

        A live message its call could not take for its order (too far ahead, or no room to
        hold it) is not marked processed: a catch-up takes it later, in order, rather than
        the sender's re-sends (a relay replays a stored backlog to a new subscription
        newest first). A catch-up marks what it cannot take, so such a wrap is opened
        once live and once more by the catch-up (and again only if a relay replays it).

        Except a ratchet message, live or caught up: its key is gone once read, so neither
        a catch-up nor a re-send could read it again. It waits here (`_parked`), its call's
        ratchet state unwritten meanwhile, and is offered again after each batch that took
        something."""
        took = self._take(items, live)
        while took and self._parked:
            parked, self._parked = self._parked, []
            took = self._take(list(parked), live=True)

    def _take(self, items: list[Taken | str], live: bool) -> bool:
        """`take` once; whether any message was handed to a call."""
        if not items:
            return False  # a batch of junk: nothing to write
        taken = sorted((item for item in items if isinstance(item, Taken)), key=Taken.order)
        ratcheted = {
            t.wrap_id: self._reading.pop(t.wrap_id) for t in taken if t.wrap_id in self._reading
        }
        now = clock.now()
        work: list[Awaitable[None]] = []
        again = took = False
        try:
            with self.store.transaction():
                for item in items:
                    if isinstance(item, str):
                        self.store.mark_seen(item, now)
                for item in taken:
                    # Unwrapped a while ago (a catch-up unwraps page by page, the live path
                    # meanwhile goes on): handed over since by another path, not twice.
                    if self.store.seen(item.wrap_id):
                        continue
                    # A catch-up's ratchet message too (it used to go on to `receive`, be
                    # dropped there for its order, and take its spent key with it).
                    check = live or item.wrap_id in ratcheted
                    if check and item.message and self.sink.out_of_reach(item.sender, item.message):
                        if item.wrap_id in ratcheted:
                            self._reading[item.wrap_id] = ratcheted[item.wrap_id]
                            self._parked.append(item)
                        else:
                            again = True
                        continue
                    self.store.mark_seen(item.wrap_id, now)
                    took = True
                    if item.message is None:
                        self.sink.owner_reply(item.owner_text, now)
                    elif item.sender in self.sink.blocked:
                        self.sink.receive_from_blocked(item.sender, item.message)
                        self.waste.drop("blocked")
                    else:
                        work += self.sink.receive(item.sender, item.message, item.sent_at, now)
                        if item.message.type != "ack":
                            delay = round(max(0.0, now - item.sent_at), 3)
                            if delay > self.stats["max_delivery_delay_s"]:
                                self.stats["max_delivery_delay_s"] = delay
                # The ratchet states these messages advanced, with the messages; not those
                # of calls with a message read and not yet taken (parked, or in flight).
                self.sink.flush_secrets(set(self._reading.values()))
        except Exception:
            self.sink.reload()  # the calls (and ratchets) as the database has them
            for coroutine in work:
                if asyncio.iscoroutine(coroutine):
                    coroutine.close()
            raise
        self.sink.publish(work)
        if again:
            self.schedule_catch_up()
        return took

    # Catch-up -------------------------------------------------------------------------

    def schedule_catch_up(self) -> None:
        """Fetch again, a little later, what was skipped (`CatchUp.schedule`)."""
        self.catching.schedule()

    async def catch_up(self) -> int:
        """Page back through the lookback window at each inbox relay we read now; returns
        how many new wraps were found (`CatchUp.run`)."""
        return await self.catching.run()
