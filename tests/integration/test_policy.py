"""Who may reach an agent: call policy, contacts, blocks, limits and look-alike names."""

from __future__ import annotations

from pathlib import Path

from p2p_comm.harness import wait_until
from tests.conftest import AgentFactory
from tests.integration.calls_helpers import connect, events_of, start_agents


def _inbox_types(agent) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["type"] for e in agent.json("inbox")["events"]]


def test_contacts_only_rejects_a_stranger_automatically(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob", call_policy="contacts")
    call_id = alice.json("call", "bob", "let me in")["call_id"]
    (rejected,) = events_of(alice, "call_rejected")
    assert rejected["call_id"] == call_id and rejected["reason"] == "not accepting calls right now"
    assert "call_request" not in _inbox_types(bob), "the agent is never rung"
    (refused,) = bob.json("history")["calls"]
    assert refused["outcome"] == "rejected" and refused["call_id"] == call_id
    assert bob.json("status")["security"]["dropped"]["policy"] == 1
    bob.json("contacts", "add", "alice", "--name", "Alice (trusted)")
    listed = bob.json("contacts", "list")
    assert listed["contacts"][0]["npub"] == alice.npub() and listed["call_policy"] == "contacts"
    connect(alice, bob, "now as a contact")
    bob.json("contacts", "remove", alice.npub())
    assert bob.json("contacts", "list")["contacts"] == []


def test_nobody_policy_rejects_everyone(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob", call_policy="nobody")
    bob.json("contacts", "add", "alice")
    alice.json("call", "bob", "hello?")
    assert events_of(alice, "call_rejected")[0]["reason"] == "not accepting calls right now"


def test_blocked_key_never_rings(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob, carol = start_agents(
        relay.url, make_agent, "alice", "bob", "carol", ring_timeout="3"
    )
    bob.json("block", alice.npub())
    alice.json("call", "bob", "blocked call")
    carol.json("call", "bob", "a normal call")
    (request,) = events_of(bob, "call_request")
    assert request["peer"]["name"] == "carol"
    assert events_of(alice, "call_missed", timeout=15)[0]["reason"] == "nobody answered"
    assert "call_request" not in _inbox_types(bob)
    assert bob.json("status")["security"]["dropped"]["blocked"] >= 1
    bob.json("unblock", alice.npub())
    connect(alice, bob, "unblocked")


def test_call_request_rate_and_ringing_caps(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob, carol = start_agents(
        relay.url,
        make_agent,
        "alice",
        "bob",
        "carol",
        call_requests_per_peer_per_minute="2",
        max_ringing="3",
    )
    # As contacts, they count against max_ringing itself (strangers ring in a share of
    # their own, one call each: test_strangers.py).
    for caller in (alice, carol):
        bob.json("contacts", "add", caller.npub())
    for index in range(4):
        alice.json("call", "bob", f"request {index}")
    assert len(events_of(bob, "call_request", 2)) == 2
    carol.json("call", "bob", "third ringing")
    carol.json("call", "bob", "fourth would exceed max_ringing")
    assert events_of(bob, "call_request")[0]["topic"] == "third ringing"
    wait_until(
        lambda: bob.json("status")["security"]["dropped"].get("too_many_ringing"),
        10,
        "the ringing cap to be hit",
    )
    dropped = bob.json("status")["security"]["dropped"]
    assert dropped["peer_call_rate"] == 2 and dropped["too_many_ringing"] == 1
    assert "call_request" not in _inbox_types(bob)


def test_open_call_cap(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob, carol = start_agents(
        relay.url, make_agent, "alice", "bob", "carol", max_open_calls="1"
    )
    connect(alice, bob)
    carol.json("call", "bob", "while bob is busy")
    wait_until(
        lambda: bob.json("status")["security"]["dropped"].get("too_many_open_calls"),
        10,
        "the open-call cap to be hit",
    )
    assert "call_request" not in _inbox_types(bob)


def test_bytes_per_peer_budget(relay, make_agent: AgentFactory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_agents(
        relay.url, make_agent, "alice", "bob", bytes_per_peer_per_minute="200000"
    )
    connect(alice, bob)
    (tmp_path / "big").write_bytes(b"x" * 600_000)
    alice.json("sendfile", "big.bin", "--path", str(tmp_path / "big"))
    wait_until(
        lambda: bob.json("status")["security"]["dropped"].get("peer_bytes"),
        15,
        "the byte budget to be hit",
    )
    assert "file" not in _inbox_types(bob)


def test_message_and_file_size_limits_on_both_sides(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob", max_file_bytes="1000")
    connect(alice, bob)
    refused = alice.json("sendfile", "big.bin", "QUFB" * 400, check=False)
    assert refused["ok"] is False and refused["error"]["code"] == "too_large"


def test_lookalike_names_are_flagged_and_not_callable_by_name(
    relay, make_agent: AgentFactory
) -> None:  # type: ignore[no-untyped-def]
    alice = make_agent("alice", [relay.url])
    real, fake = make_agent("bob", [relay.url]), make_agent("bоb", [relay.url])  # Cyrillic о
    for agent in (real, fake):
        agent.run("daemon", "start")
    wait_until(lambda: len(alice.json("list")["agents"]) == 2, 20, "both bobs")
    agents = alice.json("list")["agents"]
    assert all(a["name_conflict"] for a in agents)
    assert "name_conflict=yes" in alice.run("list").stdout
    result = alice.json("call", "bob", "which?", check=False)
    assert result["error"]["code"] == "ambiguous_agent"
    assert real.npub() in result["error"]["message"] and fake.npub() in result["error"]["message"]
    assert alice.json("call", real.npub(), "by npub works")["peer"]["npub"] == real.npub()
