"""Issue 21, findings 6-9: the CLI's edges, read marks on a full disk, the loop guard's idea
of a ping-pong, and partial files of transfers that never finish.

Real daemons on a loopback relay, driven through the real ``p2p`` command (and the Python
client where the finding is about it). Each test was run on the code before the fix and
failed there.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess

import pytest

from p2p_comm import Client
from p2p_comm.harness import Agent, RelayProcess, p2p_command, wait_until
from p2p_comm.protocol.wire import FILE_CHUNK_BYTES, WireMessage
from tests.conftest import AgentFactory
from tests.faults import Tmpfs, raw_call
from tests.integration.calls_helpers import connect, events_of, start_agents
from tests.integration.test_delivery import FAST, start_pair, texts_of
from tests.integration.test_mcp import mcp_session, tool


def _unread_messages(agent: Agent, count: int) -> None:
    wait_until(
        lambda: agent.json("status")["calls"]["unread"].get("message", 0) >= count,
        20,
        f"{count} unread messages at {agent.name}",
    )


def _text_until(agent: Agent, marker: str, *options: str) -> str:
    """The text of `p2p inbox` runs, gathered until a line starts with ``marker``."""
    seen: list[str] = []

    def arrived() -> bool:
        out = agent.run("inbox", *options).stdout
        seen[:] = [out] if options else [*seen, out]
        return any(line.startswith(marker) for line in out.splitlines())

    wait_until(arrived, 30, f"{marker} at {agent.name}")
    return "".join(seen)


# Finding 6: CLI edges -----------------------------------------------------------------------


def test_a_closed_stdout_descriptor_is_141_not_a_traceback(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    """`p2p inbox >&-`: standard output is not a closed pipe but no descriptor at all."""
    alice, bob = start_pair(relay.url, make_agent)
    connect(alice, bob)
    alice.json("send", "kept for later")
    _unread_messages(bob, 1)
    for args in (["inbox"], ["inbox", "--json"], ["status"], ["daemon", "status"]):
        proc = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", *p2p_command(), *args],
            env=bob.env,
            stderr=subprocess.PIPE,
            timeout=30,
        )
        assert (proc.returncode, proc.stderr) == (141, b""), args
    assert texts_of(bob.json("inbox")["events"]) == ["kept for later"], "nothing was consumed"


def test_ctrl_c_on_json_wait_prints_one_json_error(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    agent = make_agent("alice", [relay.url])
    agent.run("daemon", "start")
    waiter = subprocess.Popen(
        [*p2p_command(), "--json", "wait", "--timeout", "60"],
        env=agent.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: agent.json("status")["calls"]["waiting_clients"] >= 1, 10, "the wait to block"
        )
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate(timeout=15)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 130, err
    document = json.loads(out)
    assert document["ok"] is False and document["error"]["code"] == "interrupted", document
    assert b"Traceback" not in err


def test_refused_in_text_says_what_and_why(relay: RelayProcess, make_agent: AgentFactory) -> None:
    alice, bob = start_pair(relay.url, make_agent, bob_settings={"max_file_bytes": "1000"})
    connect(alice, bob)
    alice.json("sendfile", "big.bin", "QUJD" * 1000)  # 3000 bytes; bob takes at most 1000
    text = _text_until(alice, "[refused]", "--peek")
    line = next(x for x in text.splitlines() if x.startswith("[refused]"))
    assert "file" in line and '"big.bin"' in line, text
    assert "over the receiver's limit of 1000" in text, text


def test_max_leaves_the_rest_unread_on_every_surface(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    """`p2p inbox | head -1` marks all it printed read; `--max N` prints (and marks) only N."""
    alice, bob = start_pair(relay.url, make_agent)
    connect(alice, bob)
    for n in range(7):
        alice.json("send", f"line {n}")
    _unread_messages(bob, 7)
    first = bob.json("inbox", "--max", "1")["events"]
    assert texts_of(first) == ["line 0"]
    second = bob.json("wait", "--max", "1", "--timeout", "5")["events"]
    assert texts_of(second) == ["line 1"]
    assert bob.run("inbox", "--max", "1").stdout.startswith("events: 1\n")
    client = Client(bob.home, start=False)
    assert texts_of(client.inbox(max=1)["events"]) == ["line 3"]
    assert texts_of(client.wait(timeout=5, max=1)["events"]) == ["line 4"]

    async def through_mcp() -> list[str]:
        async with mcp_session(bob) as session:
            got = await tool(session, "inbox", max=1)
            got2 = await tool(session, "wait", max=1, timeout=5)
            return texts_of(got["events"] + got2["events"])

    assert asyncio.run(through_mcp()) == ["line 5", "line 6"]
    assert bob.json("inbox")["events"] == []
    refused = bob.json("inbox", "--max", "0", check=False)
    assert refused["_exit"] == 2 and "--max" in refused["error"]["message"]


def test_end_all_is_shown_as_ended_for_everyone(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    ann, ben, cat = start_agents(relay.url, make_agent, "ann", "ben", "cat")
    call_id = connect(ann, ben)
    ann.json("invite", "cat", "--call", call_id[:8])
    events_of(cat, "call_request")
    cat.json("answer", "accept", "--call", call_id[:8])
    events_of(ben, "participant_joined")
    ann.json("end", "--all", "everyone is done", "--call", call_id[:8])
    for agent in (ben, cat):
        text = _text_until(agent, "[call_ended]")
        line = next(x for x in text.splitlines() if x.startswith("[call_ended]"))
        assert "for everyone" in line and '"ann"' in line, text
        assert "everyone is done" in text
        # The roster: the call is over for this member too, nobody is left "in" it.
        assert agent.json("status")["calls"]["active"] == []
        (row,) = [c for c in agent.json("history")["calls"] if c["call_id"] == call_id]
        assert row["state"] == "ended"


# Finding 7: read marks on a full disk ----------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the small tmpfs for a full disk needs root")
def test_events_shown_on_a_full_disk_are_not_shown_again(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    alice = make_agent("alice", [relay.url], **FAST)
    bob = make_agent("bob", [relay.url], **FAST)
    disk = Tmpfs(bob.home, "16m")
    try:
        for agent in (alice, bob):
            agent.run("daemon", "start")
        wait_until(lambda: "bob" in alice.online_names(), 20, "alice to see bob")
        wait_until(lambda: "alice" in bob.online_names(), 20, "bob to see alice")
        connect(alice, bob)
        for n in range(3):
            alice.json("send", f"before {n}")
        _unread_messages(bob, 3)
        disk.fill()
        shown = bob.run("inbox", "--json", check=False)
        assert shown.returncode == 0, shown.stderr
        assert texts_of(json.loads(shown.stdout)["events"]) == [f"before {n}" for n in range(3)]
        again = bob.run("inbox", "--json", check=False)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["events"] == [], "shown once already"
        assert "shown again" not in shown.stderr + again.stderr
        disk.free()
        # The marks are saved once they can be: a restarted daemon does not show them again.
        wait_until(lambda: bob.json("status")["ok"], 10, "bob to answer")
        bob.run("daemon", "restart")
        alice.json("send", "after")
        assert texts_of(events_of(bob, "message")) == ["after"]
        assert texts_of(bob.json("inbox")["events"]) == []
    finally:
        bob.stop()
        disk.unmount()


# Finding 8: two bursts are not a ping-pong -----------------------------------------------------


def test_two_bursts_of_numbered_lines_do_not_trip_the_loop_guard(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    guard = {"loop_turns_per_minute": "20", "loop_max_turns": "200", "loop_repeats": "3"}
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob", **guard)
    call_id = connect(alice, bob)
    for n in range(1, 6):
        alice.json("send", f"step {n} of the plan", "--call", call_id[:8])
    assert len(events_of(bob, "message", 5)) == 5
    for n in range(1, 6):
        bob.json("send", f"step {n} of the plan", "--call", call_id[:8])
    assert len(events_of(alice, "message", 5)) == 5
    for agent in (alice, bob):
        sent = agent.json("send", "thanks, that is all", "--call", call_id[:8], check=False)
        assert sent["_exit"] == 0, sent
        kinds = [e["type"] for e in agent.json("inbox", "--peek")["events"]]
        assert "loop_suspected" not in kinds, (agent.name, kinds)


# Finding 9: partial files of transfers that never finish -------------------------------------


def test_partial_files_of_transfers_that_never_finish_are_removed(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    bob = make_agent("bob", [relay.url], **FAST)
    bob.run("daemon", "start")
    bob_hex = bob.json("whoami")["pubkey"]
    peer, call_id = raw_call(relay.url, bob)
    wait_until(lambda: any(d["type"] == "accept" for d in peer.received()), 20, "bob's accept")
    fid = secrets.token_hex(16)
    first = WireMessage(
        "file",
        call_id,
        2,
        ack=1,
        body={
            "fid": fid,
            "name": "never.bin",
            "size": 2 * FILE_CHUNK_BYTES,
            "sha256": "0" * 64,
            "index": 0,
            "count": 2,
            "data": b"\1" * FILE_CHUNK_BYTES,
        },
    )
    peer.publish(peer.wrap(bob_hex, first))  # the second chunk never comes
    partial = bob.paths.files / call_id / f".partial-{fid}"
    wait_until(partial.exists, 20, "bob to write the first chunk")
    # A leftover of a call this home no longer knows, as an older version left behind.
    orphan = bob.paths.files / ("f" * 32) / f".partial-{'e' * 32}"
    orphan.parent.mkdir(mode=0o700)
    orphan.write_bytes(b"old")
    bob.json("end", "bye", "--call", call_id[:8])
    bob.run("daemon", "restart")
    wait_until(lambda: not orphan.exists(), 20, "the orphan partial file to go")
    assert partial.exists(), "the peer may still finish it: it re-sends for two days"
    # Two days and more later nothing can finish it: the daemon removes it.
    bob.env["P2P_CLOCK_OFFSET"] = str(3 * 86400)
    bob.run("daemon", "restart")
    wait_until(lambda: not partial.exists(), 20, "the stale partial file to go")
    assert not list(bob.paths.files.rglob(".partial-*"))
