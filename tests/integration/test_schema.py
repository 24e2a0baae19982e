"""Every command's --json document and every event type, validated against the shipped
JSON Schema files (schema p2p-comm/2), through the real `p2p` command on a loopback relay."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from p2p_comm.harness import Agent, p2p_command, wait_until
from p2p_comm.protocol.events import AGENT_EVENT_TYPES
from tests.integration.calls_helpers import start_agents
from tests.integration.test_escalation import NostrApp
from tests.schema_check import check, problems, schema_names

# Needs a relay that refuses our wraps: validated in tests/integration/test_relay_failures.py;
# needs the owner's inbox relay down, then back: validated in test_escalation.py.
NOT_EMITTED = {"delivery_failed", "owner_reached"}


class Session:
    """Runs commands with --json, validates each document, and keeps every event seen."""

    def __init__(self) -> None:
        self.backlog: dict[str, list[dict[str, Any]]] = {}
        self.seen_types: set[str] = set()
        self.commands: set[str] = set()

    def run(
        self, agent: Agent, schema: str, *args: str, exits: tuple[int, ...] = (0,)
    ) -> dict[str, Any]:
        """``p2p ARGS --json`` as ``agent``: its exit code one of ``exits``, its document
        valid as ``schema`` (or as the error document for a failure)."""
        result = agent.json(*args, check=False)
        code = result.pop("_exit")
        assert code in exits, (args, code, result)
        failed = result.get("ok") is not True  # `wait` timing out (4) is still a document
        check("error" if failed else schema, result)
        self.commands.add(schema)
        for event in [] if failed else result.get("events", []):
            check("event", event)
            check(f"event-{event['type']}", event)
            self.seen_types.add(event["type"])
            self.backlog.setdefault(agent.name, []).append(event)
        return result

    def event(self, agent: Agent, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next event of ``kind`` at ``agent`` (others are kept for later)."""
        backlog = self.backlog.setdefault(agent.name, [])

        def found() -> dict[str, Any] | None:
            for event in backlog:
                if event["type"] == kind:
                    backlog.remove(event)
                    return event
            self.run(agent, "wait", "wait", "--timeout", "2", exits=(0, 4))
            return None

        event: dict[str, Any] = wait_until(found, timeout, f"{kind} at {agent.name}")
        return event


def test_every_command_and_event_matches_the_schema(
    relay: Any, make_agent: Any, tmp_path: Path
) -> None:
    owner = NostrApp(relay.url)
    owner_npub = owner.keys.public_key().to_bech32()
    alice, bob, carol = start_agents(relay.url, make_agent, "alice", "bob", "carol")
    # Settings the daemons read at start: restart with them (a loop trips at alice's 4th
    # turn; bob refuses files over 1000 bytes and has an owner).
    alice.env.update(P2P_LOOP_MAX_TURNS="3")
    bob.env.update(P2P_OWNER=owner_npub, P2P_MAX_FILE_BYTES="1000")
    s = Session()
    for agent in (alice, bob):
        s.run(agent, "daemon-start", "daemon", "restart")
    wait_until(lambda: {"bob", "carol"} <= alice.online_names(), 20, "alice to see all")
    wait_until(lambda: {"alice", "carol"} <= bob.online_names(), 20, "bob to see all")

    # Reading commands, and the local ones.
    s.run(alice, "whoami", "whoami")
    s.run(alice, "status", "status")
    s.run(alice, "doctor", "doctor")
    agents = s.run(alice, "list", "list")["agents"]
    assert {a["name"] for a in agents} >= {"bob", "carol"}
    s.run(alice, "list", "list", "--capability", "nothing-has-this")
    s.run(alice, "contacts", "contacts", "add", "bob")
    s.run(alice, "contacts", "contacts", "remove", "bob")
    s.run(alice, "contacts", "contacts", "list")
    s.run(alice, "history", "history")
    s.run(alice, "daemon-status", "daemon", "status")
    s.run(alice, "daemon-start", "daemon", "start")
    s.run(alice, "daemon-logs", "daemon", "logs", "--lines", "3")
    s.run(alice, "skill", "skill", "install", "--dir", str(tmp_path / "skill"))
    s.run(alice, "error", "answer", "accept", "--call", "ffff", exits=(1,))
    s.run(alice, "inbox", "inbox", "--peek")

    # A call with messages, files, a refusal, an escalation and the owner's reply.
    call_id = s.run(alice, "call", "call", "bob", "plan the launch")["call_id"]
    assert s.event(bob, "call_request")["peer"]["name"] == "alice"
    s.run(bob, "answer", "answer", "accept", "--call", call_id[:8])
    s.event(alice, "call_accepted")
    sent = s.run(alice, "send", "send", "hello bob", "--call", call_id[:8])
    assert sent["call_delivery"]["unacked"] >= 0
    assert s.event(bob, "message")["text"] == "hello bob"
    s.run(bob, "send", "send", "hello alice", "--call", call_id[:8])
    s.event(alice, "message")
    small = base64.b64encode(b"tiny file").decode()
    s.run(alice, "sendfile", "sendfile", "notes.txt", small, "--call", call_id[:8])
    received = s.event(bob, "file")
    assert received["file_name"] == "notes.txt" and received["bytes"] == 9
    big = base64.b64encode(b"x" * 2000).decode()
    s.run(alice, "sendfile", "sendfile", "big.bin", big, "--call", call_id[:8])
    assert s.event(alice, "refused")["file_name"] == "big.bin"
    s.run(alice, "send", "send", "one more", "--call", call_id[:8])
    s.run(bob, "send", "send", "and another", "--call", call_id[:8])
    assert s.event(alice, "loop_suspected")["peer"]["name"] == "bob"
    escalated = s.run(bob, "escalate", "escalate", "may I agree?", "--call", call_id[:8])
    assert escalated["escalation_id"].startswith("esc:")
    s.event(alice, "escalation")
    owner.send(bob.json("whoami")["pubkey"], f"{escalated['escalation_id']} yes")
    reply = s.event(bob, "owner_reply")
    assert reply["escalation_id"] == escalated["escalation_id"]
    assert reply["peer"]["npub"] == owner_npub

    # The call becomes a group: carol joins and leaves; alice ends it for everyone.
    s.run(alice, "invite", "invite", "carol", "--call", call_id[:8])
    invitation = s.event(carol, "call_request")
    assert invitation["group"] is True and invitation["starter"]["name"] == "alice"
    s.run(carol, "answer", "answer", "accept", "--call", call_id[:8])
    s.event(bob, "participant_joined")
    s.event(alice, "participant_joined")
    s.run(carol, "end", "end", "--call", call_id[:8])
    s.event(bob, "participant_left")
    ended = s.run(alice, "end", "end", "--all", "--call", call_id[:8])
    assert ended["call"]["call_id"] == call_id and ended["entries"]
    assert s.event(bob, "call_ended")["call_id"] == call_id
    s.run(bob, "transcript", "transcript", "--call", call_id[:8])
    s.run(bob, "history", "history")

    # A rejected call, and a call that is hung up while it rings.
    second = s.run(alice, "call", "call", "bob", "another topic")["call_id"]
    s.event(bob, "call_request")
    s.run(bob, "answer", "answer", "reject", "busy", "--call", second[:8])
    assert s.event(alice, "call_rejected")["reason"] == "busy"
    third = s.run(alice, "call", "call", "carol", "quick one")["call_id"]
    s.event(carol, "call_request")
    s.run(alice, "end", "end", "--call", third[:8])
    s.event(carol, "call_missed")
    s.run(alice, "transcript", "transcript", "--call", third[:8])

    s.run(alice, "block", "block", "carol")
    s.run(alice, "unblock", "unblock", "carol")
    s.run(alice, "status", "status")
    s.run(alice, "inbox", "inbox")
    s.run(alice, "wait", "wait", "--timeout", "0", exits=(4,))
    s.run(carol, "daemon-stop", "daemon", "stop")
    s.run(carol, "daemon-status", "daemon", "status", exits=(3,))

    assert s.seen_types == set(AGENT_EVENT_TYPES) - NOT_EMITTED
    commands = {n for n in schema_names() if not n.startswith("event") and n != "common"}
    assert commands - s.commands == {"relay", "demo"}  # both checked by their own tests


def test_relay_json_prints_documents() -> None:
    proc = subprocess.Popen(
        [*p2p_command(), "relay", "--port", "0", "--json"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready = check("relay", json.loads(proc.stdout.readline()))
        assert ready["relay"] == "ready" and ready["url"].startswith("ws://127.0.0.1:")
        proc.send_signal(signal.SIGTERM)
        stopped = check("relay", json.loads(proc.stdout.readline()))
        assert stopped["relay"] == "stopped"
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize(
    "old",
    [
        {"id": "ab" * 16},
        {"peer_name": "bob"},
        {"ts": 1.0},
    ],
)
def test_old_names_are_not_valid(old: dict[str, Any]) -> None:
    """The schema names one dialect: schema-1 names fail it (the test above can fail)."""
    event = {"type": "message", "event_id": 1, "call_id": "ab" * 16, "at": 1.0, "text": "x"}
    event["peer"] = {"npub": "npub1" + "q" * 58, "name": "bob"}
    assert not problems("event", event)
    assert problems("event", {**event, **old})
