"""Inbound: gift wraps from relays to the call core, in batches, exactly once.

A wrap passes a cheap gate (size, the rate of its relay), is unwrapped and verified,
then sorted with the rest of its batch by (call, seq) and handed to the calls service in
ONE transaction with the marks that say it was processed. A wrap sealed by a key we have
no call with is opened past its first layer only within the strangers' budget; one that
leads nowhere is junk, remembered in memory and counted against its relay (waste.py); one
over its sender's byte budget waits, opened, until the budget allows it (budget.py). A wrap
dropped for a passing reason (a limit, a failed transaction) is not marked: a catch-up
fetches it again, and its sender re-sends it as a fresh wrap. Catch-up pages back through
the whole lookback window with `until`, past any relay's cap on one query.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

import nostr_sdk as ns

from .. import clock
from ..nostr import kinds, nip59
from ..protocol import frag, ratchet, wire
from ..protocol.limits import InboundGate, RecentIds
from ..store import Store
from .budget import BudgetWait
from .nostr_io import InboundEvent, RelayPool, spawn
from .secrecy import RATCHETED_TYPES, header_n
from .waste import Waste

log = logging.getLogger("p2p.inbound")

# Wraps from version-1 peers (and NIP-17 apps) are backdated up to two days (NIP-59).
WRAP_LOOKBACK = 2 * 86400 + 3600
BATCH = 200  # wraps per transaction: bounds how long one batch holds the event loop
PAGE = 500  # events asked for per catch-up query (relays cap lower or equal)
MAX_PAGES = 200
CATCH_UP_DELAY = 3.0
FETCH_TIMEOUT = 10.0  # seconds one catch-up page may take at one relay
# A catch-up page that is junk at least this much stops the catch-up at that relay: it
# answers our query with noise (stored or made up on the spot), and paging on would only
# unwrap more of it. Its next catch-up skips what is known junk by id and goes further.
JUNK_PAGE_STOP = 100
# A ratchet seal that would make its session skip more message keys than this is read
# later, by a catch-up that sorts such seals by message number first: wraps come in the
# relay's order (newest first, jittered), and reading a long backlog in that order would
# overflow the session's skipped keys (docs/PROTOCOL.md 3.12.4) and lose messages.
IN_ORDER_SKIP = 64


@dataclass(frozen=True)
class Taken:
    """An unwrapped call message, ready for the core."""

    wrap_id: str
    sender: str
    message: wire.WireMessage | None  # None: a NIP-17 message from our owner
    sent_at: int
    owner_text: str = ""

    def order(self) -> tuple[str, int]:
        return (self.message.call, self.message.seq) if self.message else ("", 0)


class CallSink(Protocol):
    """What inbound needs from the calls service."""

    blocked: set[str]
    owner: str | None

    def peer_of(self, call_id: str) -> str | None: ...

    def familiar(self, pubkey: str) -> bool: ...

    def receive(
        self, sender: str, message: wire.WireMessage, sent_at: int, now: float
    ) -> list[Awaitable[None]]: ...

    def receive_from_blocked(self, sender: str, message: wire.WireMessage) -> None: ...

    def out_of_reach(self, sender: str, message: wire.WireMessage) -> bool: ...

    def owner_reply(self, text: str, now: float) -> None: ...

    def reload(self) -> None: ...

    def opener(self, now: float, max_skip: int | None = None) -> nip59.Opener: ...

    def flush_secrets(self, busy: set[str]) -> None: ...

    def ratcheted(self, call_id: str, sender: str) -> bool: ...

    def duplicate(self, call_id: str, sender: str) -> bool: ...

    def publish(self, work: list[Awaitable[None]]) -> None: ...


class Inbound:
    """Queues wraps as they arrive and takes them in batches; fetches what it missed."""

    def __init__(
        self,
        keys: Any,
        pubkey_hex: str,
        pool: RelayPool,
        store: Store,
        gate: InboundGate,
        sink: CallSink | None = None,
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
        self._catch_up_task: asyncio.Task[Any] | None = None
        self._catch_up_again = False
        # Pieces of messages too large for a relay (`frag`), until each message is whole.
        self.fragments = frag.Reassembler()
        self.waste = Waste(pool, gate.limits, self.stats["dropped"], self.schedule_catch_up)
        # (sender, call) of requests unwrapped lately: a message of a call whose request
        # is in the same batch or catch-up leads somewhere, though the call is not made yet.
        self._requested = RecentIds(4096)
        # Wraps opened, then found over their sender's byte budget (see budget.py).
        self.deferred = BudgetWait(self.gate, self._opened, self._take_released)
        # Ratchet seals read (their keys now gone) and not yet taken, by wrap id, with their
        # call: another path that meets the same wrap meanwhile must not take it for a
        # duplicate and mark it, and the call's ratchet state is not written while any is
        # pending (a crash before it is taken must leave a state that reads it again).
        self._reading: dict[str, str] = {}

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
        if self.known(event.id):
            return
        now = clock.now()
        if not self.gate.admit_wrap(len(event.content), now, event.relay):
            self.schedule_catch_up()
            if not event.stored:
                self.waste.wasted(event.relay, 1, now)
            return
        self._queues.setdefault(event.relay, collections.deque()).append(event)
        self._ready.set()

    def _next_batch(self) -> list[InboundEvent]:
        """Up to BATCH queued wraps, taken from each relay's queue in turn."""
        batch: list[InboundEvent] = []
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
            if not self._queues:
                self._ready.clear()
            try:
                self.take(self.unwrap_all(batch, live=True), live=True)
            except Exception:
                log.exception("an inbound batch failed; its wraps will be fetched again")
                self._recover()
                self.schedule_catch_up()
            await asyncio.sleep(0)  # let commands in between two batches

    # Processing -----------------------------------------------------------------------

    def _worth_opening(self, sender: str, event: InboundEvent, now: float, live: bool) -> bool:
        """Whether to open the seal of a wrap that claims ``sender``: always for a key we
        have a call with (or know, or blocked) and for the owner; for anyone else within
        the strangers' budget (`InboundGate.admit_stranger`), so fresh keys by the
        thousand cost one decryption each and never hold up a known peer's wraps."""
        assert self.sink is not None
        if sender == self.sink.owner or self.sink.familiar(sender):
            return True
        if self.gate.admit_stranger(now):
            return True
        self.waste.turned_away(event, now, live)
        return False

    def _leads_somewhere(self, sender: str, message: wire.WireMessage) -> str | None:
        """None if ``message`` belongs to a call we have with ``sender`` (or rings one);
        else why not. Asked before any work for it: a stranger's wraps for calls that do
        not exist cost an unwrap each, and nothing else."""
        assert self.sink is not None
        if message.type == "request":
            self._requested.add(f"{sender}:{message.call}")
            return None
        peer = self.sink.peer_of(message.call)
        if peer is None:
            return None if f"{sender}:{message.call}" in self._requested else "unknown_call"
        return None if peer == sender else "not_in_call"

    def unwrap_all(
        self,
        events: list[InboundEvent],
        live: bool = False,
        ahead: list[tuple[int, InboundEvent, nip59.Sealed]] | None = None,
        max_skip: int | None = IN_ORDER_SKIP,
        opened: dict[str, nip59.Sealed] | None = None,
    ) -> list[Taken | str]:
        """Unwrap and check each wrap: a `Taken`, or the id of a wrap to mark processed
        without effect (a fragment kept, a forged wrap of a known peer). Junk is
        remembered in memory (`junk`); passing refusals leave nothing. Ratchet seals that
        would skip more than ``max_skip`` keys go to ``ahead`` with their message number
        (a catch-up reads them sorted once the rest is read, passing their outer layers
        back as ``opened``), or wait for a catch-up."""
        assert self.sink is not None
        out: list[Taken | str] = []
        now = clock.now()
        opener = self.sink.opener(now, max_skip)
        for event in events:
            # Every caller looked the wrap up (`known`) just before, the database too, and
            # `take` looks there again before anything is delivered; memory is checked
            # again, as a catch-up meanwhile may have found it junk or made it wait.
            if event.id in self.waste.ids or event.id in self.deferred:
                continue
            self.stats["unwrapped"] += 1
            try:
                outer = opened.get(event.id) if opened else None
                sealed = outer or nip59.open_wrap(
                    self.keys, event.event, verified=True, read=(event.kind, event.content)
                )
                if not self._worth_opening(sealed.sender, event, now, live):
                    continue
                gift = nip59.open_seal(self.keys, sealed, opener)
            except nip59.UnwrapError as exc:
                self.waste.junk(event, "unwrap_failed", now, live, str(exc))
                continue
            except ratchet.MessageKeyGone as exc:
                log.debug("ratchet seal from %s read already: %s", sealed.sender[:12], exc)
                if event.id in self._reading:
                    continue  # this very wrap, read by the other path (live or catch-up)
                # A ratchet message already read (its key is gone): a retransmission whose
                # receipt was lost. Processed, and receipted again.
                if sealed.call is not None and self.sink.duplicate(sealed.call, sealed.sender):
                    out.append(event.id)
                else:
                    self.waste.junk(event, "unknown_call", now, live, "ratchet seal, no call")
                continue
            except ratchet.TooFarAhead as exc:
                # Not now: once the gap fills, a catch-up or the sender's re-send brings it.
                log.debug("ratchet seal from %s not read yet: %s", sealed.sender[:12], exc)
                if ahead is not None:
                    ahead.append((header_n(sealed.content), event, sealed))
                else:
                    self.schedule_catch_up()
                continue
            except ratchet.RatchetError as exc:
                self.waste.junk(event, "unwrap_failed", now, live, f"ratchet: {exc}")
                continue
            if gift.ratchet_call is not None:
                self._reading[event.id] = gift.ratchet_call
            sender = gift.sender
            if self.deferred.waiting_from(sender) or (
                sender not in self.sink.blocked
                and not self.gate.admit_bytes(sender, len(gift.content), now)
            ):
                if self.deferred.keep(event, gift, self.schedule_catch_up):
                    out.append(event.id)  # a re-send of one already waiting: processed
                continue
            self._opened(event, gift, now, live, out)
        return out

    def _opened(
        self,
        event: InboundEvent,
        gift: nip59.Unwrapped,
        now: float,
        live: bool,
        out: list[Taken | str],
    ) -> None:
        """The checks after a wrap is open and its sender's budget allows it."""
        self._check(event, gift, now, live, out)
        last = out[-1] if out else None
        if not (isinstance(last, Taken) and last.wrap_id == event.id):
            self._reading.pop(event.id, None)  # read, and gone: nothing to take later

    def _check(
        self,
        event: InboundEvent,
        gift: nip59.Unwrapped,
        now: float,
        live: bool,
        out: list[Taken | str],
    ) -> None:
        assert self.sink is not None
        sender, kind = gift.sender, gift.kind
        if kind == kinds.PRIVATE_MESSAGE and self.sink.owner and sender == self.sink.owner:
            out.append(Taken(event.id, sender, None, 0, gift.content))
            return
        if kind != kinds.CALL:
            self.waste.junk(event, "not_our_kind", now, live, f"kind {kind} from {sender[:12]}")
            return
        try:
            message = wire.decode(gift.content)
        except wire.WireError as exc:
            self.waste.junk(event, "malformed", now, live, f"from {sender[:12]}: {exc}")
            return
        if gift.ratchet_call is not None and gift.ratchet_call != message.call:
            self.waste.junk(event, "malformed", now, live, "ratchet seal of another call")
            return
        if (
            gift.ratchet_call is None
            and message.type in RATCHETED_TYPES
            and self.sink.ratcheted(message.call, sender)
        ):
            # A downgrade: the peer set up forward secrecy, then sent content without it.
            log.warning(
                "refused %s seq %s of call %s from %s: sent without the ratchet it set up",
                message.type,
                message.seq,
                message.call[:8],
                sender[:12],
            )
            self.waste.drop("downgrade")
            out.append(event.id)  # processed: never shown to the agent, never receipted
            return
        nowhere = self._leads_somewhere(sender, message)
        if nowhere is not None:
            self.waste.junk(event, nowhere, now, live, f"{message.type} from {sender[:12]}")
            return
        if message.type == "frag":
            whole = self._reassemble(event.id, sender, message, now)
            if whole is None:
                out.append(event.id)  # kept in memory: the sender re-sends every piece
                return
            message = whole
        out.append(Taken(event.id, sender, message, gift.created_at))

    def _recover(self) -> None:
        """After a failure between reading wraps and taking them: the calls and their
        ratchets as the database has them, so what was read and not taken reads again."""
        assert self.sink is not None
        self.sink.reload()
        self._reading.clear()

    def _take_released(self, items: list[Taken | str]) -> None:
        """Wraps whose senders' budgets now allow them, handed over like a batch."""
        try:
            self.take(items)
        except Exception:
            log.exception("deferred wraps failed; a catch-up fetches them again")
            self.schedule_catch_up()

    def _reassemble(
        self, wrap_id: str, sender: str, piece: wire.WireMessage, now: float
    ) -> wire.WireMessage | None:
        """The whole message once ``piece`` completes it; then it is taken as if it had come
        in one wrap (the same de-duplication by seq, the same receipt)."""
        try:
            return self.fragments.add(sender, piece, now)
        except frag.FragmentError as exc:
            log.info("dropped fragment %s from %s: %s", wrap_id[:12], sender[:12], exc)
            self.waste.drop("bad_fragment")
            return None

    def take(self, items: list[Taken | str], live: bool = False) -> None:
        """Hand a batch to the calls, in (call, seq) order, in one transaction.

        A live message its call could not take for its order (too far ahead, or no room to
        hold it) is not marked processed: a catch-up takes it later, in order, rather than
        the sender's re-sends (a relay replays a stored backlog to a new subscription
        newest first). A catch-up marks what it cannot take, so such a wrap is opened
        once live and once more by the catch-up (and again only if a relay replays it)."""
        assert self.sink is not None
        if not items:
            return  # a batch of junk: nothing to write
        taken = sorted((item for item in items if isinstance(item, Taken)), key=Taken.order)
        for read in taken:
            self._reading.pop(read.wrap_id, None)
        now = clock.now()
        work: list[Awaitable[None]] = []
        again = False
        try:
            with self.store.transaction():
                # The ratchet states these messages advanced, with the messages.
                self.sink.flush_secrets(set(self._reading.values()))
                for item in items:
                    if isinstance(item, str):
                        self.store.mark_seen(item, now)
                for item in taken:
                    # Unwrapped a while ago (a catch-up unwraps page by page, the live path
                    # meanwhile goes on): handed over since by another path, not twice.
                    if self.store.seen(item.wrap_id):
                        continue
                    if live and item.message and self.sink.out_of_reach(item.sender, item.message):
                        again = True
                        continue
                    self.store.mark_seen(item.wrap_id, now)
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
        except Exception:
            self.sink.reload()  # the calls (and ratchets) as the database has them
            for coroutine in work:
                if asyncio.iscoroutine(coroutine):
                    coroutine.close()
            raise
        self.sink.publish(work)
        if again:
            self.schedule_catch_up()

    # Catch-up -------------------------------------------------------------------------

    def schedule_catch_up(self) -> None:
        """Fetch again, a little later, what was skipped: relays never re-send an event id
        on a live subscription, however often it is published."""
        if self._catch_up_task is None or self._catch_up_task.done():
            self._catch_up_task = spawn(self._catch_up_later(), "catch-up")
        else:
            self._catch_up_again = True

    async def _catch_up_later(self) -> None:
        while True:
            self._catch_up_again = False
            await asyncio.sleep(CATCH_UP_DELAY)
            await self.catch_up()
            if not self._catch_up_again:
                return

    async def catch_up(self) -> int:
        """Page back through the lookback window at each inbox relay we read, all at once,
        and take every wrap not yet processed. Returns how many new wraps were found."""
        self.deferred.release_due()  # what waited for a budget first: it came first
        relays = [url for url in self.pool.inbox if not self.pool.muted(url)]
        claimed: set[str] = set()  # taken by one relay's catch-up: the others skip it
        results = await asyncio.gather(
            *(self._catch_up_from(url, claimed) for url in relays), return_exceptions=True
        )
        count = 0
        for url, result in zip(relays, results, strict=True):
            if isinstance(result, BaseException):
                # Nothing it found was marked processed: the next catch-up finds it again.
                log.error("catch-up at %s failed; again later", url, exc_info=result)
                self._recover()
                self.schedule_catch_up()
            else:
                count += result
        self.stats["catch_ups"] += 1
        return count

    async def _catch_up_from(self, relay: str, claimed: set[str]) -> int:
        """One relay's catch-up. Each page is unwrapped as it comes, so a relay that
        answers with junk is left after one page (`JUNK_PAGE_STOP`); its wraps are taken
        only once it is done, in (call, seq) order."""
        since = int(clock.now() - WRAP_LOOKBACK)
        me = ns.PublicKey.parse(self.pubkey)
        met: set[str] = set()
        items: list[Taken | str] = []
        ahead: list[tuple[int, InboundEvent, nip59.Sealed]] = []
        until: int | None = None
        for _ in range(MAX_PAGES):
            if self.pool.muted(relay):
                break
            query = ns.Filter().kind(ns.Kind(kinds.GIFT_WRAP)).pubkey(me)
            query = query.since(ns.Timestamp.from_secs(since)).limit(PAGE)
            if until is not None:
                query = query.until(ns.Timestamp.from_secs(until))
            try:
                page = await self.pool.fetch_from(relay, [query], FETCH_TIMEOUT, PAGE)
            except Exception as exc:
                log.warning("catch-up query to %s failed: %s", relay, exc)
                break
            self.stats["catch_up_pages"] += 1
            # Only the wraps not yet processed are kept: a catch-up after a live burst
            # pages through thousands we already have.
            fresh = [e for e in page if e.id not in met]
            met.update(e.id for e in fresh)
            new = [e for e in fresh if e.id not in claimed and not self.known(e.id)]
            claimed.update(e.id for e in new)
            # Junk met before counts as junk found now: a flood's wraps, read back by every
            # catch-up, would otherwise be paged through to the end of the lookback each time.
            junk_before = self.waste.found - sum(1 for e in fresh if e.id in self.waste.ids)
            for start in range(0, len(new), BATCH):
                items += self.unwrap_all(new[start : start + BATCH], ahead=ahead)
                await asyncio.sleep(0)
            if not fresh:
                break
            junk = self.waste.found - junk_before
            if junk >= JUNK_PAGE_STOP and junk * 10 >= len(fresh) * 9:
                log.warning("catch-up at %s: a page of %d junk wraps; stopped there", relay, junk)
                break
            oldest = min(e.created_at for e in page)
            if until is not None and oldest > until:
                break  # the relay ignored `until`: paging would not progress
            until = oldest  # inclusive: several wraps may share the boundary second
        # Pages come newest first, and a call's ratchet reads at most MAX_SKIP messages
        # ahead of the last it read: what was too far ahead is read once the rest is.
        while ahead:
            ahead.sort(key=lambda entry: entry[0])
            again = [event for _, event, _ in ahead]
            opened = {event.id: sealed for _, event, sealed in ahead}
            ahead = []
            for start in range(0, len(again), BATCH):
                part = again[start : start + BATCH]
                items += self.unwrap_all(part, ahead=ahead, max_skip=None, opened=opened)
                await asyncio.sleep(0)
            if len(ahead) == len(again):
                self.schedule_catch_up()
                break
        if not items:
            return 0
        log.info("catch-up at %s: %d wraps not yet processed", relay, len(items))
        # In (call, seq) order across the whole catch-up, so nothing waits in the reorder
        # buffer; one transaction per slice keeps the event loop responsive.
        items.sort(key=lambda t: t.order() if isinstance(t, Taken) else ("", 0))
        for start in range(0, len(items), BATCH):
            self.take(items[start : start + BATCH])
            await asyncio.sleep(0)
        return len(items)
