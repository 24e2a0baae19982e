"""Issue 10, findings 1-7: delivery to the agent exactly once, whatever the agent, the
limits, the clock or the relay's query cap do. Real daemons, real relays, the real CLI.

Each test was checked to fail on the code before the issue 10 fixes.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from p2p_comm import rpc
from p2p_comm.harness import Agent, p2p_command, wait_until
from p2p_comm.protocol.wire import WireMessage
from tests.conftest import AgentFactory
from tests.faults import RawPeer
from tests.integration.calls_helpers import connect, events_of
from tests.integration.test_hooks import RECORD, configure, records

FAST = {"announce_interval": "1", "liveness_window": "4"}


def start_pair(
    url: str,
    make_agent: AgentFactory,
    alice_settings: dict[str, str] | None = None,
    bob_settings: dict[str, str] | None = None,
) -> tuple[Agent, Agent]:
    """alice and bob, each with its own settings, online and seeing each other."""
    alice = make_agent("alice", [url], **{**FAST, **(alice_settings or {})})
    bob = make_agent("bob", [url], **{**FAST, **(bob_settings or {})})
    for agent in (alice, bob):
        agent.run("daemon", "start")
    wait_until(lambda: "bob" in alice.online_names(), 20, "alice to see bob")
    wait_until(lambda: "alice" in bob.online_names(), 20, "bob to see alice")
    return alice, bob


def transcript_texts(agent: Agent, call_id: str | None = None) -> list[str]:
    args = ("transcript", call_id) if call_id else ("transcript",)
    entries = agent.json(*args)["entries"]
    return [e["text"] for e in entries if e["type"] == "message"]


def unread_messages(agent: Agent) -> int:
    return int(agent.json("status")["calls"]["unread"].get("message", 0))


def texts_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "message"]


# Finding 1: a killed or interrupted `wait` loses nothing -------------------------------------


def _waiter(agent: Agent, prefix: list[str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*(prefix or []), *p2p_command(), "wait", "--timeout", "30", "--json"],
        env=agent.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _blocked_in_wait(agent: Agent) -> None:
    wait_until(
        lambda: agent.json("status")["calls"]["waiting_clients"] >= 1, 10, "the wait to block"
    )


@pytest.mark.parametrize("how", ["timeout", "sigint", "sigkill", "closed_stdout"])
def test_an_interrupted_wait_loses_nothing(relay, make_agent: AgentFactory, how: str) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent)
    connect(alice, bob)
    # `timeout 3 p2p wait --timeout 30`: what an agent runtime does to a long tool call.
    waiter = _waiter(bob, ["timeout", "3"] if how == "timeout" else None)
    try:
        _blocked_in_wait(bob)
        if how == "sigint":
            waiter.send_signal(signal.SIGINT)
        elif how == "sigkill":
            waiter.kill()
        elif how == "closed_stdout":
            assert waiter.stdout is not None
            waiter.stdout.close()  # the reader went away; the wait itself goes on
        if how != "closed_stdout":
            waiter.wait(15)
        alice.json("send", "after the wait died")
        wait_until(lambda: "after the wait died" in transcript_texts(bob), 20, "the message at bob")
        if how == "closed_stdout":
            waiter.wait(15)
    finally:
        if waiter.poll() is None:
            waiter.kill()
        waiter.wait()
        for stream in (waiter.stdout, waiter.stderr):
            if stream is not None and not stream.closed:
                stream.close()
    assert texts_of(bob.json("inbox")["events"]) == ["after the wait died"]


def test_inbox_and_wait_peek_and_call_filter(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent)
    first = connect(alice, bob, "first")
    second = connect(alice, bob, "second")
    alice.json("send", "on the first", "--call", first[:8])
    alice.json("send", "on the second", "--call", second[:8])
    wait_until(lambda: unread_messages(bob) == 2, 20, "both messages at bob")

    peeked = bob.json("inbox", "--peek")["events"]
    assert sorted(texts_of(peeked)) == ["on the first", "on the second"]
    assert texts_of(bob.json("inbox", "--peek")["events"]) == texts_of(peeked), "peek consumes"
    only = bob.json("inbox", "--call", second[:8])["events"]
    assert texts_of(only) == ["on the second"]
    assert {e["call_id"] for e in only} == {second}
    assert texts_of(bob.json("inbox")["events"]) == ["on the first"]
    assert texts_of(bob.json("inbox")["events"]) == []

    alice.json("send", "third, on the first", "--call", first[:8])
    alice.json("send", "fourth, on the second", "--call", second[:8])
    wait_until(lambda: unread_messages(bob) == 2, 20, "two more messages at bob")
    waited = bob.json("wait", "--peek", "--call", first[:8], "--timeout", "10")
    assert texts_of(waited["events"]) == ["third, on the first"]
    assert sorted(texts_of(bob.json("inbox")["events"])) == [
        "fourth, on the second",
        "third, on the first",
    ]


def test_wake_hook_runs_when_the_only_wait_was_killed(
    relay, make_agent: AgentFactory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "wake.jsonl"
    alice, bob = start_pair(relay.url, make_agent)
    configure(
        bob,
        '[wake]\nevents = ["message"]\ndebounce = 0\n'
        f"command = {json.dumps([sys.executable, '-c', RECORD, str(out), '{text}'])}\n",
        alice,
    )
    connect(alice, bob)
    waiter = _waiter(bob)
    try:
        _blocked_in_wait(bob)
        waiter.kill()
        waiter.wait(10)
    finally:
        if waiter.poll() is None:
            waiter.kill()
        waiter.communicate()
    alice.json("send", "nobody is waiting any more")
    wait_until(lambda: "nobody is waiting any more" in transcript_texts(bob), 20, "the message")
    wait_until(lambda: records(out), 10, "the wake hook")
    assert records(out)[0]["type"] == "message"


# Finding 2: a wrap dropped before processing is not recorded as processed ----------------------


def test_block_mid_call_ends_it_on_both_sides_and_unblock_allows_a_new_call(
    relay, make_agent: AgentFactory
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent)
    call_id = connect(alice, bob)
    alice.json("send", "before the block")
    assert texts_of(events_of(bob, "message")) == ["before the block"]
    bob.json("block", alice.npub())
    (ended,) = events_of(alice, "call_ended", timeout=20)
    assert ended["call_id"] == call_id
    (mine,) = [c for c in bob.json("history")["calls"] if c["call_id"] == call_id]
    assert mine["state"] == "ended"
    assert (mine["outcome"], mine["end_reason"]) == ("completed", "blocked")
    bob.json("unblock", alice.npub())
    again = connect(alice, bob, "after the unblock")
    assert again != call_id
    alice.json("send", "hello again")
    assert texts_of(events_of(bob, "message")) == ["hello again"]
    bob.json("send", "hello back")
    assert texts_of(events_of(alice, "message")) == ["hello back"]


def test_file_over_the_byte_budget_arrives_once_it_refills(
    relay, make_agent: AgentFactory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # The budget counts what the wraps carry: a 250 KB file's chunks carry about 340 KB
    # against a 300 KB budget that refills at 5 KB/s, so the last chunks must wait for the
    # budget, not be thrown away.
    alice, bob = start_pair(
        relay.url, make_agent, bob_settings={"bytes_per_peer_per_minute": "300000"}
    )
    connect(alice, bob)
    payload = os.urandom(250_000)
    (tmp_path / "budget.bin").write_bytes(payload)
    alice.json("sendfile", "budget.bin", "--path", str(tmp_path / "budget.bin"))
    alice.json("send", "after the file")
    wait_until(
        lambda: bob.json("status")["security"]["dropped"].get("peer_bytes"),
        20,
        "the budget to be hit (else this test proves nothing)",
    )
    (received,) = events_of(bob, "file", timeout=45)
    assert Path(received["path"]).read_bytes() == payload
    assert texts_of(events_of(bob, "message", timeout=20)) == ["after the file"]


# Finding 4: a peer offline far longer than an hour ---------------------------------------------


def test_peer_offline_for_a_long_time_gets_every_message(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent)
    connect(alice, bob)
    bob.run("daemon", "stop")
    sent = [f"while away {index}" for index in range(20)]
    for text in sent:
        alice.json("send", text)
    # 40 hours later by bob's clock: its subscription's `since` (now - 2 days - 1 h) now
    # excludes every wrap backdated by more than ~9 h, which is most of the originals.
    offset = 40 * 3600
    bob.env["P2P_CLOCK_OFFSET"] = str(offset)
    bob.run("daemon", "start")
    received = events_of(bob, "message", len(sent), timeout=60)
    assert texts_of(received) == sent
    # The clock seam is in force (without it this test cannot show the loss).
    assert received[0]["at"] > time.time() + offset - 600


# Finding 5: catch-up past a relay's query cap ------------------------------------------------


def _send_many(agent: Agent, texts: list[str]) -> None:
    """Through the daemon's socket protocol directly: 600 CLI processes would take a minute."""
    for text in texts:
        rpc.request(agent.paths.socket, "send", {"text": text}, timeout=30)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("what", ["600 messages", "6.5 MB file"])
def test_backlog_past_the_relay_query_cap_all_arrives(
    relay, make_agent: AgentFactory, tmp_path: Path, what: str
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent)
    call_id = connect(alice, bob)
    bob.run("daemon", "stop")
    if what == "600 messages":
        sent = [f"backlog {index}" for index in range(600)]
        _send_many(alice, sent)
        bob.run("daemon", "start")
        messages = events_of(bob, "message", len(sent), timeout=60)
        assert texts_of(messages) == sent
    else:
        payload = os.urandom(6_500_000)  # 530 chunks: more than one query of 500 returns
        (tmp_path / "big.bin").write_bytes(payload)
        alice.json("sendfile", "big.bin", "--path", str(tmp_path / "big.bin"), timeout=300)
        bob.run("daemon", "start")
        (received,) = events_of(bob, "file", timeout=60)
        assert Path(received["path"]).read_bytes() == payload
        assert not list((bob.paths.files / call_id).glob(".partial-*"))


# Finding 6: refusals travel back to the sender ------------------------------------------------


def test_file_over_the_receivers_cap_is_refused_to_the_sender(
    relay, make_agent: AgentFactory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent, bob_settings={"max_file_bytes": "20000"})
    call_id = connect(alice, bob)
    # Not in alice's home: files directly there are never sent (SECURITY.md).
    payload_path = tmp_path / "big.bin"
    payload_path.write_bytes(os.urandom(50_000))
    alice.json("sendfile", "big.bin", "--path", str(payload_path))
    alice.json("send", "after the big file")
    assert texts_of(events_of(bob, "message")) == ["after the big file"]
    (refused,) = events_of(alice, "refused", timeout=20)
    assert refused["call_id"] == call_id
    assert (refused["what"], refused["file_name"]) == ("file", "big.bin")
    assert refused["reason"]
    leftovers = bob.json("inbox")["events"] + bob.__dict__.get("backlog", [])
    assert not [e for e in leftovers if e["type"] == "file"]


def _refusals(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the receiver sent back that refuses something. The wire form is the lead's to
    define; this only checks that a refusal travels at all."""
    return [d for d in documents if "refus" in json.dumps(d).lower()]


@pytest.mark.parametrize("case", ["message before the answer", "file failing its SHA-256"])
def test_raw_peer_gets_a_refusal_and_the_agent_never_sees_it(
    relay, make_agent: AgentFactory, case: str
) -> None:  # type: ignore[no-untyped-def]
    bob = make_agent("bob", [relay.url], **FAST)
    bob.run("daemon", "start")
    bob_hex = bob.json("whoami")["pubkey"]
    peer = RawPeer(relay.url)
    call_id = secrets.token_hex(16)
    # A peer of feature level 2 (docs/PROTOCOL.md 3.7): level-1 peers get no `refuse`.
    request = WireMessage("request", call_id, 1, body={"topic": "raw", "name": "raw", "pv": 2})
    if case == "message before the answer":
        early = WireMessage(
            "message", call_id, 2, ack=0, body={"text": "too early", "part": 1, "parts": 1}
        )
        peer.publish(peer.wrap(bob_hex, request), peer.wrap(bob_hex, early))
        events_of(bob, "call_request")
        wait_until(lambda: _refusals(peer.received()), 20, "a refusal from bob")
        bob.json("answer", "accept")
    else:
        peer.publish(peer.wrap(bob_hex, request))
        events_of(bob, "call_request")
        bob.json("answer", "accept")
        wait_until(lambda: any(d["type"] == "accept" for d in peer.received()), 20, "bob's accept")
        data = b"these bytes do not hash to the announced digest"
        bad = WireMessage(
            "file",
            call_id,
            2,
            ack=1,
            body={
                "fid": secrets.token_hex(16),
                "name": "bad.bin",
                "size": len(data),
                "sha256": "0" * 64,
                "index": 0,
                "count": 1,
                "data": data,
            },
        )
        peer.publish(peer.wrap(bob_hex, bad))
        wait_until(lambda: _refusals(peer.received()), 20, "a refusal from bob")
    after = WireMessage(
        "message", call_id, 3, ack=1, body={"text": "after it", "part": 1, "parts": 1}
    )
    peer.publish(peer.wrap(bob_hex, after))
    assert texts_of(events_of(bob, "message")) == ["after it"]
    leftovers = bob.json("inbox")["events"] + bob.__dict__.get("backlog", [])
    assert not [e for e in leftovers if e["type"] in ("message", "file")]
    assert not list((bob.paths.files / call_id).glob("*bad*"))


# Finding 7: a refused send leaves no trace ---------------------------------------------------


def test_over_limit_send_fails_and_leaves_no_trace(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent, alice_settings={"max_message_bytes": "2000"})
    call_id = connect(alice, bob)
    alice.json("send", "within the limit")
    too_long = "x" * 2001
    refused = alice.json("send", too_long, check=False)
    assert refused["_exit"] == 1
    assert refused["error"]["code"] == "too_large"
    assert transcript_texts(alice, call_id) == ["within the limit"]
    assert texts_of(events_of(bob, "message")) == ["within the limit"]


# Issue 12: what is wrong is said --------------------------------------------------------------


def test_messages_unacknowledged_for_long_are_said(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent)
    call_id = connect(alice, bob)
    bob.run("daemon", "stop")
    alice.json("send", "into the silence")
    assert not [w for w in alice.json("status").get("warnings", []) if "unacknowledged" in w]
    # Ten minutes later by alice's clock (the clock seam), the message is still unreceipted.
    alice.run("daemon", "stop")
    alice.env["P2P_CLOCK_OFFSET"] = "600"
    alice.run("daemon", "start")
    warnings = alice.json("status").get("warnings", [])
    assert any(f"call {call_id[:8]} unacknowledged for 10 min" in w for w in warnings), warnings
    assert "unacknowledged for 10 min" in alice.run("status").stdout.splitlines()[0]
