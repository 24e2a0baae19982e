"""Presence and `p2p list` across real daemons, on the embedded and an independent relay."""

from __future__ import annotations

import os
import signal

import pytest

from p2p_comm.harness import RelayProcess, wait_until
from tests.conftest import AgentFactory


def _three_agents_find_each_other(url: str, make_agent: AgentFactory) -> None:
    agents = [
        make_agent("alice", [url], capabilities="planning"),
        make_agent("bob", [url], capabilities="summarize,code", description="reads docs"),
        make_agent("carol", [url]),
    ]
    for agent in agents:
        agent.run("daemon", "start")
    for agent in agents:
        others = {a.name for a in agents} - {agent.name}
        wait_until(lambda a=agent, o=others: a.online_names() == o, 20, f"{agent.name}'s list")
    listed = {a["name"]: a for a in agents[0].json("list")["agents"]}
    assert listed["bob"]["capabilities"] == ["summarize", "code"]
    assert listed["bob"]["description"] == "reads docs"
    assert listed["bob"]["npub"] == agents[1].npub()
    assert listed["bob"]["status"] == "available"
    filtered = agents[0].json("list", "--capability", "code")["agents"]
    assert [a["name"] for a in filtered] == ["bob"]
    assert '- agent "bob" npub=npub1' in agents[0].run("list").stdout


def test_three_agents_list_each_other(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    _three_agents_find_each_other(relay.url, make_agent)


def test_three_agents_list_each_other_on_nostr_relay(  # type: ignore[no-untyped-def]
    independent_relay, make_agent: AgentFactory
) -> None:
    _three_agents_find_each_other(independent_relay.url, make_agent)


@pytest.mark.parametrize("how", ["clean stop", "SIGKILL"])
def test_stopped_agent_drops_out_of_list(relay, make_agent: AgentFactory, how: str) -> None:  # type: ignore[no-untyped-def]
    fast = {"announce_interval": "0.5", "liveness_window": "2"}
    alice = make_agent("alice", [relay.url], **fast)
    bob = make_agent("bob", [relay.url], **fast)
    bob.run("daemon", "start")
    wait_until(lambda: "bob" in alice.online_names(), 15, "alice to see bob")
    if how == "clean stop":
        bob.run("daemon", "stop")
        # The offline announcement removes bob at once, long before the window would.
        wait_until(lambda: "bob" not in alice.online_names(), 1.5, "bob's offline announcement")
    else:
        pid = bob.daemon_pid()
        assert pid
        os.kill(pid, signal.SIGKILL)
        assert "bob" in alice.online_names()
        wait_until(lambda: "bob" not in alice.online_names(), 6, "bob to age out of the window")
    bob.run("daemon", "start")
    wait_until(lambda: "bob" in alice.online_names(), 10, "bob to come back")


def test_reconnects_and_resubscribes_after_relay_restart(make_agent: AgentFactory) -> None:
    relay = RelayProcess().start()
    try:
        fast = {"announce_interval": "0.5", "liveness_window": "2"}
        alice = make_agent("alice", [relay.url], **fast)
        bob = make_agent("bob", [relay.url], **fast)
        bob.run("daemon", "start")
        wait_until(lambda: "bob" in alice.online_names(), 15, "alice to see bob")
        relay.stop()
        wait_until(lambda: "bob" not in alice.online_names(), 6, "bob to age out while down")
        assert alice.json("status")["connected_relays"] == 0
        relay = RelayProcess(port=relay.port).start()  # same URL, empty memory
        # Only a reconnected bob re-announcing to a re-subscribed alice brings bob back.
        wait_until(lambda: "bob" in alice.online_names(), 20, "bob to reappear after restart")
        assert alice.json("status")["connected_relays"] == 1
    finally:
        relay.stop()
