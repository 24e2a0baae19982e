"""Catch-up: fetch again what a live subscription missed, paging back through the lookback.

Relays never re-send an event id on a live subscription, so what was skipped (a limit,
a failed batch, a wrap read out of order) is fetched again by query: every inbox relay we
read at once, page by page back through the whole lookback window with `until`, past any
relay's cap on one query. Each page is unwrapped as it comes; a relay that answers with
junk is left after one page. What was found is taken, in (call, seq) order, by `Inbound`:
what is newer than the last complete catch-up there as soon as paging has passed it, the
rest after the last page.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import nostr_sdk as ns

from ... import clock
from ...nostr import kinds, nip59
from .nostr_io import InboundEvent, spawn
from .unwrap import Taken

if TYPE_CHECKING:
    from .inbound import Inbound

log = logging.getLogger("p2p.inbound")

# Wraps from version-1 peers (and NIP-17 apps) are backdated up to two days (NIP-59).
WRAP_LOOKBACK = 2 * 86400 + 3600
BATCH = 200  # wraps per transaction: bounds how long one batch holds the event loop
PAGE = 500  # events asked for per catch-up query (relays cap lower or equal)
MAX_PAGES = 200
CATCH_UP_DELAY = 3.0
FLOOD_QUIET, FLOOD_DEFER = 1.0, 30.0  # seconds: see `CatchUp._after_the_flood`
FETCH_TIMEOUT = 10.0  # seconds one catch-up page may take at one relay
# A catch-up page that is junk at least this much stops the catch-up at that relay: it
# answers our query with noise (stored or made up on the spot), and paging on would only
# unwrap more of it. Its next catch-up skips what is known junk by id and goes further.
JUNK_PAGE_STOP = 100
# Where the last complete catch-up at a relay began (settings key + relay URL). Wraps
# published since are dated at most `WRAP_JITTER` back (ours; clocks a few minutes apart):
# paging past that point, what was found is taken without waiting for the older pages.
MARK_KEY = "catch_up_mark:"
MARK_MARGIN = nip59.WRAP_JITTER + 600


class CatchUp:
    """Schedules and runs the catch-ups of one `Inbound`, whose wraps it unwraps and takes."""

    def __init__(self, inbound: Inbound) -> None:
        self.inbound = inbound
        self._task: asyncio.Task[Any] | None = None
        self._again = False

    def schedule(self) -> None:
        """Fetch again, a little later, what was skipped: relays never re-send an event id
        on a live subscription, however often it is published."""
        if self._task is None or self._task.done():
            self._task = spawn(self._later(), "catch-up")
        else:
            self._again = True

    async def _later(self) -> None:
        while True:
            self._again = False
            await asyncio.sleep(CATCH_UP_DELAY)
            await self._after_the_flood()
            await self.run()
            if not self._again:
                return

    async def _after_the_flood(self) -> None:
        """Wait while the inbound gate sheds, until it has shed nothing for FLOOD_QUIET
        seconds (at most FLOOD_DEFER). Pages come newest first: during a flood they hold
        the flood, a catch-up stops at the first page of it, having opened that page again
        for nothing, and the gate sheds again what it makes room for. Our calls' wraps are
        never shed (lanes.py); a peer without lanes re-sends what was shed meanwhile."""
        gate, waited = self.inbound.gate, 0.0
        shed = gate.shed
        while waited < FLOOD_DEFER:
            await asyncio.sleep(FLOOD_QUIET)
            waited += FLOOD_QUIET
            if gate.shed == shed:
                return
            shed = gate.shed

    async def run(self) -> int:
        """Page back through the lookback window at each inbox relay we read, all at once,
        and take every wrap not yet processed. Returns how many new wraps were found."""
        self.inbound.deferred.release_due()  # what waited for a budget first: it came first
        relays = [url for url in self.inbound.pool.inbox if not self.inbound.pool.muted(url)]
        claimed: set[str] = set()  # taken by one relay's catch-up: the others skip it
        results = await asyncio.gather(
            *(self._from(url, claimed) for url in relays), return_exceptions=True
        )
        count = 0
        for url, result in zip(relays, results, strict=True):
            if isinstance(result, BaseException):
                # Nothing it found was marked processed: the next catch-up finds it again.
                log.error("catch-up at %s failed; again later", url, exc_info=result)
                self.inbound.recover()
                self.inbound.schedule_catch_up()
            else:
                count += result
        self.inbound.stats["catch_ups"] += 1
        return count

    async def _from(self, relay: str, claimed: set[str]) -> int:
        """One relay's catch-up. Each page is unwrapped as it comes, so a relay that
        answers with junk is left after one page (`JUNK_PAGE_STOP`); its wraps are taken in
        (call, seq) order, once paging has passed where the last complete catch-up at this
        relay began (`MARK_MARGIN` before), and what the older pages still hold (wraps an
        app backdated by up to two days) after the last page.

        A catch-up after an outage used to take nothing before the last page of the whole
        two-day lookback: behind an outage's 5,000 messages it paged through every wrap the
        call had carried before (files included), and the peer waited for all of it."""
        started = clock.now()
        since = int(started - WRAP_LOOKBACK)
        mark = self._mark(relay)
        me = ns.PublicKey.parse(self.inbound.pubkey)
        met: set[str] = set()
        items: list[Taken | str] = []
        ahead: list[tuple[int, InboundEvent, nip59.Sealed]] = []
        until: int | None = None
        found = 0
        complete = False
        for _ in range(MAX_PAGES):
            if self.inbound.pool.muted(relay):
                break
            query = ns.Filter().kind(ns.Kind(kinds.GIFT_WRAP)).pubkey(me)
            query = query.since(ns.Timestamp.from_secs(since)).limit(PAGE)
            if until is not None:
                query = query.until(ns.Timestamp.from_secs(until))
            try:
                page = await self.inbound.pool.fetch_from(relay, [query], FETCH_TIMEOUT, PAGE)
            except Exception as exc:
                log.warning("catch-up query to %s failed: %s", relay, exc)
                break
            self.inbound.stats["catch_up_pages"] += 1
            # Only the wraps not yet processed are kept: a catch-up after a live burst
            # pages through thousands we already have.
            fresh = [e for e in page if e.id not in met]
            met.update(e.id for e in fresh)
            new = [e for e in fresh if e.id not in claimed and not self.inbound.known(e.id)]
            claimed.update(e.id for e in new)
            lanes = self.inbound.lanes
            for event in new if not lanes.idle else ():
                lanes.expects(event.pubkey)  # a peer's wraps read here move its lanes on too
            # Junk met before counts as junk found now: a flood's wraps, read back by every
            # catch-up, would otherwise be paged through to the end of the lookback each time.
            junk_before = self.inbound.waste.found - sum(
                1 for e in fresh if e.id in self.inbound.waste.ids
            )
            for start in range(0, len(new), BATCH):
                items += self.inbound.reader.unwrap_all(new[start : start + BATCH], ahead=ahead)
                await asyncio.sleep(0)
            if not fresh:
                complete = True
                break
            junk = self.inbound.waste.found - junk_before
            if junk >= JUNK_PAGE_STOP and junk * 10 >= len(fresh) * 9:
                log.warning("catch-up at %s: a page of %d junk wraps; stopped there", relay, junk)
                break
            oldest = min(e.created_at for e in page)
            if mark is not None and oldest < mark - MARK_MARGIN and (items or ahead):
                # Past what the last complete catch-up saw: take what came since, now.
                found += await self._take(relay, items, ahead)
                items, ahead = [], []
            if until is not None and oldest > until:
                break  # the relay ignored `until`: paging would not progress
            until = oldest  # inclusive: several wraps may share the boundary second
        found += await self._take(relay, items, ahead)
        if complete:
            with self.inbound.store.transaction():
                self.inbound.store.put(MARK_KEY + relay, str(int(started)))
        return found

    def _mark(self, relay: str) -> float | None:
        """When the last complete catch-up at ``relay`` began (None: never, or unreadable)."""
        try:
            return float(self.inbound.store.get(MARK_KEY + relay)) or None
        except ValueError:
            return None

    async def _take(
        self,
        relay: str,
        items: list[Taken | str],
        ahead: list[tuple[int, InboundEvent, nip59.Sealed]],
    ) -> int:
        """Read what was too far ahead (in order now), then take everything found."""
        # Pages come newest first, and a call's ratchet reads at most MAX_SKIP messages
        # ahead of the last it read: what was too far ahead is read once the rest is.
        read = self.inbound.reader.unwrap_all
        while ahead:
            ahead.sort(key=lambda entry: entry[0])
            again = [event for _, event, _ in ahead]
            opened = {event.id: sealed for _, event, sealed in ahead}
            ahead = []
            for start in range(0, len(again), BATCH):
                part = again[start : start + BATCH]
                items += read(part, ahead=ahead, max_skip=None, opened=opened)
                await asyncio.sleep(0)
            if len(ahead) == len(again):
                self.inbound.schedule_catch_up()
                break
        if not items:
            return 0
        log.info("catch-up at %s: %d wraps not yet processed", relay, len(items))
        # In (call, seq) order across the whole catch-up, so nothing waits in the reorder
        # buffer; one transaction per slice keeps the event loop responsive.
        items.sort(key=lambda t: t.order() if isinstance(t, Taken) else ("", 0))
        for start in range(0, len(items), BATCH):
            self.inbound.take(items[start : start + BATCH])
            await asyncio.sleep(0)
        return len(items)
