"""A file over the receiver's byte budget (`bytes_per_peer_per_minute`) arrives once the
budget allows, the call goes on meanwhile, and no wrap is opened more than twice.

A wrap over its sender's budget was dropped after it was opened, and a catch-up every few
seconds fetched and opened it again until the budget let it through: a 10 MiB file after
3 x 5 MiB took 43-124 s instead of 5, most of it in unwrapping the same wraps again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import nostr_sdk as ns

from p2p_comm.harness import Agent
from tests.conftest import AgentFactory
from tests.integration.calls_helpers import connect, events_of, start_agents


def _wraps_stored_for(relay_url: str, agent: Agent) -> int:
    """How many distinct gift wraps the relay holds for ``agent``."""

    async def count() -> int:
        ns.uniffi_set_event_loop(asyncio.get_running_loop())
        client = ns.Client()
        await client.add_relay(ns.RelayUrl.parse(relay_url))
        await client.connect(and_wait=timedelta(seconds=5))
        try:
            me = ns.PublicKey.parse(agent.json("whoami")["pubkey"])
            query = ns.Filter().kind(ns.Kind(1059)).pubkey(me).limit(5000)
            events = await client.fetch_events(ns.ReqTarget.auto([query]), timedelta(seconds=5))
            return len(events if isinstance(events, list) else events.to_vec())
        finally:
            await client.shutdown()

    return asyncio.run(count())


def test_a_file_over_the_byte_budget_arrives_and_no_wrap_is_opened_twice(
    relay, make_agent: AgentFactory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    budget = 128 * 1024
    alice, bob = start_agents(
        relay.url,
        make_agent,
        "alice",
        "bob",
        announce_interval="1",
        liveness_window="4",
        bytes_per_peer_per_minute=str(budget),
    )
    connect(alice, bob)
    payload = os.urandom(110_000)  # what its wraps carry comes to over the budget's burst
    path = tmp_path / "big.bin"
    path.write_bytes(payload)
    alice.json("sendfile", "--path", str(path), timeout=120)
    alice.json("send", "after the file")
    # The call goes on meanwhile: bob's messages reach alice while his budget for her fills.
    bob.json("send", "still here")
    assert events_of(alice, "message")[0]["text"] == "still here"
    (got,) = events_of(bob, "file", timeout=90)
    assert got["sha256"] == hashlib.sha256(payload).hexdigest()
    assert events_of(bob, "message", timeout=30)[0]["text"] == "after the file"
    security = bob.json("status")["security"]
    assert security["dropped"].get("peer_bytes", 0) > 0, "the budget was what held it"
    stored = _wraps_stored_for(relay.url, bob)
    assert security["unwrapped"] <= 2 * stored, (security["unwrapped"], stored)
