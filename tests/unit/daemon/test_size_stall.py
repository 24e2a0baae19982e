"""Stall detection in `Publisher.publish` (issue 21, finding 2), with a scripted relay.

nostr-relay's empty-id refusal is checked end to end in
tests/integration/test_size_stall.py; here the other shapes of a swallowed event: a relay
that only says NOTICE (the npm `@nostr-relay` validator), and a relay that is simply dead
(no limit may be learned from that)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nostr_sdk as ns
import pytest

from p2p_comm.daemon.relays import relay_publish
from p2p_comm.daemon.relays.relay_health import RelayHealth
from p2p_comm.daemon.relays.relay_publish import Publisher

URL = "ws://127.0.0.1:7"


class FakeEvent:
    def __init__(self, event_id: str, size: int) -> None:
        self._id, self._size = event_id, size

    def id(self) -> Any:
        return type("Id", (), {"to_hex": lambda _: self._id})()

    def kind(self) -> Any:
        return type("Kind", (), {"as_u16": lambda _: 1059})()

    def as_json(self) -> str:
        return "x" * (self._size - 64)


class Output:
    def __init__(self, success: list[str], failed: dict[str, str]) -> None:
        self.success, self.failed = success, failed


class ScriptedRelay:
    """Answers events up to ``limit`` bytes; larger ones get only a NOTICE (``notice``) or
    nothing at all; ``dead`` answers nothing."""

    def __init__(self, health: RelayHealth, limit: int, notice: bool, dead: bool = False) -> None:
        self.health, self.limit, self.notice, self.dead = health, limit, notice, dead
        self.reconnected = 0

    async def send_event(self, event: Any, target: Any, ok_timeout: Any) -> Output:
        size = len(event.as_json()) + 64
        if self.dead:
            return Output([], {URL: "timeout"})
        if size <= self.limit:
            return Output([URL], {})
        if self.notice:
            health = self.health.of(URL)
            health.notice, health.notice_at = "content too long", time.time()
        return Output([], {URL: "timeout"})

    async def relay(self, url: Any) -> Any:
        outer = self

        class Relay:
            def disconnect(self) -> None:
                outer.reconnected += 1

            def connect(self) -> None:
                pass

            def status(self) -> Any:
                return ns.RelayStatus.CONNECTED

        return Relay()


@pytest.fixture(autouse=True)
def no_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_publish, "REFRESH_GAP", 0.0)


def _run(notice: bool, dead: bool = False) -> tuple[Publisher, ScriptedRelay, Any]:
    health = RelayHealth()
    relay = ScriptedRelay(health, 4500, notice, dead)
    pool = Publisher(relay, health, (URL,), (URL,))

    async def go() -> Any:
        await pool.publish(FakeEvent("a" * 64, 2000))  # a small one it takes
        return await pool.publish(FakeEvent("b" * 64, 40_000))

    return pool, relay, asyncio.run(go())


def test_a_notice_instead_of_an_ok_teaches_a_size_limit() -> None:
    pool, relay, result = _run(notice=True)
    reason = result.failed[URL]
    assert reason.startswith("invalid: too large (inferred)") and "content too long" in reason
    assert pool.health.of(URL).max_message_length == 4096
    assert relay.reconnected == 1  # a fresh connection: no penalty carried over


def test_silence_for_a_large_event_while_small_ones_are_answered_teaches_a_limit() -> None:
    pool, _, result = _run(notice=False)
    assert result.failed[URL].startswith("invalid: too large (inferred)")
    assert pool.health.of(URL).size_refused == 40_000


def test_a_dead_relay_teaches_nothing() -> None:
    pool, relay, result = _run(notice=False, dead=True)
    assert result.failed[URL] == "timeout"
    assert pool.health.of(URL).max_message_length is None and relay.reconnected == 0
