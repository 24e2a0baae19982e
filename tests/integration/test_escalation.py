"""Escalation reaches the owner as a standard NIP-17 message, read by a raw nostr-sdk client."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import nostr_sdk as ns

from p2p_comm.harness import wait_until
from tests.conftest import AgentFactory
from tests.integration.calls_helpers import connect, events_of, start_agents


async def _owner_inbox(relay_url: str, owner: ns.Keys) -> list[tuple[str, int, str]]:
    """What an owner's NIP-17 app would show: (sender hex, rumor kind, text)."""
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    client = ns.Client()
    await client.add_relay(ns.RelayUrl.parse(relay_url))
    await client.connect(and_wait=timedelta(seconds=5))
    since = ns.Timestamp.from_secs(int(time.time()) - 3 * 86400)
    query = ns.Filter().kind(ns.Kind(1059)).pubkey(owner.public_key()).since(since)
    wraps = await client.fetch_events(ns.ReqTarget.auto([query]), timeout=timedelta(seconds=5))
    await client.shutdown()
    shown = []
    for wrap in wraps:
        gift = ns.UnwrappedGift.from_gift_wrap(owner, wrap)
        shown.append((gift.sender().to_hex(), gift.rumor().kind().as_u16(), gift.rumor().content()))
    return shown


def test_escalation_reaches_owner_by_nip17(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    owner = ns.Keys.generate()
    alice = make_agent("alice", [relay.url])
    bob = make_agent("bob", [relay.url], owner=owner.public_key().to_bech32())
    for agent in (alice, bob):
        agent.run("daemon", "start")
    wait_until(lambda: "bob" in alice.online_names(), 20, "discovery")
    call_id = connect(alice, bob, "budget for Q4")
    result = bob.json("escalate", "Alice wants 40k; approve?")
    assert result["owner"] == {"configured": True, "sent": True, "relays": [relay.url]}
    assert events_of(alice, "escalation")[0]["text"] == "Alice wants 40k; approve?"
    messages = asyncio.run(_owner_inbox(relay.url, owner))
    assert len(messages) == 1
    sender, kind, text = messages[0]
    assert sender == bob.json("whoami")["pubkey"] and kind == 14
    for expected in ("bob", call_id[:8], "alice", alice.npub(), "budget for Q4", "approve?"):
        assert expected in text, expected


def test_escalation_without_owner_says_so(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    connect(alice, bob)
    result = bob.json("escalate", "help")
    assert result["owner"] == {"configured": False, "sent": False}
    assert "no owner channel is configured" in bob.run("escalate", "again").stdout
