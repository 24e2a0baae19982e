"""A stranger's seal: its signature is checked only where what it says may lead somewhere."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import nostr_sdk as ns
import pytest

from p2p_comm.protocol.wire import WireMessage
from tests.faults import RawPeer

from .seam import FakeNetwork, SeamAgent, until


def test_a_strangers_seal_is_verified_only_if_it_may_lead_somewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    verify = ns.Event.verify

    def counting(event: ns.Event) -> bool:
        verified.append(event.kind().as_u16())
        return bool(verify(event))

    monkeypatch.setattr(ns.Event, "verify", counting)

    async def scenario() -> None:
        network = FakeNetwork()
        bob = SeamAgent(tmp_path / "bob", network)
        await bob.go_online()
        bob_hex = bob.identity.public_hex
        nowhere = [
            RawPeer("ws://fake").wrap(
                bob_hex,
                WireMessage(
                    "message", os.urandom(16).hex(), 2, body={"text": "x", "part": 1, "parts": 1}
                ),
            )
            for _ in range(20)
        ]
        for wrap in nowhere:
            network.publish(wrap)
        await until(lambda: bob.inbound.stats["unwrapped"] == 20)
        assert bob.inbound.waste.dropped.get("unknown_call") == 20
        assert 13 not in verified, "a seal that leads nowhere costs no signature check"
        call_id = os.urandom(16).hex()
        request = WireMessage("request", call_id, 1, body={"topic": "hi", "name": "s", "pv": 4})
        network.publish(RawPeer("ws://fake").wrap(bob_hex, request))
        await until(lambda: any(e["type"] == "call_request" for e in bob.inbox.unread()))
        assert verified.count(13) == 1, "a request's seal is checked before it rings"
        await bob.go_offline()

    asyncio.run(asyncio.wait_for(scenario(), 60))
