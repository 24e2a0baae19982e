"""What a peer says that we cannot check is not believed (issue 18, finding 8).

A raw Nostr client plays the hostile peer, with gift wraps and presence events made by hand
from docs/PROTOCOL.md; the victim is a real daemon on a real relay, read through the CLI.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from p2p_comm.harness import Agent, wait_until
from p2p_comm.protocol.wire import WireMessage
from tests.conftest import AgentFactory
from tests.faults import RawPeer, raw_call
from tests.integration.calls_helpers import events_of, start_agents
from tests.schema_check import problems

YEAR = 365 * 86400


def _leftovers(agent: Agent) -> list[dict[str, Any]]:
    """Events not yet taken by `events_of`: the unread inbox and the test's own backlog."""
    events: list[dict[str, Any]] = agent.json("inbox")["events"]
    return events + agent.__dict__.get("backlog", [])


def _refuse(call_id: str, seq: int, ref: int) -> WireMessage:
    body = {"ref": ref, "what": "message", "name": "", "reason": f"refusing seq {ref}"}
    return WireMessage("refuse", call_id, seq, ack=2, body=body)


def test_a_refuse_counts_only_for_a_message_we_sent(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    bob = make_agent("bob", [relay.url])
    bob.run("daemon", "start")
    bob_hex = bob.json("whoami")["pubkey"]
    peer, call_id = raw_call(relay.url, bob)  # bob's seq 1: an accept, nothing to refuse
    bob.json("send", "the one message bob sends")  # bob's seq 2
    wait_until(lambda: any(d["type"] == "message" for d in peer.received()), 20, "bob's message")
    after = WireMessage("message", call_id, 6, ack=2, body={"text": "after", "part": 1, "parts": 1})
    peer.publish(
        peer.wrap(bob_hex, _refuse(call_id, 2, 1)),  # bob's accept
        peer.wrap(bob_hex, _refuse(call_id, 3, 99)),  # a seq bob never sent
        peer.wrap(bob_hex, _refuse(call_id, 4, 2)),  # the message: a real refusal
        peer.wrap(bob_hex, _refuse(call_id, 5, 2)),  # the same again
        peer.wrap(bob_hex, after),
    )
    # Delivered in order: once seq 6 is out, every refuse before it was taken.
    assert [e["text"] for e in events_of(bob, "message")] == ["after"]
    refused = [e for e in _leftovers(bob) if e["type"] == "refused"]
    assert [e["ref_seq"] for e in refused] == [2]
    (call,) = bob.json("history")["calls"]
    assert call["delivery"]["refused"] == 1
    assert call["delivery"]["delivered"] >= 0


def test_a_presence_from_the_future_is_not_online_and_holds_no_name(
    relay, make_agent: AgentFactory
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    now = int(time.time())
    impostor = RawPeer(relay.url)
    impostor.publish(impostor.presence("alice", now + YEAR))
    # A control announced after it, by the clock: once bob lists carol, it read both.
    carol = RawPeer(relay.url)
    carol.publish(carol.presence("carol", now))
    wait_until(lambda: "carol" in bob.online_names(), 20, "carol's presence at bob")
    agents = bob.json("list")["agents"]
    assert [a["npub"] for a in agents if a["name"] == "alice"] == [alice.npub()]
    assert not [a for a in agents if a["name_conflict"]]
    assert bob.json("call", "alice", "still callable by name")["peer"]["name"] == "alice"
    # A daemon started after the fact reads it in its catch-up: not online there either.
    dave = make_agent("dave", [relay.url])
    dave.run("daemon", "start")
    wait_until(lambda: {"alice", "bob", "carol"} <= dave.online_names(), 20, "dave to see all")
    names = [a["name"] for a in dave.json("list")["agents"]]
    assert sorted(names) == ["alice", "bob", "carol"]


def test_an_unannounced_callers_name_is_flagged_unverified(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    (bob,) = start_agents(relay.url, make_agent, "bob")
    bob_hex = bob.json("whoami")["pubkey"]
    stranger = RawPeer(relay.url)  # never announces; claims a name in its request
    dave = RawPeer(relay.url)
    dave.publish(dave.presence("dave", int(time.time())))
    wait_until(lambda: "dave" in bob.online_names(), 20, "dave's presence at bob")
    claimed, announced = secrets.token_hex(16), secrets.token_hex(16)
    stranger.publish(
        stranger.wrap(
            bob_hex,
            WireMessage("request", claimed, 1, body={"topic": "hi", "name": "alice", "pv": 2}),
        )
    )
    dave.publish(
        dave.wrap(
            bob_hex,
            WireMessage("request", announced, 1, body={"topic": "hi", "name": "nobody", "pv": 2}),
        )
    )

    def both() -> dict[str, dict[str, Any]] | None:
        events = bob.json("inbox", "--peek")["events"]
        found = {e["call_id"]: e for e in events if e["type"] == "call_request"}
        return found if len(found) == 2 else None

    requests = wait_until(both, 20, "both call requests at bob")
    stranger_npub = requests[claimed]["peer"]["npub"]
    assert requests[claimed]["peer"] == {
        "npub": stranger_npub,
        "name": "alice",
        "name_verified": False,
    }
    assert requests[announced]["peer"]["name"] == "dave"  # its own presence, not its claim
    assert "name_verified" not in requests[announced]["peer"]
    for event in requests.values():
        assert problems("event", event) == []

    text = bob.run("inbox").stdout
    line = next(x for x in text.splitlines() if claimed[:8] in x and "[call_request]" in x)
    assert f'agent "alice" (unverified) ({stranger_npub})' in line
    line = next(x for x in text.splitlines() if announced[:8] in x and "[call_request]" in x)
    assert "unverified" not in line

    history = bob.json("history")
    del history["_exit"]
    assert problems("history", history) == []
    calls = {c["call_id"]: c for c in history["calls"]}
    assert calls[claimed]["peer"]["name_verified"] is False
    assert "name_verified" not in calls[announced]["peer"]
    assert '"alice" (unverified)' in bob.run("history").stdout
    bob.run("daemon", "restart")  # the flag is kept with the call
    calls = {c["call_id"]: c for c in bob.json("history")["calls"]}
    assert calls[claimed]["peer"]["name_verified"] is False
