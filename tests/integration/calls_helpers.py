"""Shared steps for call tests: connect two agents, collect events."""

from __future__ import annotations

from typing import Any

from p2p_comm.harness import Agent, wait_until


def events_of(
    agent: Agent, kind: str, count: int = 1, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Wait (through `p2p wait`) until ``count`` events of ``kind`` arrived; returns them.

    Events of other kinds read meanwhile are kept for later calls, not lost.
    """
    backlog: list[dict[str, Any]] = agent.__dict__.setdefault("backlog", [])

    def more() -> bool:
        if sum(1 for e in backlog if e["type"] == kind) >= count:
            return True
        backlog.extend(agent.json("wait", "--timeout", "2", check=False).get("events", []))
        return sum(1 for e in backlog if e["type"] == kind) >= count

    wait_until(more, timeout, f"{count} {kind} event(s) at {agent.name}")
    found = [e for e in backlog if e["type"] == kind][:count]
    for event in found:
        backlog.remove(event)
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
    call_id = str(caller.json("call", callee.name, topic)["call_id"])
    (request,) = events_of(callee, "call_request")
    assert request["call_id"] == call_id
    callee.json("answer", "accept", "--call", call_id[:8])
    events_of(caller, "call_accepted")
    return call_id
