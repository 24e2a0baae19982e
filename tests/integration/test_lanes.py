"""Call lanes (docs/PROTOCOL.md 3.13): under a flood of wraps from fresh keys, a peer's
messages in a call are known by their wrap's key, so the shedding gate never sheds them.

Before: bob's gate cannot tell alice's wraps from the flood's before opening them, sheds
them in the same proportion, and a shed one came only with alice's re-send (2 s, 4 s, ...,
each shed again as likely) or a catch-up: under 1,000 wraps a second and a gate of 600,
two in five of her messages waited seconds. The flood here is fresh keys' wraps for calls
that do not exist, written from PROTOCOL.md (`RawPeer`): all an attacker needs.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from p2p_comm.harness import wait_until
from p2p_comm.protocol.wire import WireMessage
from tests.conftest import AgentFactory
from tests.faults import RawPeer
from tests.integration.calls_helpers import connect, events_of, start_agents

FAST = {"announce_interval": "1", "liveness_window": "4", "loop_max_turns": "0"}


def _flood(url: str, receiver_hex: str, stop: threading.Event) -> None:
    """Publish strangers' wraps for unknown calls, 20 at a time, about 100 a second (far
    over bob's gate, well within what he reads), until ``stop``."""
    peer = RawPeer(url)
    body = {"text": "hi", "part": 1, "parts": 1}
    while not stop.is_set():
        due = time.monotonic() + 0.2
        wraps = [
            RawPeer(url).wrap(receiver_hex, WireMessage("message", os.urandom(16).hex(), 2, body))
            for _ in range(20)
        ]
        peer.publish(*wraps)
        stop.wait(max(0.0, due - time.monotonic()))


def test_a_peers_messages_are_taken_at_once_while_a_flood_is_shed(
    relay, make_agent: AgentFactory
) -> None:  # type: ignore[no-untyped-def]
    # A gate of 5 wraps a second (burst 10) at bob: the flood keeps it empty throughout.
    alice, bob = start_agents(
        relay.url, make_agent, "alice", "bob", **FAST, inbound_events_per_second="5"
    )
    connect(alice, bob)
    bob_hex = bob.json("whoami")["pubkey"]
    security: dict[str, Any] = bob.json("status")["security"]
    resent = alice.json("status")["calls"]["stats"]["retransmits"]
    stop = threading.Event()
    flood = threading.Thread(target=_flood, args=(relay.url, bob_hex, stop), daemon=True)
    flood.start()
    try:
        wait_until(
            lambda: bob.json("status")["security"]["shed"] > security["shed"] + 30,
            30,
            "bob's gate to shed the flood",
        )
        sent = [f"through the flood {index}" for index in range(5)]
        started = time.monotonic()
        for text in sent:
            alice.json("send", text)
        got = events_of(bob, "message", len(sent), timeout=30)
        took = time.monotonic() - started
        during = bob.json("status")["security"]
        assert flood.is_alive()
    finally:
        stop.set()
        flood.join(30)
    assert sorted(e["text"] for e in got) == sorted(sent)
    assert during["shed"] > security["shed"] + 30, "the flood was shed meanwhile"
    # Taken as they came: not by alice's re-sends (the first after 2 s), nor by a
    # catch-up (none runs while the gate sheds).
    assert alice.json("status")["calls"]["stats"]["retransmits"] == resent, took
    assert during["catch_ups"] == security["catch_ups"], (security, during)
    assert during.get("lane_wraps", 0) - security.get("lane_wraps", 0) >= len(sent)
    # Once the flood stops, the catch-up that brings what it shed comes.
    wait_until(
        lambda: bob.json("status")["security"]["catch_ups"] > during["catch_ups"],
        30,
        "the catch-up after the flood",
    )


def test_a_relays_backlog_of_wraps_taken_before_spends_none_of_its_rate(
    relay, make_agent: AgentFactory
) -> None:  # type: ignore[no-untyped-def]
    """The gate's rate is checked before a wrap is read (so a flood's shed wraps cost
    nothing more); but what a relay sends first on a subscription is what it stored, mostly
    taken before: after a restart, such wraps went through a gate of 2 a second, most were
    shed, counted against the relay, and sent catch-ups after them. (Alice without
    lanes: bob would know her wraps by their keys, and take them past the gate.)"""
    alice = make_agent("alice", [relay.url], **FAST, call_lanes="false")
    bob = make_agent("bob", [relay.url], **FAST)
    for agent in (alice, bob):
        agent.run("daemon", "start")
    wait_until(lambda: "bob" in alice.online_names(), 20, "alice to see bob")
    connect(alice, bob)
    sent = [f"before the restart {index}" for index in range(30)]
    for text in sent:
        alice.json("send", text)
    got = events_of(bob, "message", len(sent), timeout=60)
    assert sorted(e["text"] for e in got) == sorted(sent)
    bob.env["P2P_INBOUND_EVENTS_PER_SECOND"] = "2"  # every one of them was taken: now 2/s
    bob.run("daemon", "restart")
    wait_until(lambda: bob.json("status")["security"]["catch_ups"] >= 1, 30, "the start's catch-up")
    assert bob.json("status")["security"]["shed"] == 0
