"""Nothing lost, nothing twice: offline peers, crashes and relay failures, with real processes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from p2p_comm.harness import Agent, RelayProcess, wait_until
from tests.conftest import AgentFactory, NostrRelayProcess
from tests.integration.calls_helpers import connect, events_of, start_agents

FAST = {"announce_interval": "1", "liveness_window": "4"}


class Collector:
    """Everything an agent's `inbox` returns, kept in arrival order."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.events: list[dict[str, Any]] = []

    def poll(self) -> None:
        self.events += self.agent.json("inbox", timeout=120)["events"]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            self.poll()
            return predicate()

        wait_until(check, timeout, what)


def _kill(agent: Agent) -> None:
    pid = agent.daemon_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: agent.daemon_pid() is None, 10, "the kernel to release the lock")


def test_messages_sent_while_peer_is_offline_all_arrive_in_order(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob", **FAST)
    connect(alice, bob)
    bob.run("daemon", "stop")
    for index in range(30):
        alice.json("send", f"while away {index}")
    assert alice.json("status")["calls"]["active"][0]["unacked"] == 30
    bob.run("daemon", "start")
    texts = [e["text"] for e in events_of(bob, "message", 30, timeout=60)]
    assert texts == [f"while away {i}" for i in range(30)]
    wait_until(
        lambda: alice.json("status")["calls"]["active"][0]["unacked"] == 0,
        30,
        "alice to get every receipt",
    )


def test_end_sent_while_peer_is_offline_ends_the_call_when_it_returns(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob", **FAST)
    call_id = connect(alice, bob)
    bob.run("daemon", "stop")
    alice.json("send", "last words")
    alice.json("end", "bye while you were away")
    bob.run("daemon", "start")
    assert events_of(bob, "message")[0]["text"] == "last words"
    (ended,) = events_of(bob, "call_ended", timeout=60)
    assert ended["call_id"] == call_id and ended["reason"] == "bye while you were away"
    assert bob.json("history")["calls"][0]["state"] == "ended"


def test_daemon_restart_after_sigkill_resumes_the_call(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob", **FAST)
    call_id = connect(alice, bob)
    _kill(alice)
    # The next command starts a fresh daemon that knows the call from its database.
    assert alice.json("status")["calls"]["active"][0]["call_id"] == call_id
    alice.json("send", "after the crash")
    assert events_of(bob, "message")[0]["text"] == "after the crash"


def _relay_pair(kind: str, tmp: Path) -> tuple[Any, Any, Callable[[Any], Any]]:
    """Two relays; the first keeps its events across a restart. Returns (r1, r2, restart)."""
    if kind == "embedded":
        first = RelayProcess(db=tmp / "r1-lmdb").start()
        second = RelayProcess().start()

        def restart(relay: Any) -> Any:
            relay.stop()
            return RelayProcess(db=relay.db, port=relay.port).start()

        return first, second, restart
    first, second = NostrRelayProcess().start(), NostrRelayProcess().start()

    def restart_nostr(relay: Any) -> Any:
        relay.halt()
        return relay.start()

    return first, second, restart_nostr


@pytest.mark.parametrize("kind", ["embedded", "nostr-relay"])
def test_chaos(kind: str, make_agent: AgentFactory, tmp_path: Path) -> None:
    """Hundreds of messages and files both ways through a relay restart, a SIGKILLed
    receiver and a relay that dies for good: everything once, in order, intact."""
    started = time.monotonic()
    r1, r2, restart = _relay_pair(kind, tmp_path)
    try:
        alice, bob = start_agents(r1.url, make_agent, "alice", "bob", **FAST)
        for agent in (alice, bob):
            agent.env["P2P_RELAYS"] = f"{r1.url},{r2.url}"
            agent.run("daemon", "restart")
        wait_until(lambda: "bob" in alice.online_names(), 20, "bob back after the restart")
        call_id = connect(alice, bob, "chaos")
        a_in, b_in = Collector(alice), Collector(bob)
        files = {name: os.urandom(2 * 1024 * 1024 + 321) for name in ("from-alice", "from-bob")}
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)

        def send(agent: Agent, prefix: str, numbers: range) -> None:
            for number in numbers:
                agent.json("send", f"{prefix}-{number}")

        send(alice, "a", range(0, 50))
        send(bob, "b", range(0, 50))
        r1 = restart(r1)  # relay restart; it keeps its stored events
        alice.json("sendfile", "from-alice", "--path", str(tmp_path / "from-alice"), timeout=300)
        send(alice, "a", range(50, 100))
        _kill(bob)  # the receiver crashes mid-stream
        send(alice, "a", range(100, 150))
        bob.run("daemon", "start")
        bob.json("sendfile", "from-bob", "--path", str(tmp_path / "from-bob"), timeout=300)
        send(bob, "b", range(50, 150))
        r2.stop()  # one relay dies for good
        send(alice, "a", range(150, 200))
        send(bob, "b", range(150, 200))

        b_in.until(lambda: len(b_in.of("message")) >= 200 and b_in.of("file"), 240, "bob's 200")
        a_in.until(lambda: len(a_in.of("message")) >= 200 and a_in.of("file"), 240, "alice's 200")
        assert [e["text"] for e in b_in.of("message")] == [f"a-{i}" for i in range(200)]
        assert [e["text"] for e in a_in.of("message")] == [f"b-{i}" for i in range(200)]
        for collector, name in ((b_in, "from-alice"), (a_in, "from-bob")):
            (event,) = collector.of("file")
            assert Path(event["path"]).read_bytes() == files[name]
            assert event["sha256"] == hashlib.sha256(files[name]).hexdigest()

        alice.json("end", "chaos over")
        b_in.until(lambda: bool(b_in.of("call_ended")), 60, "the end to reach bob")
        b_in.poll()
        for agent in (alice, bob):
            document = json.loads((agent.paths.transcripts / f"{call_id}.json").read_text())
            texts = [e["text"] for e in document["entries"] if e["type"] == "message"]
            assert sorted(texts) == sorted(
                [f"a-{i}" for i in range(200)] + [f"b-{i}" for i in range(200)]
            )
            assert [e["type"] for e in document["entries"]].count("file") == 2
        stats = {a.name: a.json("status")["calls"]["stats"] for a in (alice, bob)}
        print(f"\nchaos[{kind}] wall {time.monotonic() - started:.1f}s stats {stats}")
    finally:
        r1.stop()
        r2.stop()
