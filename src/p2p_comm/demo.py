"""``p2p demo``: an embedded relay and two agents in temporary homes, driven by the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .harness import Agent, RelayProcess, wait_until


def _sees(agent: Agent, other: Agent) -> Callable[[], bool]:
    return lambda: other.name in agent.online_names()


class Demo:
    """Prints each step as it runs it, and records them for ``--json``."""

    def __init__(self, json_output: bool) -> None:
        self.json_output = json_output
        self.steps: list[dict[str, Any]] = []

    def step(self, title: str, detail: str = "") -> None:
        self.steps.append({"step": title, "detail": detail})
        if not self.json_output:
            print(f"== {title}")
            if detail:
                print("   " + detail.replace("\n", "\n   "))

    def run(self) -> None:
        relay = RelayProcess().start()
        agents: list[Agent] = []
        try:
            self.step("embedded relay started", relay.url)
            alice = Agent("alice", [relay.url], capabilities="planning")
            bob = Agent(
                "bob",
                [relay.url],
                capabilities="summarize,translate",
                description="summarises documents",
            )
            agents += [alice, bob]
            for agent in agents:
                me = agent.json("status")["identity"]
                self.step(
                    f"{agent.name}: daemon started, identity created",
                    f"home {agent.home}\nnpub {me['npub']}",
                )
            for agent, other in ((alice, bob), (bob, alice)):
                wait_until(_sees(agent, other), 15, f"{agent.name} to see {other.name}")
                self.step(f"{agent.name}: p2p list", agent.run("list").stdout.strip())
            found = alice.run("list", "--capability", "summarize").stdout.strip()
            self.step("alice: p2p list --capability summarize", found)
        finally:
            for agent in agents:
                agent.cleanup()
            relay.stop()
        self.step("daemons stopped, relay stopped, temporary homes removed")


def main(json_output: bool = False) -> int:
    demo = Demo(json_output)
    try:
        demo.run()
    except Exception as exc:
        if json_output:
            print(
                json.dumps(
                    {
                        "ok": False,
                        "error": {"code": "demo_failed", "message": str(exc)},
                        "steps": demo.steps,
                    }
                )
            )
        else:
            print(f"error: the demo failed: {exc}")
        return 1
    if json_output:
        print(json.dumps({"ok": True, "steps": demo.steps}))
    return 0
