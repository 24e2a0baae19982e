"""Relay I/O through nostr-sdk: connections, subscriptions, inbound events (publishing is
in relay_publish.py).

This is the only daemon module that talks to relays. It turns nostr-sdk events into
plain values (`InboundEvent`) for the rest of the daemon.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nostr_sdk as ns

from ..nostr import kinds, nip11
from ..protocol.limits import RepeatCounter
from . import relay_watch
from .relay_health import RelayHealth
from .relay_publish import Publishing

log = logging.getLogger("p2p.relays")

# Wraps lost to an overflow are fetched again by the next catch-up or re-sent, so the
# channel need not hold a whole flood: each slot costs ~150 bytes of every daemon (65,536
# cost about 9 MiB, 8,192 1.5 MiB). An event takes two slots (the relay's message and the
# event), so 4,096 (the SDK's default) hold 2,048 wraps: 3.4 s of the event loop stalled
# at the inbound gate's 600 wraps/s.
NOTIFICATION_BUFFER = 4_096
# The publishing connection hears little but an OK per publish, which publish() reads
# itself: the SDK's default of 4,096 slots cost 0.45 MiB more in every daemon.
WRITER_NOTIFICATION_BUFFER = 1_024
RESUBSCRIBE_RETRY = 5.0  # seconds before sending our REQs again where that failed
REPLAY_SECONDS = 10.0  # at most this long after a mute, a relay's events count as stored
REPEAT_WINDOW = 10.0  # seconds over which copies of one event from one relay are counted


@dataclass(frozen=True)
class InboundEvent:
    """A verified event from a relay (the SDK drops any whose id or signature is wrong).

    Only what every event needs is read out of the SDK at once; the rest is read when
    asked for: each read crosses into Rust, and a flood of junk wraps needs none of it."""

    event: Any  # nostr_sdk.Event, kept for unwrapping gift wraps
    id: str
    content: str
    relay: str
    # Sent while the relay replays what it stored for us after a mute: history, not a
    # flood (junk among it was stored while we were not reading, maybe for the mute).
    stored: bool = False

    @functools.cached_property
    def kind(self) -> int:
        return int(self.event.kind().as_u16())

    @functools.cached_property
    def pubkey(self) -> str:
        return str(self.event.author().to_hex())

    @functools.cached_property
    def created_at(self) -> int:
        return int(self.event.created_at().as_secs())

    @functools.cached_property
    def tags(self) -> list[list[str]]:
        return [tag.to_vec() for tag in self.event.tags()]


Handler = Callable[[InboundEvent], Awaitable[None]]


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s crashed", task.get_name(), exc_info=task.exception())


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """A background task whose crash is logged instead of vanishing."""
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report_crash)
    return task


def _to_inbound(event: Any, relay: str, stored: bool = False) -> InboundEvent:
    return InboundEvent(
        event=event, id=event.id().to_hex(), content=event.content(), relay=relay, stored=stored
    )


def _asks_for(filters: list[Any]) -> set[int | None]:
    """The kinds a REQ asks for; None stands for a filter without a kind."""
    found: set[int | None] = set()
    for filt in filters:
        found.update(json.loads(filt.as_json()).get("kinds") or [None])
    return found


class RelayPool(Publishing):
    """Our connections to the configured relays, with reconnect and resubscribe.

    Two sets, the same by default: ``urls`` where we announce (presence, our kind-10050
    list) and discover, and ``inbox`` where peers send us gift wraps. Reading connects to
    both; a REQ for gift wraps goes to the inbox relays only, any other REQ to the announce
    relays only (see `read_relays`)."""

    def __init__(
        self,
        relays: tuple[str, ...],
        handler: Handler,
        keys: Any = None,
        inbox: tuple[str, ...] = (),
    ) -> None:
        self.urls = relays
        self.inbox = inbox or relays
        self.all = tuple(dict.fromkeys((*relays, *self.inbox)))
        self._handler = handler
        # Two connections per relay: one that only receives, one that publishes. On a
        # connection that also sends, Linux delays its TCP ACKs; a relay whose sockets use
        # Nagle's algorithm (nostr-sdk's LocalRelay does) then holds every next event for
        # us until our ACK: 20-40 ms per message, measured. Receive-only, ACKs stay prompt.
        # A burst must not overflow the channel between the SDK and us while Python is
        # busy: a dropped gift wrap is never broadcast to us again by the relay.
        reader = ns.ClientBuilder().notification_channel_size(NOTIFICATION_BUFFER)
        writer = ns.ClientBuilder().notification_channel_size(WRITER_NOTIFICATION_BUFFER)
        if keys is not None:
            # NIP-42: both connections answer AUTH challenges (app.py sets the SDK's event
            # loop first: the authenticator calls back into Python).
            reader = reader.authenticator(ns.SignerAuthenticator(keys))
            writer = writer.authenticator(ns.SignerAuthenticator(keys))
        self.reader = reader.build()
        self.writer = writer.build()
        # Our subscriptions by id, to send again where a relay refused or withheld them
        # before we were authenticated.
        self._subs: dict[str, list[Any]] = {}
        self._resubscribing: set[str] = set()
        self._task: asyncio.Task[Any] | None = None
        self._extra: set[str] = set()
        self.health = RelayHealth()
        self.on_reconnect: Callable[[], None] | None = None
        # Told of waste a relay causes before any event reaches the handler: the same
        # event sent again and again on a subscription (relay url, weight).
        self.on_waste: Callable[[str, int], None] | None = None
        self._repeats = RepeatCounter(REPEAT_WINDOW)
        self._replaying: dict[str, float] = {}  # url -> until when (monotonic), after a mute
        self._watch_task: asyncio.Task[Any] | None = None
        self._reach_task: asyncio.Task[Any] | None = None
        self.writer_task: asyncio.Task[Any] | None = None
        self._connected: tuple[float, tuple[int, int]] | None = None
        self._relay_urls: dict[str, Any] = {}  # url -> ns.RelayUrl, parsed once
        # url -> connected for reading, as last seen (by a command or the watchdog)
        self._up: dict[str, bool] = {}
        self._trials: dict[str, asyncio.Lock] = {}
        self._small_taken: dict[str, Any] = {}
        self._refreshing: set[str] = set()

    async def start(self) -> None:
        opts = (
            ns.RelayOptions()
            .reconnect(True)
            .retry_interval(timedelta(seconds=2))
            .adjust_retry_interval(True)
            # Events for a subscription we closed (a muted relay that ignores CLOSE) or never
            # made are dropped in Rust: measured, 62% of a core while muted went to 9%.
            .verify_subscriptions(True)
        )
        for url in self.all:
            await self.reader.add_relay(ns.RelayUrl.parse(url), opts=opts)
            await self.writer.add_relay(ns.RelayUrl.parse(url), opts=opts)
            spawn(self._read_limits(url), "nip11")
        # The stream only carries what arrives after it exists: open it before any REQ.
        stream = self.reader.notifications()
        self._task = spawn(self._pump(stream), "relay-notifications")
        writer_notes = self.writer.notifications()
        self.writer_task = spawn(self._pump(writer_notes, reader=False), "relay-writer")
        await self.reader.connect(and_wait=timedelta(seconds=0))
        await self.writer.connect(and_wait=timedelta(seconds=0))
        self._watch_task = spawn(relay_watch.watch(self), "relay-watch")
        self._reach_task = spawn(relay_watch.reach(self), "relay-reach")

    async def _ensure_relays(self, urls: tuple[str, ...]) -> None:
        """Connect to a peer's inbox relays we do not use ourselves, for writing only."""
        for url in urls:
            if url in self.all or url in self._extra:
                continue
            self._extra.add(url)
            await self.writer.add_relay(ns.RelayUrl.parse(url), and_connect=True)
            spawn(self._read_limits(url), "nip11")

    async def _read_limits(self, url: str) -> None:
        """Learn the relay's limits from its NIP-11 document, if any."""
        limits = await nip11.fetch_async(url)
        if limits is None:
            return
        self.health.of(url).learn(limits)
        log.info("relay %s announces %s (NIP-11)", url, limits)

    def roles(self, url: str) -> list[str]:
        """What we use ``url`` for: "announce", "inbox", both, or neither (a peer's relay)."""
        sets = (("announce", self.urls), ("inbox", self.inbox))
        return [role for role, urls in sets if url in urls]

    def read_relays(self, filters: list[Any]) -> tuple[str, ...]:
        """Where a REQ goes: gift wraps (ours, addressed to us) only where peers send them,
        everything else (presence, inbox lists) only where agents announce. A REQ that
        mixes both goes everywhere (the daemon keeps them apart; see app.py)."""
        asked = _asks_for(filters)
        if asked == {kinds.GIFT_WRAP}:
            return self.inbox
        if kinds.GIFT_WRAP not in asked and None not in asked:
            return self.urls
        return self.all

    def _req_target(self, filters: list[Any], relays: tuple[str, ...]) -> Any:
        if set(relays) >= set(self.all):
            return ns.ReqTarget.auto(filters)  # every relay we read: the SDK's own routing
        return ns.ReqTarget.manual({ns.RelayUrl.parse(url): filters for url in relays})

    async def subscribe(self, filters: list[Any], sub_id: str | None = None) -> str:
        """Subscribe where `read_relays` says (``sub_id``: replace that subscription)."""
        target = self._req_target(filters, self.read_relays(filters))
        if sub_id is None:
            output = await self.reader.subscribe(target)
            sub_id = str(output.id)
        else:
            await self.reader.subscribe(target, id=sub_id)
        self._subs[sub_id] = filters
        return sub_id

    def resubscribe_soon(self, url: str) -> None:
        """Send our REQs to ``url`` again now, then catch up (after a reconnection)."""
        self._resubscribe_soon(url, 0.0)

    def _resubscribe_soon(self, url: str, delay: float) -> None:
        """Send our REQs to ``url`` again after a moment: strfry closes a REQ refused for
        lack of AUTH ("ERROR: auth-required: ..."), which the SDK does not retry, and
        nostr-rs-relay withholds DMs from a REQ that raced its AUTH."""
        if url in self._resubscribing:
            return
        self._resubscribing.add(url)
        spawn(self._resubscribe(url, delay), "resubscribe")

    async def _resubscribe(self, url: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            self._resubscribing.discard(url)
        if self.muted(url):
            return  # the mute sends them again when it ends
        relay_url = ns.RelayUrl.parse(url)
        failed = False
        for sub_id, filters in list(self._subs.items()):
            if url not in self.read_relays(filters):
                continue  # not a REQ this relay serves us (announce vs inbox)
            try:
                await self.reader.subscribe(ns.ReqTarget.single(relay_url, filters), id=sub_id)
            except Exception as exc:
                log.info("re-subscribing %s at %s failed: %s", sub_id, url, exc)
                failed = True
        if failed:
            # The SDK sends again on reconnection only what it once sent: try until it took.
            self._resubscribe_soon(url, RESUBSCRIBE_RETRY)
        if self.on_reconnect:
            self.on_reconnect()  # what was withheld so far comes with a catch-up

    async def fetch(self, filters: list[Any], timeout: float) -> list[InboundEvent]:
        """A one-off query, sent where `read_relays` says."""
        target = self._req_target(filters, self.read_relays(filters))
        events = await self.reader.fetch_events(target, timeout=timedelta(seconds=timeout))
        return [_to_inbound(event, "") for event in events]

    async def fetch_from(
        self, url: str, filters: list[Any], timeout: float, max_events: int
    ) -> list[InboundEvent]:
        """A one-off query to one relay, ending at EOSE, after ``timeout`` or after
        ``max_events`` events: a relay that ignores `limit` and never says EOSE (a junk
        flood) costs one page, not an unbounded pile."""
        target = ns.ReqTarget.single(ns.RelayUrl.parse(url), filters)
        events = await self.reader.fetch_events(
            target, timeout=timedelta(seconds=timeout), max_events=max_events
        )
        return [_to_inbound(event, url) for event in events]

    async def connected(self, max_age: float = 0.0) -> tuple[int, int]:
        """(connected, configured) relays for reading; an answer up to ``max_age`` seconds
        old will do (every command asks, and asking the SDK crosses into Rust per relay)."""
        now = time.monotonic()
        if self._connected is not None and now - self._connected[0] < max_age:
            return self._connected[1]
        relays = await self.reader.relays()
        for url, relay in relays.items():
            self.note_up(str(url), relay.status() == ns.RelayStatus.CONNECTED)
        up = sum(self._up.get(str(url), False) for url in relays)
        self._connected = (now, (up, len(relays)))
        return up, len(relays)

    async def is_connected(self, url: str) -> bool:
        """Whether our reading (or, for a peer's relay, writing) connection to ``url`` is up."""
        client = self.reader if url in self.all else self.writer
        try:
            relay = await client.relay(ns.RelayUrl.parse(url))
        except Exception:
            return False
        return bool(relay.status() == ns.RelayStatus.CONNECTED)

    def unreachable(self) -> str:
        """Why each relay cannot be reached, as far as known: "url: reason; ..." """
        found = [
            f"{url}: {self.health.of(url).connect_error or 'not connected'}" for url in self.all
        ]
        return "; ".join(found)

    def note_up(self, url: str, up: bool) -> None:
        """Whether ``url`` is connected for reading, as just seen (`mute` consults it)."""
        self._up[url] = up

    async def states(self) -> list[dict[str, Any]]:
        relays = await self.reader.relays()
        states = []
        for url, relay in relays.items():
            stats = relay.stats()
            latency = stats.latency()
            state = relay.status().name.lower()
            health = self.health.of(str(url))
            rate = health.pacer.rate
            roles = self.roles(str(url))
            abilities = self.health.abilities(str(url), state)
            # A relay we do not use for a role is not judged on it.
            if "inbox" not in roles:
                abilities["receive"] = "not used (announce relay only)"
            if "announce" not in roles:
                abilities["announce"] = "not used (inbox relay only)"
            states.append(
                {
                    "url": str(url),
                    "roles": roles,
                    "state": state,
                    "health": self.health.describe(str(url), state, time.time()),
                    # Down, the cause of the failed connection says more than the last
                    # refusal ("relay not connected" on every publish).
                    "last_error": (
                        health.connect_error
                        if state != "connected" and health.connect_error
                        else health.last_error
                    ),
                    "max_message_length": health.max_message_length,
                    "auth": health.auth,
                    "min_pow": health.min_pow,
                    "paced_per_min": round(rate * 60, 1) if rate else None,
                    "rate_limited": health.rate_limited,
                    "refused": health.refused,
                    "problems": self.health.problems(str(url)),
                    **abilities,
                    "attempts": stats.attempts(),
                    "successes": stats.success(),
                    "latency_ms": round(latency.total_seconds() * 1000, 1) if latency else None,
                }
            )
        return sorted(
            states, key=lambda s: self.all.index(s["url"]) if s["url"] in self.all else 99
        )

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._watch_task:
            self._watch_task.cancel()
        if self._reach_task:
            self._reach_task.cancel()
        if self.writer_task:
            self.writer_task.cancel()
        await self.reader.shutdown()
        await self.writer.shutdown()

    def _relay_message(self, url: str, message: Any, reader: bool) -> None:
        """Learn from what a relay says besides events: AUTH, CLOSED, NOTICE, OK."""
        health = self.health.of(url)
        if message.is_auth():
            health.auth = "challenged" if health.auth != "ok" else "ok"
        elif message.is_closed():
            reason = str(message.message)
            health.closed = reason
            log.info("relay %s closed subscription %s: %s", url, message.subscription_id, reason)
            if "auth-required" in reason:
                self._resubscribe_soon(url, 0.5)
        elif message.is_end_of_stored_events():
            self._replaying.pop(url, None)
        elif message.is_notice():
            health.notice = str(message.message)
            health.notice_at = time.time()
            log.info("relay %s says: %s", url, health.notice)
        elif message.is_ok() and reader:
            # The receive-only connection publishes nothing but AUTH events.
            if message.status:
                first = health.auth != "ok"
                health.auth = "ok"
                if first:
                    self._resubscribe_soon(url, 0.0)
            else:
                health.auth = f"failed: {message.message}"
                log.warning("AUTH at %s failed: %s", url, message.message)

    def muted(self, url: str) -> bool:
        """Whether ``url`` is muted right now (see `mute`); cheap: the pump asks per event."""
        health = self.health.relays.get(url)
        return health is not None and health.muted()

    def mute(self, url: str, seconds: float) -> bool:
        """Stop reading from ``url`` for ``seconds`` (it floods us), then read again; what
        it held meanwhile comes with the catch-up that follows. Never our last inbox relay
        still read: a flood aimed at us would then silence us altogether. Returns whether
        it was muted now."""
        others = [
            other
            for other in self.inbox
            if other != url and not self.muted(other) and self._up.get(other, True)
        ]
        if not others or self.muted(url):
            return False
        health = self.health.of(url)
        until = health.muted_until = time.monotonic() + seconds
        health.last_error = f"flooding: muted for {seconds:.0f} s"
        spawn(self._mute(url, seconds, until), "mute-relay")
        return True

    async def _mute(self, url: str, seconds: float, until: float) -> None:
        """Close our subscriptions there (what it still sends, or had queued in the SDK's
        channel, the pump drops), and send them again when the mute ends. The connection
        stays: in nostr-sdk 0.45 a relay connected again within about a second of
        `Relay.disconnect()` looks connected but never delivers to the client again."""
        try:
            relay = await self.reader.relay(ns.RelayUrl.parse(url))
            for sub_id, filters in list(self._subs.items()):
                if url in self.read_relays(filters):
                    await relay.unsubscribe(sub_id)
        except Exception as exc:  # still muted: the pump drops what it sends
            log.warning("closing our subscriptions at muted %s failed: %s", url, exc)
        await asyncio.sleep(seconds)
        health = self.health.of(url)
        if health.muted_until == until:  # not muted again meanwhile
            health.muted_until = 0.0
            if health.last_error.startswith("flooding"):
                health.last_error = ""
            # Until its EOSE (or a while, for a relay that never says it), what it sends
            # is what it stored meanwhile.
            self._replaying[url] = time.monotonic() + REPLAY_SECONDS
        await self._resubscribe(url, 0.0)  # and a catch-up (unless muted again)

    def _count_repeat(self, url: str, event: Any) -> None:
        """Every event a relay sends comes here, new or not (the SDK passes on only the
        first copy of an id): a relay repeating one is wasting our CPU on purpose."""
        if self.on_waste is not None and self._repeats.repeated(
            url, event.id().to_hex(), time.monotonic()
        ):
            self.on_waste(url, 1)

    async def _pump(self, stream: Any, reader: bool = True) -> None:
        """Read one client's notifications: events go to the handler (only the reader
        subscribes), everything else a relay says teaches the relay model."""
        while True:
            note = await stream.next()
            if note is None or note.is_shutdown():
                return
            if note.is_message():
                try:
                    message = note.message.as_enum()
                    if message.is_event_msg():
                        if reader:
                            self._count_repeat(str(note.relay_url), message.event)
                    # The writer hears an OK per publish: publish() reads those itself.
                    elif reader or not message.is_ok():
                        self._relay_message(str(note.relay_url), message, reader)
                except Exception:
                    log.exception("reading a relay message failed")
                continue
            if not reader or not note.is_new_event():
                continue
            url = str(note.relay_url)
            if self.muted(url):
                continue  # the backlog of a flood, still queued in the SDK's channel
            replaying = self._replaying.get(url)
            stored = replaying is not None and time.monotonic() < replaying
            try:
                await self._handler(_to_inbound(note.event, url, stored))
            except Exception:
                log.exception("handling an inbound event failed; event dropped")
