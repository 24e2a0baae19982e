"""A relay that swallows large events must not stall a call (issue 21, finding 2).

`nostr-relay` 1.14 with its package defaults refuses events over 4,096 content characters
with ``["OK", "", false, "invalid: 280 characters should be enough for anybody"]``: an empty
event id, which nostr-sdk cannot pair with our publish (it reports a timeout), and then
sleeps the connection 2, 4, 8 ... s per refusal. NIP-11 announces no limit. The sender must
learn a size limit from "large wraps time out while small ones are taken", send the file in
fragments that fit, and keep the call going; `status` and `doctor` must say so.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AgentFactory, NostrRelayProcess
from tests.integration.calls_helpers import connect, events_of, start_agents

FILE_BYTES = 100 * 1024


@pytest.fixture
def default_nostr_relay() -> Iterator[NostrRelayProcess]:
    process = NostrRelayProcess(package_defaults=True).start()
    yield process
    process.stop()


def test_a_file_through_a_relay_that_swallows_large_events(
    default_nostr_relay: NostrRelayProcess, make_agent: AgentFactory, tmp_path: Path
) -> None:
    url = default_nostr_relay.url
    alice, bob = start_agents(url, make_agent, "alice", "bob")
    connect(alice, bob, "a big report")
    payload = random.Random(21).randbytes(FILE_BYTES)
    source = tmp_path / "report.bin"
    source.write_bytes(payload)
    alice.json("sendfile", "report.bin", "--path", str(source), timeout=90)
    alice.json("send", "that was the report")

    (received,) = events_of(bob, "file", timeout=60)
    assert received["sha256"] == hashlib.sha256(payload).hexdigest()
    (message,) = events_of(bob, "message", timeout=20)
    assert message["text"] == "that was the report"

    (relay,) = alice.json("status")["relays"]
    assert relay["refused"] >= 1, relay
    assert relay["max_message_length"] is not None and relay["max_message_length"] <= 4096 + 600
    assert any("too large" in p for p in relay["problems"]), relay
    log = alice.paths.log.read_text()
    assert "as too large" in log, log[-3000:]


def test_doctor_probes_with_a_file_size_wrap(
    default_nostr_relay: NostrRelayProcess, make_agent: AgentFactory
) -> None:
    alice = make_agent("alice", [default_nostr_relay.url])
    alice.run("daemon", "start")
    report = alice.json("doctor", timeout=60)
    (probe,) = report["relays"]
    assert not probe["verdict"].startswith("works"), probe
    assert probe["files"].startswith("no"), probe
    assert "file" in probe["verdict"], probe
    assert probe["ok"], probe  # small messages still go: calls work, files in pieces
