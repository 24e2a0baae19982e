"""Shared steps for call tests: connect two agents, collect events."""

from __future__ import annotations

from typing import Any

from p2p_comm.harness import Agent, wait_until


def events_of(
    agent: Agent, kind: str, count: int = 1, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Wait (through `p2p wait`) until ``count`` events of ``kind`` arrived; returns them."""
    found: list[dict[str, Any]] = []

    def more() -> bool:
        result = agent.json("wait", "--timeout", "2", check=False)
        found.extend(e for e in result.get("events", []) if e["type"] == kind)
        return len(found) >= count

    wait_until(more, timeout, f"{count} {kind} event(s) at {agent.name}")
    return found


def start_agents(url: str, make_agent: Any, *names: str, **settings: str) -> list[Agent]:
    agents = [make_agent(name, [url], **settings) for name in names]
    for agent in agents:
        agent.run("daemon", "start")
    for agent in agents:
        others = set(names) - {agent.name}
        wait_until(lambda a=agent, o=others: o <= a.online_names(), 20, f"{agent.name} to see all")
    return agents


def connect(caller: Agent, callee: Agent, topic: str = "a topic") -> str:
    call_id = str(caller.json("call", callee.name, topic)["id"])
    (request,) = events_of(callee, "call_request")
    assert request["call_id"] == call_id
    callee.json("answer", "accept", "--call", call_id[:8])
    events_of(caller, "call_accepted")
    return call_id
