"""Fragments through the daemon's real parts (tests/unit/daemon/seam.py), on a relay that refuses
events over a size it never announced, in strfry's words."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from p2p_comm.daemon.relays.relay_publish import PublishResult
from p2p_comm.protocol import frag

from .seam import FakeNetwork, FakePool, SeamAgent, until
from .test_daemon_parts import connected, texts

LIMIT = 16_000
URL = "ws://fake"  # the seam's configured relay: what is learned is kept under its name


class SmallRelayPool(FakePool):
    """Refuses events over LIMIT bytes; can shadow-drop one accepted event on request."""

    def __init__(self, network: FakeNetwork) -> None:
        super().__init__(network)
        self.refused = 0
        self.drop_next = 0  # accepted events to drop silently (a lost fragment)

    async def publish(self, event: Any, relays: Any = None, timeout: float = 5.0) -> PublishResult:
        event_id = event.id().to_hex()
        size = len(event.as_json())
        if size > LIMIT:
            self.refused += 1
            return PublishResult(event_id, [], {URL: f"invalid: event too large: {size}"})
        if self.drop_next:
            self.drop_next -= 1
            return PublishResult(event_id, [URL], {})
        return await super().publish(event, relays, timeout)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


async def small_relay_call(tmp_path: Path) -> tuple[SeamAgent, SeamAgent, str, SmallRelayPool]:
    alice, bob, call_id = await connected(tmp_path)
    pool = SmallRelayPool(alice.network)
    await alice.restart(pool)  # the daemon built again, on a relay that refuses large events
    return alice, bob, call_id, pool


def send(agent: SeamAgent, call_id: str, text: str) -> None:
    """As `p2p send` does: parts sized to what the peer's relays take."""
    call = agent.calls.calls[call_id]
    part = agent.outbound.text_part_bytes(call)
    record = ("message", {"text": text})
    work = agent.actions.act(call, lambda now: call.send_text(text, now, part), record)
    agent.calls.publish(work)


LONG = "".join(f"line {i}: the quarterly numbers, once more in full.\n" for i in range(600))


def test_a_text_refused_as_too_large_arrives_in_fragments_and_the_limit_is_learned(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        alice, bob, call_id, pool = await small_relay_call(tmp_path)
        send(alice, call_id, LONG)
        send(alice, call_id, "and a short one after it")
        got: list[str] = []
        await until(lambda: got.extend(texts(bob)) or len(got) >= 2)
        assert got == [LONG, "and a short one after it"]
        assert pool.refused >= 1
        learned = alice.pool.health.of(URL).max_message_length
        assert learned is not None and learned < LIMIT + 64
        await until(lambda: alice.calls.calls[call_id].unacked == 0)
        # Later texts are cut to fit from the start: nothing more is refused.
        refused = pool.refused
        send(alice, call_id, LONG)
        await until(lambda: got.extend(texts(bob)) or len(got) >= 3)
        assert got[2] == LONG and pool.refused == refused
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())


def test_a_restart_in_the_middle_of_a_reassembly_does_not_wedge_the_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        alice, bob, call_id, pool = await small_relay_call(tmp_path)
        pool.drop_next = 1  # the first piece sent is lost: bob holds an incomplete message
        send(alice, call_id, LONG)
        await until(lambda: len(bob.inbound.fragments) == 1)
        await bob.restart()  # the partial message was in memory only
        send(alice, call_id, "after the restart")
        got: list[str] = []
        # The retransmission (2 s later) sends every piece again.
        await until(lambda: got.extend(texts(bob)) or len(got) >= 2, timeout=15)
        assert got == [LONG, "after the restart"]
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())


def test_a_peer_below_level_4_gets_no_fragments_but_a_delivery_failure(tmp_path: Path) -> None:
    async def scenario() -> None:
        alice, bob, call_id, _ = await small_relay_call(tmp_path)
        call = alice.calls.calls[call_id]
        call.peer_level = frag.FRAG_LEVEL - 1
        send(alice, call_id, LONG)
        # Told to the agent as the daemon tells it (builder.undeliverable).
        await until(lambda: any(e["type"] == "delivery_failed" for e in alice.inbox.unread()))
        failed = [e for e in alice.take() if e["type"] == "delivery_failed"]
        assert all("too large" in e["reason"] for e in failed), failed
        await asyncio.sleep(0.2)
        assert len(bob.inbound.fragments) == 0 and texts(bob) == []
        for agent in (alice, bob):
            await agent.go_offline()

    run(scenario())
