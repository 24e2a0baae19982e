"""Announcing ourselves and keeping the directory of agents seen on our relays."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from typing import Any

import nostr_sdk as ns

from ... import clock
from ...config import Config
from ...identity import Identity
from ...nostr import nip13
from ...protocol.presence import (
    CLOCK_TOLERANCE,
    INBOX_RELAYS_KIND,
    PRESENCE_D_TAG,
    PRESENCE_KIND,
    PeerPresence,
    Presence,
    decode_inbox_relays,
    decode_presence,
    encode_presence,
    inbox_relay_tags,
)
from ...protocol.wire import FEATURE_LEVEL, FS_LEVEL
from ...sanitize import skeleton
from ...store import Store
from .nostr_io import RelayPool
from .prekeys import Prekeys
from .relay_events import InboundEvent
from .relay_publish import PublishResult

log = logging.getLogger("p2p.presence")

BACKFILL_PAGE = 500
PRESENCE_SUB = "p2p-presence"
INBOX_LISTS_SUB = "p2p-inbox-lists"
MAX_BACKFILL_PAGES = 200


def _build_unsigned(
    kind: int, content: str, tags: list[list[str]], created_at: int, keys: Any
) -> Any:
    builder = ns.EventBuilder(ns.Kind(kind), content).tags([ns.Tag.parse(t) for t in tags])
    builder = builder.custom_created_at(ns.Timestamp.from_secs(created_at))
    return builder.finalize_unsigned(keys.public_key())


def _build(kind: int, content: str, tags: list[list[str]], created_at: int, keys: Any) -> Any:
    builder = ns.EventBuilder(ns.Kind(kind), content).tags([ns.Tag.parse(t) for t in tags])
    return builder.custom_created_at(ns.Timestamp.from_secs(created_at)).finalize(keys)


class PresenceService:
    """Periodic announcements out; other agents' announcements in."""

    def __init__(
        self,
        pool: RelayPool,
        identity: Identity,
        config: Config,
        store: Store,
        prekeys: Prekeys | None = None,
    ) -> None:
        self._pool = pool
        self._prekeys = prekeys
        self._identity = identity
        self._config = config
        self._store = store
        self._peers: dict[str, PeerPresence] = {}
        self._inbox_relays: dict[str, tuple[str, ...]] = {}
        # Persisted: a restarted daemon must announce strictly after its "offline", even
        # within the same second, or relays keep the older event (ties go to the lower id).
        self._last_created_at = int(store.get("presence_created_at", "0"))
        self.status = "available"
        self.last_announce: dict[str, Any] = {}
        self.pow_seconds: float | None = None  # what mining our last PoW event cost
        self._wanted_lists: set[str] = {identity.public_hex}
        self._announced_at: dict[str, set[str]] = {}
        self._lists_task: asyncio.Future[None] | None = None

    @property
    def name(self) -> str:
        return self._config.name or f"agent-{self._identity.npub[5:13]}"

    def _lookback(self) -> float:
        # Peers' clocks may be minutes behind ours: ask for their announcements too.
        return self._config.effective_liveness_window + CLOCK_TOLERANCE

    def filters(self) -> list[Any]:
        since = ns.Timestamp.from_secs(int(clock.now() - self._lookback()))
        return [ns.Filter().kind(ns.Kind(PRESENCE_KIND)).identifier(PRESENCE_D_TAG).since(since)]

    def inbox_list_filter(self) -> Any:
        """Kind 10050 of the authors we need only (peers seen, the owner): public relays cap
        or refuse a REQ for every author's list (strfry's 500 cap, nostr-rs-relay's
        scraper rule)."""
        authors = [ns.PublicKey.parse(hex_key) for hex_key in sorted(self._wanted_lists)]
        return ns.Filter().kind(ns.Kind(INBOX_RELAYS_KIND)).authors(authors)

    def want_inbox_list(self, pubkey_hex: str) -> None:
        """Follow this author's kind-10050 list from now on."""
        if pubkey_hex in self._wanted_lists:
            return
        self._wanted_lists.add(pubkey_hex)
        if self._lists_task is None or self._lists_task.done():
            self._lists_task = asyncio.ensure_future(self._resubscribe_lists())

    async def _resubscribe_lists(self) -> None:
        await asyncio.sleep(0.2)  # one REQ for a burst of newly seen agents
        try:
            await self._pool.subscribe([self.inbox_list_filter()], INBOX_LISTS_SUB)
        except Exception as exc:
            log.warning("cannot subscribe to inbox relay lists: %s", exc)

    async def subscribe(self) -> None:
        """Our REQs: presence, and (separately) the inbox lists of the authors we need."""
        await self._pool.subscribe(self.filters(), PRESENCE_SUB)
        await self._pool.subscribe([self.inbox_list_filter()], INBOX_LISTS_SUB)

    async def backfill(self) -> None:
        """Page backwards through the liveness window: relays answer one query with a
        few hundred events at most (nostr-sdk's LocalRelay: 500), however many agents
        announced. A page is bounded by ``until`` = its oldest second minus one."""
        since = int(clock.now() - self._lookback())
        until: int | None = None
        for _ in range(MAX_BACKFILL_PAGES):
            query = ns.Filter().kind(ns.Kind(PRESENCE_KIND)).identifier(PRESENCE_D_TAG)
            query = query.since(ns.Timestamp.from_secs(since)).limit(BACKFILL_PAGE)
            if until is not None:
                query = query.until(ns.Timestamp.from_secs(until))
            events = await self._pool.fetch([query], timeout=10)
            for event in events:
                self.handle(event)
            if not events:
                return
            oldest = min(event.created_at for event in events)
            if until is not None and oldest > until:
                return  # the relay ignored `until`; paging would not progress
            until = oldest - 1
            if until < since:
                return

    def _next_created_at(self) -> int:
        # Addressable events replace by created_at: never reuse a second, or the
        # relay may keep the older version (e.g. an "offline" right after an announce).
        created = max(int(clock.now()), self._last_created_at + 1)
        self._last_created_at = created
        with self._store.transaction():
            self._store.put("presence_created_at", str(created))
        return created

    async def announce(self, status: str | None = None) -> None:
        if status:
            self.status = status
        created = self._next_created_at()
        lifetime = math.ceil(self._config.effective_liveness_window)
        # A prekey only in a presence that says we can be called (an "offline" one is never
        # live: no caller uses a prekey from it).
        prekey = ""
        if self._prekeys is not None and self.status != "offline":
            await self._prekeys.refresh(float(created))
            prekey = self._prekeys.announce(float(created), lifetime)
        presence = Presence(
            name=self.name,
            description=self._config.description,
            capabilities=self._config.capabilities,
            status=self.status,
            # Where to reach us: the inbox set (issue 11), which may differ from where we
            # announce.
            relays=self._config.effective_inbox_relays,
            feature_level=FEATURE_LEVEL,
            prekey=prekey,
        )
        content, tags = encode_presence(presence, created + lifetime)
        result = await self._publish_own(PRESENCE_KIND, content, tags, created)
        self.last_announce = {
            "announced_at": created,
            "status": self.status,
            "accepted": result.accepted,
        }
        if result.failed:
            log.warning("presence not accepted by %s", result.failed)

    async def publish_inbox_relays(self) -> None:
        tags = inbox_relay_tags(self._config.effective_inbox_relays)
        result = await self._publish_own(INBOX_RELAYS_KIND, "", tags, self._next_created_at())
        if result.failed:
            log.warning("inbox relay list not accepted by %s", result.failed)

    async def _publish_own(
        self, kind: int, content: str, tags: list[list[str]], created_at: int
    ) -> PublishResult:
        """Sign and publish to the announce relays: at once to those that ask no proof of
        work, then mined (NIP-13) to those that do. A relay that answers ``pow:`` teaches
        its difficulty and gets the mined copy; discovery on the others never waits for
        the mining (seconds at 20 bits)."""
        relays = self._config.relays
        keys = self._identity.keys
        health = self._pool.health
        result = PublishResult("", [], {})
        plain = tuple(url for url in relays if not health.of(url).min_pow)
        if plain:
            event = _build(kind, content, tags, created_at, keys)
            result = await self._pool.publish(event, relays=plain)
        demanding = tuple(url for url in relays if health.of(url).min_pow)  # some just learned
        if demanding:
            target = health.pow_for(demanding)
            unsigned = _build_unsigned(kind, content, tags, created_at, keys)
            started = time.monotonic()
            event = await asyncio.to_thread(nip13.mine, keys, unsigned, target, target >= 18)
            self.pow_seconds = round(time.monotonic() - started, 2)
            mined = await self._pool.publish(event, relays=demanding)
            failed = {u: why for u, why in result.failed.items() if u not in mined.accepted}
            result = PublishResult(
                mined.event_id, [*result.accepted, *mined.accepted], {**failed, **mined.failed}
            )
        return result

    async def run(self) -> None:
        """Announce now and then every interval, until cancelled."""
        await self.publish_inbox_relays()
        while True:
            try:
                await self.announce()
            except Exception:
                log.exception("presence announcement failed; will retry next interval")
            await asyncio.sleep(self._config.announce_interval)

    def handle(self, event: InboundEvent) -> bool:
        """Take a presence or inbox-relay event; False if it is neither."""
        if event.kind == INBOX_RELAYS_KIND:
            self._inbox_relays[event.pubkey] = decode_inbox_relays(event.tags)
            return True
        if event.kind != PRESENCE_KIND:
            return False
        peer = decode_presence(event.pubkey, event.created_at, event.content, event.tags)
        if peer is None:
            return True
        if peer.from_the_future(clock.now()):
            log.debug("ignored a presence of %s dated in the future", event.pubkey[:12])
            return True
        self.want_inbox_list(event.pubkey)
        if event.relay:
            self._announced_at.setdefault(event.pubkey, set()).add(event.relay)
        known = self._peers.get(event.pubkey)
        if known is None or known.created_at <= peer.created_at:
            self._peers[event.pubkey] = dataclasses.replace(peer, received_at=clock.now())
        return True

    def online(self, now: float) -> list[PeerPresence]:
        window = self._config.effective_liveness_window
        return [
            peer
            for pubkey, peer in self._peers.items()
            if pubkey != self._identity.public_hex and peer.is_live(now, window)
        ]

    def lookup(self, pubkey: str) -> PeerPresence | None:
        return self._peers.get(pubkey)

    def prekey_of(self, pubkey: str) -> bytes | None:
        """The signed prekey ``pubkey`` announces, from a presence still live: one it has
        replaced is kept only until two days after its last announcement expired
        (prekeys.py), so a stale presence's is not used."""
        found = self._peers.get(pubkey)
        if found is None or not found.presence.prekey or found.presence.feature_level < FS_LEVEL:
            return None
        if not found.is_live(clock.now(), self._config.effective_liveness_window):
            return None
        return bytes.fromhex(found.presence.prekey)

    def inbox_relays(self, pubkey: str) -> tuple[str, ...]:
        """Where a peer receives: its kind-10050 list, else its presence relays, else the
        relays it announced on."""
        listed = self._inbox_relays.get(pubkey)
        if listed:
            return listed
        peer = self._peers.get(pubkey)
        if peer and peer.presence.relays:
            return peer.presence.relays
        # Last, the relays where we saw it announce: it reads there too.
        return tuple(sorted(self._announced_at.get(pubkey, ())))

    def describe(self, now: float) -> list[dict[str, Any]]:
        """The online agents as plain dicts, flagged where names collide."""
        peers = sorted(self.online(now), key=lambda p: (p.presence.name.casefold(), p.pubkey))
        by_skeleton: dict[str, int] = {}
        for peer in peers:
            key = skeleton(peer.presence.name)
            by_skeleton[key] = by_skeleton.get(key, 0) + 1
        return [
            {
                "name": p.presence.name,
                "npub": ns.PublicKey.parse(p.pubkey).to_bech32(),
                "pubkey": p.pubkey,
                "description": p.presence.description,
                "capabilities": list(p.presence.capabilities),
                "status": p.presence.status,
                "last_seen_at": p.created_at,
                "age_s": max(0, int(now - p.created_at)),
                "relays": list(p.presence.relays),
                "name_conflict": by_skeleton[skeleton(p.presence.name)] > 1,
            }
            for p in peers
        ]
