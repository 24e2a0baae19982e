"""Relay I/O through nostr-sdk: connections, subscriptions, inbound events (publishing is
in relay_publish.py, the events handed on in relay_events.py).

With relay_publish.py, the only daemon module that talks to relays. It turns nostr-sdk
events into plain values (`InboundEvent`) for the rest of the daemon.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import nostr_sdk as ns

from ... import sdk_speedups
from ...nostr import kinds

# Named here too for inbound.py and outbound.py, edited on other branches meanwhile: they
# import these from here until the daemon is split into sub-packages.
from ..base.tasks import spawn as spawn
from . import relay_watch
from .flood import FloodMeter, Pacer, RepeatWatch
from .relay_events import InboundEvent, to_inbound
from .relay_health import RelayHealth
from .relay_publish import Publisher, PublishResult

__all__ = ["InboundEvent", "RelayPool", "spawn"]

log = logging.getLogger("p2p.relays")

# Wraps lost to an overflow are fetched again by the next catch-up or re-sent, so the
# channel need not hold a whole flood: each slot costs ~150 bytes of every daemon (65,536
# cost about 9 MiB, 8,192 1.5 MiB). An event takes two slots (the relay's message and the
# event), so 4,096 (the SDK's default) hold 2,048 wraps: 3.4 s of the event loop stalled
# at 600 wraps/s.
NOTIFICATION_BUFFER = 4_096
# The publishing connection hears little but an OK per publish, which publish() reads
# itself: the SDK's default of 4,096 slots cost 0.45 MiB more in every daemon.
WRITER_NOTIFICATION_BUFFER = 1_024
RESUBSCRIBE_RETRY = 5.0  # seconds before sending our REQs again where that failed
REPLAY_SECONDS = 10.0  # at most this long after a mute, a relay's events count as stored


Handler = Callable[[InboundEvent], Awaitable[None]]


def _asks_for(filters: list[Any]) -> set[int | None]:
    """The kinds a REQ asks for; None stands for a filter without a kind."""
    found: set[int | None] = set()
    for filt in filters:
        found.update(json.loads(filt.as_json()).get("kinds") or [None])
    return found


class RelayPool:
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
        on_reconnect: Callable[[], None] | None = None,
        on_waste: Callable[[str, int], None] | None = None,
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
        self._wrap_subs: set[str] = set()  # those that ask for gift wraps only
        # url -> those of them not past EOSE there. Per subscription: the EOSE of another
        # query at that relay (a catch-up page, a presence fetch) does not end ours.
        self._backlog: dict[str, set[str]] = {}
        self._resubscribing: set[str] = set()
        self._task: asyncio.Task[Any] | None = None
        self.health = RelayHealth()
        self.publisher = Publisher(self.writer, self.health, self.urls, self.all)
        self.on_reconnect = on_reconnect
        # Told of waste a relay causes before any event reaches the handler: the same
        # event sent again and again on a subscription (relay url, weight).
        self.on_waste = on_waste
        self.repeats = RepeatWatch(len(self.all), on_waste)
        self.busy = FloodMeter()
        # After a mute: url -> until when (monotonic) what our wraps subscriptions there
        # send before their EOSE (`_backlog`) is what it stored meanwhile.
        self._replaying: dict[str, float] = {}
        self._watch_task: asyncio.Task[Any] | None = None
        self._reach_task: asyncio.Task[Any] | None = None
        self.writer_task: asyncio.Task[Any] | None = None
        self._connected: tuple[float, tuple[int, int]] | None = None
        # url -> connected for reading, as last seen (by a command or the watchdog)
        self._up: dict[str, bool] = {}

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
            spawn(self.publisher.learn_limits(url), "nip11")
        # The stream only carries what arrives after it exists: open it before any REQ.
        stream = self.reader.notifications()
        self._task = spawn(self._pump(stream), "relay-notifications")
        writer_notes = self.writer.notifications()
        self.writer_task = spawn(self._pump(writer_notes, reader=False), "relay-writer")
        await self.reader.connect(and_wait=timedelta(seconds=0))
        await self.writer.connect(and_wait=timedelta(seconds=0))
        self._watch_task = spawn(relay_watch.watch(self), "relay-watch")
        self._reach_task = spawn(relay_watch.reach(self), "relay-reach")

    async def publish(
        self,
        event: Any,
        relays: tuple[str, ...] | None = None,
        timeout: float = 5.0,
        attempts: int = 4,
    ) -> PublishResult:
        """`Publisher.publish`: what the daemon's parts call on the pool."""
        return await self.publisher.publish(event, relays, timeout, attempts)

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
        """Subscribe where `read_relays` says (``sub_id``: replace that subscription). The
        id is ours, and known before the REQ goes: the first events can come before the
        SDK's call returns, and the pump routes them by it."""
        sub_id = sub_id or secrets.token_hex(8)
        self._subs[sub_id] = filters
        wraps = _asks_for(filters) == {kinds.GIFT_WRAP}
        (self._wrap_subs.add if wraps else self._wrap_subs.discard)(sub_id)
        for url in self.inbox if wraps else ():
            self._backlog.setdefault(url, set()).add(sub_id)
        await self.reader.subscribe(self._req_target(filters, self.read_relays(filters)), id=sub_id)
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
            if sub_id in self._wrap_subs:  # what it stored comes first again
                self._backlog.setdefault(url, set()).add(sub_id)
            try:
                await self.reader.subscribe(ns.ReqTarget.single(relay_url, filters), id=sub_id)
            except Exception as exc:
                self._backlog.get(url, set()).discard(sub_id)
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
        return [to_inbound(event, "") for event in events]

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
        return [to_inbound(event, url) for event in events]

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
            self._backlog.get(url, set()).discard(str(message.subscription_id))
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
            # Until each subscription's EOSE (or a while, for a relay that never says it),
            # what it sends there is what it stored meanwhile.
            self._replaying[url] = time.monotonic() + REPLAY_SECONDS
        await self._resubscribe(url, 0.0)  # and a catch-up (unless muted again)

    async def _pump(self, stream: Any, reader: bool = True) -> None:
        """Read one client's notifications: events go to the handler (only the reader
        subscribes), everything else a relay says teaches the relay model."""
        pacer = Pacer(self.busy if reader else None)
        # The relay of the new event just handed on: the SDK tells of a new event first,
        # then, next from that relay, of the relay's EVENT message that carried it (checked
        # with nostr-sdk 0.45). That message needs no reading into Python: for a flood of
        # wraps, reading each took about a tenth of the daemon's time. (So a first copy is
        # not counted by `repeats`: copies count from the second.)
        new: str | None = None
        while True:
            waits = sdk_speedups.waits()
            note = await stream.next()
            if note is None or note.is_shutdown():
                return
            await pacer.after(sdk_speedups.waits() != waits)
            if note.is_message():
                if new is not None:
                    url, new = new, None
                    if str(note.relay_url) == url:
                        continue
                try:
                    message = note.message.as_enum()
                    if message.is_event_msg():
                        if reader:
                            self.repeats.count(note, message.event)
                    # The writer hears an OK per publish: publish() reads those itself.
                    elif reader or not message.is_ok():
                        self._relay_message(str(note.relay_url), message, reader)
                except Exception:
                    log.exception("reading a relay message failed")
                continue
            new = None
            if not reader or not note.is_new_event():
                continue
            url = str(note.relay_url)
            new = url
            if self.muted(url):
                continue  # the backlog of a flood, still queued in the SDK's channel
            sub = str(note.subscription_id)
            backlog = sub in self._backlog.get(url, ())
            stored = backlog and time.monotonic() < self._replaying.get(url, 0.0)
            try:
                event = to_inbound(note.event, url, stored, sub in self._wrap_subs, backlog)
                await self._handler(event)
            except Exception:
                log.exception("handling an inbound event failed; event dropped")
