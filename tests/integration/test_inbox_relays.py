"""A DM inbox relay set apart from the announce set (issue 11), through the real CLI.

bob announces on relay A and receives on relay B (`inbox_relays`); alice uses A only. alice
finds bob on A, learns B from his presence and kind 10050, and sends every wrap there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import nostr_sdk as ns
import pytest

from p2p_comm.harness import RelayProcess, wait_until
from tests.conftest import AgentFactory
from tests.integration.calls_helpers import connect, events_of
from tests.integration.test_escalation import NostrApp
from tests.relaysim import simulated_relay
from tests.schema_check import check as check_schema


@pytest.fixture
def relay_b() -> Iterator[RelayProcess]:
    process = RelayProcess().start()
    yield process
    process.stop()


async def _query(url: str, query: ns.Filter) -> list[ns.Event]:
    # The SDK keeps one event loop for its futures, process-wide: another test in this
    # worker (NostrApp's thread) may have set its own.
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    client = ns.Client()
    await client.add_relay(ns.RelayUrl.parse(url))
    await client.connect(and_wait=timedelta(seconds=5))
    try:
        events = await client.fetch_events(ns.ReqTarget.auto([query]), timeout=timedelta(seconds=3))
        return list(events)
    finally:
        await client.shutdown()


def query(url: str, query: ns.Filter) -> list[ns.Event]:
    """What one relay holds for ``query``, asked by a plain client of our own."""
    return asyncio.run(_query(url, query))


def found(ask: Any, what: str) -> list[ns.Event]:
    """What ``ask()`` returns once it returns something (a loaded machine may answer a
    one-off query after its timeout: ask again rather than fail)."""
    result: list[ns.Event] = []

    def some() -> bool:
        nonlocal result
        result = ask()
        return bool(result)

    wait_until(some, 20, what)
    return result


def _wraps_for(url: str, pubkey: str) -> list[ns.Event]:
    since = ns.Timestamp.from_secs(int(time.time()) - 3 * 86400)
    who = ns.PublicKey.parse(pubkey)
    return query(url, ns.Filter().kind(ns.Kind(1059)).pubkey(who).since(since))


def check(schema: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` (from `Agent.json`) if it is valid as ``schema``."""
    assert result.pop("_exit") == 0
    checked: dict[str, Any] = check_schema(schema, result)
    return checked


def test_wraps_for_bob_go_only_to_his_inbox_relay(  # type: ignore[no-untyped-def]
    relay, relay_b: RelayProcess, make_agent: AgentFactory
) -> None:
    a, b = relay.url, relay_b.url
    bob = make_agent("bob", [a], inbox_relays=b)
    alice = make_agent("alice", [a])
    for agent in (bob, alice):
        agent.run("daemon", "start")
    wait_until(lambda: "bob" in alice.online_names(), 20, "alice to find bob on relay A")
    (listed,) = [x for x in alice.json("list")["agents"] if x["name"] == "bob"]
    assert listed["relays"] == [b]  # his presence names where to reach him

    call_id = connect(alice, bob, "inbox relays")
    alice.json("send", "to bob's inbox")
    assert [e["text"] for e in events_of(bob, "message")] == ["to bob's inbox"]
    bob.json("send", "back to alice")
    assert [e["text"] for e in events_of(alice, "message")] == ["back to alice"]
    alice.json("end")
    assert events_of(bob, "call_ended")[0]["call_id"] == call_id

    bob_hex = bob.json("whoami")["pubkey"]
    alice_hex = alice.json("whoami")["pubkey"]
    # Every wrap for bob (request, message, end, receipts) went to B, none to A.
    found(lambda: _wraps_for(b, bob_hex), "bob's wraps on B")
    assert _wraps_for(a, bob_hex) == []
    # alice receives on A (no inbox set of her own): bob's wraps for her are there.
    found(lambda: _wraps_for(a, alice_hex), "alice's wraps on A")
    assert _wraps_for(b, alice_hex) == []

    # bob's kind 10050 is on the announce relay and names B only; his presence is on A only.
    author = ns.PublicKey.parse(bob_hex)
    lists = ns.Filter().kind(ns.Kind(10050)).author(author)
    (inbox_list,) = found(lambda: query(a, lists), "bob's 10050 on A")
    assert [tag.to_vec() for tag in inbox_list.tags()] == [["relay", b]]
    found(lambda: query(a, ns.Filter().kind(ns.Kind(30078)).author(author)), "presence on A")
    assert query(b, ns.Filter().kind(ns.Kind(30078)).author(author)) == []


def test_status_and_doctor_say_which_relays_are_inbox_and_announce(  # type: ignore[no-untyped-def]
    relay, relay_b: RelayProcess, make_agent: AgentFactory
) -> None:
    a, b = relay.url, relay_b.url
    bob = make_agent("bob", [a], inbox_relays=b)
    bob.run("daemon", "start")
    wait_until(lambda: bob.json("status")["connected_relays"] == 2, 15, "both relays connected")
    status = check("status", bob.json("status"))
    check("whoami", bob.json("whoami"))
    assert status["identity"]["relays"] == [a]
    assert status["identity"]["inbox_relays"] == [b]
    assert {r["url"]: r["roles"] for r in status["relays"]} == {a: ["announce"], b: ["inbox"]}
    text = bob.run("status").stdout
    assert f"relay {a} (announce):" in text
    assert f"relay {b} (inbox):" in text
    assert f"inbox relays: {b}" in text

    doctor = check("doctor", bob.json("doctor"))
    assert {r["url"]: r["roles"] for r in doctor["relays"]} == {a: ["announce"], b: ["inbox"]}
    assert doctor["total"] == 2
    assert f"relay {b} (inbox):" in bob.run("doctor").stdout

    # Without an inbox set, every relay does both (nothing changes for existing homes).
    alice = make_agent("alice", [a])
    alice.run("daemon", "start")
    wait_until(lambda: alice.json("status")["connected_relays"] == 1, 15, "alice connected")
    (only,) = alice.json("status")["relays"]
    assert only["roles"] == ["announce", "inbox"]
    assert alice.json("status")["identity"]["inbox_relays"] == [a]


def test_bob_reads_wraps_on_his_inbox_relay_only_live_and_after_a_restart(  # type: ignore[no-untyped-def]
    relay, relay_b: RelayProcess, make_agent: AgentFactory
) -> None:
    """The wrap subscription and the catch-up ask B, never A: a NIP-17 message from bob's
    owner reaches him through B, live and after a restart, and one left on A never does."""
    a, b = relay.url, relay_b.url
    on_a = NostrApp(a)
    on_b = NostrApp(b, keys=on_a.keys)
    bob = make_agent("bob", [a], inbox_relays=b, owner=on_a.keys.public_key().to_bech32())
    bob.run("daemon", "start")
    bob_hex = bob.json("whoami")["pubkey"]
    on_a.send(bob_hex, "left on A")
    on_b.send(bob_hex, "sent to B")
    assert [e["text"] for e in events_of(bob, "owner_reply")] == ["sent to B"]

    bob.run("daemon", "stop")
    on_b.send(bob_hex, "sent to B while bob was away")
    bob.run("daemon", "start")
    texts = []

    def away_arrived() -> bool:
        events = bob.json("wait", "--timeout", "2", check=False).get("events", [])
        texts.extend(e["text"] for e in events if e["type"] == "owner_reply")
        return "sent to B while bob was away" in texts

    wait_until(away_arrived, 20, "the catch-up on B")
    assert texts == ["sent to B while bob was away"]  # nothing from A, nothing twice


def test_an_auth_inbox_relay_that_takes_only_dms_beside_a_public_announce_relay(  # type: ignore[no-untyped-def]
    relay, make_agent: AgentFactory
) -> None:
    """The case the setting is for: bob receives on a strfry-style inbox relay that serves
    gift wraps only to their AUTHed addressee and refuses presence and inbox lists; he
    announces on a public relay. Nothing is refused, and the call works both ways."""
    with simulated_relay(auth_read_kinds=True, blocked_kinds="30078,10050") as inbox:
        bob = make_agent("bob", [relay.url], inbox_relays=inbox.url)
        alice = make_agent("alice", [relay.url])
        for agent in (bob, alice):
            agent.run("daemon", "start")
        wait_until(lambda: "bob" in alice.online_names(), 20, "alice to find bob")
        connect(alice, bob, "through an AUTH inbox")
        alice.json("send", "hello bob")
        assert [e["text"] for e in events_of(bob, "message")] == ["hello bob"]
        bob.json("send", "hello alice")
        assert [e["text"] for e in events_of(alice, "message")] == ["hello alice"]
        stats = inbox.stats()
        assert stats["closed:auth-required"] >= 1  # bob's wrap REQ was challenged, then served
        assert stats["refused"] == 0  # no presence or inbox list was ever offered to it
        (state,) = [r for r in bob.json("status")["relays"] if r["url"] == inbox.url]
        assert state["roles"] == ["inbox"]
        assert state["announce"] == "not used (inbox relay only)"
        assert state["auth"] == "ok"
