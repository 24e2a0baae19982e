"""A relay that advertises more than it accepts (issue 11, "never stuck"), through the real CLI.

The simulated relay announces ``max_message_length`` 131072 in NIP-11 but refuses, in
strfry's words ("invalid: event too large: N"), every event over 32 KiB. The file chunks
queued for the announced limit are all refused; the sender learns the relay's real limit
from the refusal, re-sends each refused message as `frag` pieces that fit, and sizes what
it queues later to fit from the start. The call is never wedged behind a refused chunk.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

from tests.conftest import AgentFactory
from tests.integration.calls_helpers import events_of
from tests.relaysim import simulated_relay

ENFORCED = 32768
FILE_BYTES = 120 * 1024


def test_a_file_refused_as_too_large_arrives_in_fragments_and_the_call_goes_on(
    make_agent: AgentFactory, tmp_path: Path
) -> None:
    with simulated_relay(max_event_bytes=ENFORCED, declared_max_message_length=131072) as sim:
        assert sim.nip11()["limitation"]["max_message_length"] == 131072
        alice = make_agent("alice", [sim.url])
        bob = make_agent("bob", [sim.url])
        for agent in (alice, bob):
            agent.run("daemon", "start")
        bob_npub = str(bob.json("whoami")["npub"])
        call_id = str(alice.json("call", bob_npub, "a big report")["call_id"])
        events_of(bob, "call_request", timeout=10)
        bob.json("answer", "accept", "--call", call_id[:8])
        events_of(alice, "call_accepted", timeout=10)

        payload = random.Random(11).randbytes(FILE_BYTES)
        source = tmp_path / "report.bin"
        source.write_bytes(payload)
        alice.json("sendfile", "report.bin", "--path", str(source))
        alice.json("send", "that was the report")
        alice.json("end", "done")

        (received,) = events_of(bob, "file", timeout=20)
        assert received["sha256"] == hashlib.sha256(payload).hexdigest()
        assert Path(received["path"]).read_bytes() == payload
        (message,) = events_of(bob, "message", timeout=10)
        assert message["text"] == "that was the report"
        events_of(bob, "call_ended", timeout=10)
        assert sim.stats()["refused:invalid"] >= 1  # the relay did refuse the first chunks

        # The sender knows the relay's real limit now, says so, and cut the refused
        # messages into fragments; later files fit from the start.
        log = alice.paths.log.read_text()
        assert "as too large: its limit is now taken as" in log
        assert re.search(r"seq \d+ sent in \d+ fragments", log), log[-3000:]
        (relay,) = alice.json("status")["relays"]
        assert relay["max_message_length"] is not None
        assert relay["max_message_length"] < ENFORCED + 64, relay
        assert any("too large" in problem for problem in relay["problems"]), relay
        seen = alice.__dict__.get("backlog", [])
        seen += alice.json("wait", "--timeout", "0.5", check=False).get("events", [])
        assert not [e for e in seen if e["type"] == "delivery_failed"], seen

        # A second call: its file is chunked to the learned limit, so nothing is refused.
        refused_before = sim.stats()["refused:invalid"]
        second = str(alice.json("call", bob_npub, "another")["call_id"])
        events_of(bob, "call_request", timeout=10)
        bob.json("answer", "accept", "--call", second[:8])
        events_of(alice, "call_accepted", timeout=10)
        alice.json("sendfile", "report.bin", "--path", str(source))
        (again,) = events_of(bob, "file", timeout=20)
        assert again["sha256"] == hashlib.sha256(payload).hexdigest()
        assert sim.stats()["refused:invalid"] == refused_before
