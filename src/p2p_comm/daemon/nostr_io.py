"""Relay I/O through nostr-sdk: connections, subscriptions, publishing, inbound events.

This is the only daemon module that talks to relays. It turns nostr-sdk events into
plain values (`InboundEvent`) for the rest of the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nostr_sdk as ns

from ..nostr import nip11
from .relay_health import RelayHealth

log = logging.getLogger("p2p.relays")

# Wraps lost to an overflow are fetched again by the next catch-up, so the channel need
# not hold a whole flood (65,536 slots cost about 9 MiB).
NOTIFICATION_BUFFER = 8_192
WATCH_INTERVAL = 10.0  # seconds between liveness probes of each connected relay
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class InboundEvent:
    """A verified event from a relay, as plain values."""

    event: Any  # nostr_sdk.Event, kept for unwrapping gift wraps
    id: str
    kind: int
    pubkey: str
    created_at: int
    content: str
    tags: list[list[str]]
    relay: str


@dataclass(frozen=True)
class PublishResult:
    """Which relays took an event, and why the others refused it."""

    event_id: str
    accepted: list[str]
    failed: dict[str, str]


Handler = Callable[[InboundEvent], Awaitable[None]]


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s crashed", task.get_name(), exc_info=task.exception())


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """A background task whose crash is logged instead of vanishing."""
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report_crash)
    return task


def _to_inbound(event: Any, relay: str) -> InboundEvent:
    return InboundEvent(
        event=event,
        id=event.id().to_hex(),
        kind=event.kind().as_u16(),
        pubkey=event.author().to_hex(),
        created_at=event.created_at().as_secs(),
        content=event.content(),
        tags=[tag.to_vec() for tag in event.tags()],
        relay=relay,
    )


class RelayPool:
    """Our connections to the configured relays, with reconnect and resubscribe."""

    def __init__(self, relays: tuple[str, ...], handler: Handler) -> None:
        self.urls = relays
        self._handler = handler
        # Two connections per relay: one that only receives, one that publishes. On a
        # connection that also sends, Linux delays its TCP ACKs; a relay whose sockets use
        # Nagle's algorithm (nostr-sdk's LocalRelay does) then holds every next event for
        # us until our ACK: 20-40 ms per message, measured. Receive-only, ACKs stay prompt.
        # A burst must not overflow the channel between the SDK and us while Python is
        # busy: a dropped gift wrap is never broadcast to us again by the relay.
        self._client = ns.ClientBuilder().notification_channel_size(NOTIFICATION_BUFFER).build()
        self._writer = ns.Client()
        self._task: asyncio.Task[Any] | None = None
        self._extra: set[str] = set()
        self.health = RelayHealth()
        self.on_reconnect: Callable[[], None] | None = None
        self._watch_task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        opts = (
            ns.RelayOptions()
            .reconnect(True)
            .retry_interval(timedelta(seconds=2))
            .adjust_retry_interval(True)
        )
        for url in self.urls:
            await self._client.add_relay(ns.RelayUrl.parse(url), opts=opts)
            await self._writer.add_relay(ns.RelayUrl.parse(url), opts=opts)
            spawn(self._read_limits(url), "nip11")
        # The stream only carries what arrives after it exists: open it before any REQ.
        stream = self._client.notifications()
        self._task = spawn(self._pump(stream), "relay-notifications")
        await self._client.connect(and_wait=timedelta(seconds=0))
        await self._writer.connect(and_wait=timedelta(seconds=0))
        self._watch_task = spawn(self._watch(), "relay-watch")

    async def _watch(self) -> None:
        """Probe every connected relay now and then: a connection that went half-open (no
        FIN, no RST) otherwise looks "connected" for a minute or more. A relay that does not
        answer is reconnected; a relay that comes back triggers `on_reconnect` (catch-up)."""
        was_connected: dict[str, bool] = {}
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            for client in (self._client, self._writer):
                try:
                    relays = await client.relays()
                except Exception:
                    continue
                for url, relay in relays.items():
                    up = relay.status() == ns.RelayStatus.CONNECTED
                    if up and not await self._answers(relay):
                        log.warning("relay %s does not answer; reconnecting", url)
                        self.health.of(str(url)).last_error = "no answer (connection half-open?)"
                        await self._reconnect(relay)
                        up = False
                    if client is self._client:
                        if up and was_connected.get(str(url)) is False and self.on_reconnect:
                            self.on_reconnect()
                        was_connected[str(url)] = up

    async def _answers(self, relay: Any) -> bool:
        probe = ns.Filter().kind(ns.Kind(10050)).limit(1)
        started = time.monotonic()
        try:
            await relay.fetch_events(probe, timeout=timedelta(seconds=PROBE_TIMEOUT))
        except Exception:
            return False
        return time.monotonic() - started < PROBE_TIMEOUT

    async def _reconnect(self, relay: Any) -> None:
        try:
            await relay.disconnect()
            await relay.connect()
        except Exception as exc:
            log.warning("reconnecting %s failed: %s", relay.url(), exc)

    async def _ensure_relays(self, urls: tuple[str, ...]) -> None:
        """Connect to a peer's inbox relays we do not use ourselves, for writing only."""
        for url in urls:
            if url in self.urls or url in self._extra:
                continue
            self._extra.add(url)
            await self._writer.add_relay(ns.RelayUrl.parse(url), and_connect=True)
            spawn(self._read_limits(url), "nip11")

    async def _read_limits(self, url: str) -> None:
        """Learn the relay's largest accepted message from its NIP-11 document, if any."""
        limits = await asyncio.to_thread(nip11.fetch, url)
        limit = limits.max_message_length if limits else None
        if limit:
            self.health.of(url).max_message_length = limit
            log.info("relay %s accepts messages up to %d bytes (NIP-11)", url, limit)

    async def subscribe(self, filters: list[Any]) -> None:
        await self._client.subscribe(ns.ReqTarget.auto(filters))

    async def publish(
        self, event: Any, relays: tuple[str, ...] | None = None, timeout: float = 5.0
    ) -> PublishResult:
        """Send to ``relays`` (adding any we lack, write-only), or to all of ours.

        Relays that are backing off, refused this very event for good, or cannot take
        its size (NIP-11) are left out; their answers feed the health record.
        """
        relays = relays or self.urls
        await self._ensure_relays(relays)
        event_id = event.id().to_hex()
        now = time.time()
        # The size matters only where a relay declared a limit; serialising costs time.
        limited = any(self.health.of(url).max_message_length for url in relays)
        size = len(event.as_json()) if limited else 0
        targets = self.health.targets(relays, event_id, size, now)
        if not targets:
            return PublishResult(event_id, [], {url: "refused earlier" for url in relays})
        output = await self._writer.send_event(
            event,
            target=ns.SendEventTarget.to([ns.RelayUrl.parse(url) for url in targets]),
            ok_timeout=timedelta(seconds=timeout),
        )
        result = PublishResult(
            event_id=event_id,
            accepted=[str(url) for url in output.success],
            failed={str(url): reason for url, reason in output.failed.items()},
        )
        now = time.time()
        for url in result.accepted:
            self.health.record(url, event_id, None, now)
        for url, reason in result.failed.items():
            self.health.record(url, event_id, reason, now)
        return result

    async def fetch(self, filters: list[Any], timeout: float) -> list[InboundEvent]:
        events = await self._client.fetch_events(
            ns.ReqTarget.auto(filters), timeout=timedelta(seconds=timeout)
        )
        return [_to_inbound(event, "") for event in events]

    async def states(self) -> list[dict[str, Any]]:
        relays = await self._client.relays()
        states = []
        for url, relay in relays.items():
            stats = relay.stats()
            latency = stats.latency()
            state = relay.status().name.lower()
            health = self.health.of(str(url))
            states.append(
                {
                    "url": str(url),
                    "state": state,
                    "health": self.health.describe(str(url), state, time.time()),
                    "last_error": health.last_error,
                    "max_message_length": health.max_message_length,
                    "attempts": stats.attempts(),
                    "successes": stats.success(),
                    "latency_ms": round(latency.total_seconds() * 1000, 1) if latency else None,
                }
            )
        return sorted(
            states, key=lambda s: self.urls.index(s["url"]) if s["url"] in self.urls else 99
        )

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._watch_task:
            self._watch_task.cancel()
        await self._client.shutdown()
        await self._writer.shutdown()

    async def _pump(self, stream: Any) -> None:
        while True:
            note = await stream.next()
            if note is None or note.is_shutdown():
                return
            if not note.is_new_event():
                continue
            try:
                await self._handler(_to_inbound(note.event, str(note.relay_url)))
            except Exception:
                log.exception("handling an inbound event failed; event dropped")
