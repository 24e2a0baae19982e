"""An in-process test seam for the daemon's parts: a fake relay network and fake presence.

Two (or more) agents' real CallService/Inbound/Outbound/AgentInbox/Store run in one event
loop; what one publishes, the network stores (capping each query at 500 events, newest
first, like deployed relays) and hands live to every agent that is "online".
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nostr_sdk as ns

from p2p_comm.config import Config
from p2p_comm.daemon.builder import build
from p2p_comm.daemon.relays.inbound import Inbound
from p2p_comm.daemon.relays.relay_events import InboundEvent, to_inbound
from p2p_comm.daemon.relays.relay_health import RelayHealth
from p2p_comm.daemon.relays.relay_publish import PublishResult
from p2p_comm.identity import Identity, _from_keys
from p2p_comm.paths import HomePaths
from p2p_comm.store import Store

QUERY_CAP = 500


@dataclass
class FakeNetwork:
    """One relay's worth of stored events and live subscribers."""

    events: list[InboundEvent] = field(default_factory=list)
    online: dict[str, Inbound] = field(default_factory=dict)  # pubkey -> its inbound

    def publish(self, event: Any) -> None:
        inbound = to_inbound(event, "fake")
        self.events.append(inbound)
        for tag in inbound.tags:
            if tag[0] == "p" and tag[1] in self.online:
                self.online[tag[1]].submit(inbound)

    def query(self, filters: list[Any]) -> list[InboundEvent]:
        found: list[InboundEvent] = []
        for filt in filters:
            spec = json.loads(filt.as_json())
            match = [
                e
                for e in self.events
                if e.kind in spec.get("kinds", [e.kind])
                and all(["p", p] in e.tags for p in spec.get("#p", []))
                and spec.get("since", 0) <= e.created_at <= spec.get("until", 2**40)
            ]
            match.sort(key=lambda e: e.created_at, reverse=True)
            found += match[: min(spec.get("limit", QUERY_CAP), QUERY_CAP)]
        return found


class FakePool:
    """The two calls of RelayPool that the call parts use, and its relay model."""

    def __init__(self, network: FakeNetwork) -> None:
        self.network = network
        self.published = 0
        self.health = RelayHealth()  # nothing learned: no pacing, no PoW, default sizes

    async def publish(self, event: Any, relays: Any = None, timeout: float = 5.0) -> PublishResult:
        self.published += 1
        self.network.publish(event)
        return PublishResult(event.id().to_hex(), ["fake"], {})

    async def fetch(self, filters: list[Any], timeout: float) -> list[InboundEvent]:
        return self.network.query(filters)

    inbox = ("fake",)

    def muted(self, url: str) -> bool:
        return False

    def mute(self, url: str, seconds: float) -> bool:
        return False

    async def fetch_from(
        self, url: str, filters: list[Any], timeout: float, max_events: int
    ) -> list[InboundEvent]:
        return self.network.query(filters)[:max_events]


class FakePresence:
    """No announcements: peers are called by key."""

    name = "agent"
    status = "available"

    async def announce(self, status: str) -> None:
        self.status = status  # heard by no one: the fake network carries no presence

    def inbox_relays(self, pubkey: str) -> tuple[str, ...]:
        return ()

    def prekey_of(self, pubkey: str) -> None:
        return None

    def lookup(self, pubkey: str) -> None:
        return None

    def online(self, now: float) -> list[Any]:
        return []


class SeamAgent:
    """One agent's daemon parts, built as the daemon builds them, minus processes."""

    def __init__(self, home: Path, network: FakeNetwork, **config: Any) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.network = network
        self.identity: Identity = _from_keys(ns.Keys.generate())
        self.config = Config(relays=("ws://fake",), **config)
        self.pool = FakePool(network)
        self.tasks: list[asyncio.Task[Any]] = []
        self.open()

    def open(self) -> None:
        """(Re)build every part over the home's database, as a daemon start does: through
        the daemon's own builder, with the fake relays and presence in place of the real."""
        paths = HomePaths(self.home)
        pool: Any = self.pool
        presence: Any = FakePresence()
        self.parts = build(
            paths, self.config, self.identity, Store(paths.database), pool=pool, presence=presence
        )
        self.store = self.parts.store
        self.inbox = self.parts.inbox
        self.outbound = self.parts.outbound
        self.inbound = self.parts.inbound
        self.calls = self.parts.calls
        self.actions = self.parts.actions
        self.calls.load()

    async def go_online(self, catch_up: bool = True) -> None:
        self.network.online[self.identity.public_hex] = self.inbound
        self.tasks = [
            asyncio.create_task(self.inbound.run()),
            asyncio.create_task(self.calls.run_timers()),
        ]
        if catch_up:
            await self.inbound.catch_up()

    async def go_offline(self) -> None:
        self.network.online.pop(self.identity.public_hex, None)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []

    async def restart(self, pool: FakePool | None = None) -> None:
        """Stop, and start again over the same home (``pool``: on other relays)."""
        await self.go_offline()
        self.store.close()
        if pool is not None:
            self.pool = pool
        self.open()
        await self.go_online()

    def take(self) -> list[dict[str, Any]]:
        events = self.inbox.unread()
        self.inbox.ack([e["event_id"] for e in events])
        return events


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Wait for ``predicate()`` to hold, yielding to the loop; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)
