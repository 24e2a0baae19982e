"""``p2p demo``: an embedded relay and two agents in temporary homes, driven by the real CLI."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from .harness import Agent, RelayProcess, wait_until
from .schema import document, error_document


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

    def show(self, agent: Agent, *args: str, stdin: str | None = None) -> str:
        """Run a real ``p2p`` command for ``agent`` and print it with its output."""
        output = agent.run(*args, stdin=stdin).stdout.strip()
        shown = " ".join(f'"{a}"' if " " in a else a for a in args)
        self.step(f"{agent.name}: p2p {shown}", output)
        return output

    def wait_for(self, agent: Agent, kind: str) -> None:
        """``p2p wait`` until an event of ``kind`` shows up, printing what arrives."""

        def arrived() -> bool:
            output = self.show(agent, "wait", "--timeout", "10")
            return f"[{kind}]" in output

        wait_until(arrived, 30, f"{agent.name} to receive {kind}")

    def call(self, alice: Agent, bob: Agent) -> None:
        self.show(alice, "call", "bob", "summarise the quarterly report")
        self.wait_for(bob, "call_request")
        self.show(bob, "answer", "accept")
        self.wait_for(alice, "call_accepted")
        self.show(alice, "send", "Hi bob, can you summarise the attached report in 3 bullets?")
        report = "Q3 revenue up 12%.\nCosts flat.\nTwo new customers signed.\n"
        self.show(alice, "sendfile", "report.txt", base64.b64encode(report.encode()).decode())
        self.wait_for(bob, "file")
        self.show(bob, "send", "- revenue +12%\n- costs flat\n- two new customers")
        self.wait_for(alice, "message")
        self.show(bob, "escalate", "Alice asks to publish this externally; needs owner approval.")
        self.wait_for(alice, "escalation")
        self.show(alice, "status")
        self.show(alice, "end", "thanks, that is all")
        self.wait_for(bob, "call_ended")
        self.show(bob, "transcript")

    def run(self) -> None:
        relay = RelayProcess().start()
        agents: list[Agent] = []
        try:
            self.step("embedded relay started", relay.url)
            alice = Agent("alice", [relay.url], loop_guard=True, capabilities="planning")
            bob = Agent(
                "bob",
                [relay.url],
                loop_guard=True,
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
            self.call(alice, bob)
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
            print(json.dumps({**error_document("demo_failed", str(exc)), "steps": demo.steps}))
        else:
            print(f"error: the demo failed: {exc}")
        return 1
    if json_output:
        print(json.dumps(document({"steps": demo.steps})))
    return 0
