"""Publishing to relays: the targets worth sending to, pacing learned from refusals, and
what each relay answered (fed to the relay model in relay_health.py).

`Publisher` is a part of its own: `RelayPool` (nostr_io.py) builds the publishing
connection and hands it over with the relay model; the pool's `publish` is this one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nostr_sdk as ns

from ...nostr import nip11
from ..base.tasks import spawn
from .relay_health import INFERRED_TOO_LARGE, NOT_SENT_TOO_LARGE, SAFE_SIZE, RelayHealth

log = logging.getLogger("p2p.relays")

STALL_PROBE_TIMEOUT = 4.0  # seconds for a small event to be answered, proving a relay alive
REFRESH_GAP = 2.0  # seconds between dropping a connection and opening it again (relay_watch)


@dataclass(frozen=True)
class PublishResult:
    """Which relays took an event, and why the others refused it."""

    event_id: str
    accepted: list[str]
    failed: dict[str, str]


class Publisher:
    """Sends events on the publishing connection (``writer``, a nostr-sdk client) to our
    relays (``urls``) or a peer's, learning from every answer in ``health``."""

    def __init__(
        self, writer: Any, health: RelayHealth, urls: tuple[str, ...], read: tuple[str, ...]
    ) -> None:
        self.writer = writer
        self.health = health
        self.urls = urls
        self.read = read  # the relays the pool connects to anyway (reading and writing)
        self._extra: set[str] = set()  # a peer's relays we connected to, for writing only
        self._relay_urls: dict[str, Any] = {}  # url -> ns.RelayUrl, parsed once
        # Per relay: one event larger than any it took yet at a time (a relay that swallows
        # large events then teaches its limit on the first, not on a dozen that each cost a
        # refusal); the last small event it took (sent again, it proves the relay alive).
        self._trials: dict[str, asyncio.Lock] = {}
        self._small_taken: dict[str, Any] = {}
        self._refreshing: set[str] = set()

    async def _ensure_relays(self, urls: tuple[str, ...]) -> None:
        """Connect to a peer's inbox relays we do not use ourselves, for writing only."""
        for url in urls:
            if url in self.read or url in self._extra:
                continue
            self._extra.add(url)
            await self.writer.add_relay(ns.RelayUrl.parse(url), and_connect=True)
            spawn(self.learn_limits(url), "nip11")

    async def learn_limits(self, url: str) -> None:
        """Learn the relay's limits from its NIP-11 document, if any."""
        limits = await nip11.fetch_async(url)
        if limits is None:
            return
        self.health.of(url).learn(limits)
        log.info("relay %s announces %s (NIP-11)", url, limits)

    async def publish(
        self,
        event: Any,
        relays: tuple[str, ...] | None = None,
        timeout: float = 5.0,
        attempts: int = 4,
    ) -> PublishResult:
        """Send to ``relays`` (adding any we lack, write-only), or to all of ours.

        Relays that are backing off, refused this very event for good, or cannot take
        its size (NIP-11) are left out; their answers feed the relay model. Each relay is
        paced by the rate it taught us; one that answers ``rate-limited`` gets the same
        event again once it has a token (up to ``attempts`` tries), not a flood of them.
        """
        relays = relays or self.urls
        await self._ensure_relays(relays)
        event_id = event.id().to_hex()
        kind = event.kind().as_u16()
        size = len(event.as_json()) + 64  # + the ["EVENT", ...] framing
        trials = sorted(url for url in relays if size > self.health.proven(url))
        async with contextlib.AsyncExitStack() as stack:
            for url in trials:  # in one order everywhere: no two publishes wait on each other
                await stack.enter_async_context(self._trials.setdefault(url, asyncio.Lock()))
            result = await self._publish(event, event_id, kind, size, relays, timeout, attempts)
        return result

    async def _publish(
        self,
        event: Any,
        event_id: str,
        kind: int,
        size: int,
        relays: tuple[str, ...],
        timeout: float,
        attempts: int,
    ) -> PublishResult:
        targets = self.health.targets(relays, event_id, size, time.time())
        if not targets:
            why = {url: self._why_not(url, event_id, size) for url in relays}
            return PublishResult(event_id, [], why)
        accepted: list[str] = []
        failed: dict[str, str] = {}
        for _ in range(attempts):
            going = await self._pace(targets)
            started = time.time()
            output = await self.writer.send_event(
                event,
                target=ns.SendEventTarget.to([self._relay_url(url) for url in going]),
                ok_timeout=timedelta(seconds=timeout),
            )
            now = time.time()
            for relay_url in output.success:
                url = str(relay_url)
                accepted.append(url)
                failed.pop(url, None)
                self.health.record(url, event_id, None, now, kind, size)
                if size <= SAFE_SIZE:
                    self._small_taken[url] = event
            again = []
            for relay_url, reason in output.failed.items():
                url = str(relay_url)
                if reason == "timeout" and size > self.health.proven(url):
                    reason = await self._stalled(url, size, started) or reason
                failed[url] = reason
                self.health.record(url, event_id, reason, time.time(), kind, size)
                prefix = reason.split(":", 1)[0].strip().lower()
                if prefix in ("rate-limited", "auth-required"):
                    again.append(url)
            if not again:
                break
            targets = again
        return PublishResult(event_id=event_id, accepted=accepted, failed=failed)

    async def _stalled(self, url: str, size: int, started: float) -> str | None:
        """An event larger than any ``url`` took timed out: if the relay is alive (it
        answered something else meanwhile, said a NOTICE, or answers a small event now),
        it refused it for its size without saying which event (nostr-relay answers an
        empty event id; others only a NOTICE). Returns that refusal, after learning a
        limit and opening a fresh connection (nostr-relay slows a connection for good
        after each refusal); None if the relay is simply not answering."""
        health = self.health.of(url)
        notice = health.notice if health.notice_at >= started else ""
        alive = bool(notice) or health.taken_at >= started or await self._answers(url)
        if not alive:
            return None
        said = f"; it said: {notice}" if notice else ""
        reason = (
            f"invalid: {INFERRED_TOO_LARGE}: no answer to a {size}-byte event while it takes"
            f" events of up to {self.health.proven(url)} bytes{said}"
        )
        limit = self.health.refused_size(url, size, inferred=True)
        log.warning(
            "relay %s swallowed a %d-byte event without an answer it could be paired with;"
            " its limit is now taken as %d bytes%s",
            url,
            size,
            limit,
            said,
        )
        await self._refresh(url)
        return reason

    async def _answers(self, url: str) -> bool:
        """Whether ``url`` answers the last small event it took, sent again (a duplicate)."""
        event = self._small_taken.get(url)
        if event is None:
            return False
        try:
            output = await self.writer.send_event(
                event,
                target=ns.SendEventTarget.to([self._relay_url(url)]),
                ok_timeout=timedelta(seconds=STALL_PROBE_TIMEOUT),
            )
        except Exception as exc:
            log.info("probing %s with a small event failed: %s", url, exc)
            return False
        if output.success:
            return True
        return any(str(why).lower().startswith("duplicate") for why in output.failed.values())

    async def _refresh(self, url: str) -> None:
        """A fresh publishing connection to ``url``: a relay that slows a connection after
        each refusal (nostr-relay: 2, 4, 8 ... s before every later answer) forgets it."""
        if url in self._refreshing:
            return
        self._refreshing.add(url)
        try:
            relay = await self.writer.relay(self._relay_url(url))
            relay.disconnect()  # not awaitable in this SDK
            await asyncio.sleep(REFRESH_GAP)
            relay.connect()
            deadline = time.monotonic() + 5.0
            while relay.status() != ns.RelayStatus.CONNECTED and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            log.info("relay %s: publishing on a fresh connection", url)
        except Exception as exc:
            log.warning("reopening the publishing connection to %s failed: %s", url, exc)
        finally:
            self._refreshing.discard(url)

    def _relay_url(self, url: str) -> Any:
        parsed = self._relay_urls.get(url)
        if parsed is None:
            parsed = self._relay_urls[url] = ns.RelayUrl.parse(url)
        return parsed

    def _why_not(self, url: str, event_id: str, size: int) -> str:
        if not self.health.fits(url, size):
            limit = self.health.of(url).max_message_length
            return f"{NOT_SENT_TOO_LARGE} ({size} > {limit} bytes)"
        return f"refused earlier: {self.health.of(url).last_error}"

    async def _pace(self, urls: list[str]) -> list[str]:
        """The relays of ``urls`` to send to now, waiting if none may take an event yet.

        A relay still waiting for a token is left out while another can take the event at
        once: one slow relay must not hold back the rest (the peer reads them all)."""
        while True:
            now = time.time()
            waits = {url: self.health.of(url).pacer.wait(now) for url in urls}
            ready = [url for url in urls if waits[url] <= 0]
            if ready:
                for url in ready:
                    self.health.of(url).pacer.reserve(now)
                return ready
            # Others may be waiting too: whoever wakes first takes the token, the rest look
            # again rather than all sending at once.
            await asyncio.sleep(min(min(waits.values()), 30.0))


def never_taken(result: PublishResult) -> bool:
    """Every relay refused for a reason that sending again will not change."""
    reasons = [r.lower() for r in result.failed.values()]
    final = ("invalid", "blocked", "restricted", "too large")
    return bool(reasons) and all(r.startswith(final) for r in reasons)


def fresh_wrap_helps(result: PublishResult) -> bool:
    """A relay refused for the wrap itself (its proof of work, its timestamp): a fresh one
    may be taken."""
    reasons = [r.lower() for r in result.failed.values()]
    return any(r.startswith("pow") or ("created_at" in r and "early" in r) for r in reasons)
