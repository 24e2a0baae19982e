"""Issue 10, finding 9: fault injection against real daemons and relays through the real CLI.

A receiver killed or stopped mid-file, a full disk freed again, a noisy second relay, skewed
clocks, a half-open connection, damaged state, an abusive control-socket client, a sendfile
whose daemon dies, and presence announcements that must not trigger re-send storms. Each
test was checked to fail on the code before the issue 10 fixes.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import nostr_sdk as ns
import pytest

from p2p_comm.harness import Agent, p2p_command, wait_until
from p2p_comm.protocol.wire import WireMessage
from tests.conftest import AgentFactory
from tests.faults import (
    NoisyRelay,
    RawPeer,
    TcpProxy,
    Throttle,
    Tmpfs,
    closed_by_peer,
    identity_keys,
    proc_status_kib,
    raw_socket,
)
from tests.integration.calls_helpers import connect, events_of, start_agents
from tests.integration.test_delivery import FAST, start_pair, texts_of

MiB = 1024 * 1024


def _kill_daemon(agent: Agent) -> None:
    pid = agent.daemon_pid()
    assert pid, f"{agent.name} has no daemon to kill"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: agent.daemon_pid() is None, 10, "the kernel to release the lock")


def _bytes_under(folder: Path) -> int:
    if not folder.exists():
        return 0
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


# A receiver restarted mid-file ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigkill", "daemon stop"])
def test_receiver_restarted_mid_file_gets_it_whole_once(
    relay, make_agent: AgentFactory, tmp_path: Path, how: str
) -> None:  # type: ignore[no-untyped-def]
    # 16 MiB, not 5: reading got fast enough that the rest of a 5 MiB file sometimes
    # arrived while `daemon stop` was on its way, and the restart came after the file.
    roomy = {"max_file_bytes": str(32 * MiB)}
    alice, bob = start_pair(relay.url, make_agent, roomy, roomy)
    call_id = connect(alice, bob)
    payload = os.urandom(16 * MiB)
    (tmp_path / "file.bin").write_bytes(payload)
    sender = subprocess.Popen(
        [*p2p_command(), "sendfile", "file.bin", "--path", str(tmp_path / "file.bin"), "--json"],
        env=alice.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        folder = bob.paths.files / call_id
        wait_until(lambda: _bytes_under(folder) >= MiB, 60, "bob to hold part of the file")
        if how == "sigkill":
            _kill_daemon(bob)
        else:
            bob.run("daemon", "stop")
        assert _bytes_under(folder) < len(payload), "the file was whole before the restart"
        out, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err or out
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.communicate()
    bob.run("daemon", "start")
    (received,) = events_of(bob, "file", timeout=40)
    assert Path(received["path"]).read_bytes() == payload
    wait_until(
        lambda: alice.json("status")["calls"]["active"][0]["unacked"] == 0,
        30,
        "alice to get every receipt",
    )
    assert not [e for e in bob.json("inbox")["events"] if e["type"] == "file"], "only once"


# A full disk, freed again ---------------------------------------------------------------------


def _storage_error(result: dict[str, object]) -> None:
    """A command refused for lack of space: exit 1, code `storage`, one sentence saying so."""
    assert result["_exit"] == 1, result
    error = result["error"]
    assert isinstance(error, dict) and error["code"] == "storage", result
    assert re.search(r"disk|full|space", str(error["message"]), re.I), error


def test_full_disk_fails_loudly_loses_nothing_and_resumes(
    relay, make_agent: AgentFactory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    alice = make_agent("alice", [relay.url], **FAST)
    bob = make_agent("bob", [relay.url], **FAST, ring_timeout="3")
    disk = Tmpfs(bob.home, "16m")
    try:
        alice, bob = start_agents_pair(alice, bob)
        connect(alice, bob)
        for index in range(3):
            alice.json("send", f"unread {index}")
        wait_until(
            lambda: bob.json("status")["calls"]["unread"].get("message") == 3, 20, "3 unread"
        )
        pid = bob.daemon_pid()
        unwrapped = bob.json("status")["security"]["unwrapped"]
        disk.fill()

        seen: dict[int, dict[str, object]] = {}
        shown = bob.json("inbox", check=False)
        if shown["ok"]:  # shown, but they may not be marked read: they come again later
            seen.update({e["event_id"]: e for e in shown["events"]})
        else:
            _storage_error(shown)
        for index in range(5):
            alice.json("send", f"while full {index}")
        payload = os.urandom(60_000)
        (tmp_path / "full.bin").write_bytes(payload)
        alice.json("sendfile", "full.bin", "--path", str(tmp_path / "full.bin"))
        second = alice.json("call", "bob", "rings while the disk is full")["call_id"]
        wait_until(
            lambda: bob.json("status")["security"]["unwrapped"] >= unwrapped + 10,
            20,
            "bob to try the new wraps on the full disk",
        )
        _storage_error(bob.json("send", "from bob while full", check=False))

        disk.free()
        assert bob.daemon_pid() == pid, "the same daemon goes on"
        expected = [f"unread {i}" for i in range(3)] + [f"while full {i}" for i in range(5)]

        def everything() -> bool:
            seen.update(
                {e["event_id"]: e for e in bob.json("inbox", check=False).get("events", [])}
            )
            return len(texts_of(list(seen.values()))) >= len(expected)

        wait_until(everything, 45, "every message at bob")
        ordered = [seen[key] for key in sorted(seen)]
        assert texts_of(ordered) == expected
        files = [e for e in ordered if e["type"] == "file"]
        if not files:
            files = events_of(bob, "file", timeout=30)
        assert Path(str(files[0]["path"])).read_bytes() == payload
        missed = [e for e in ordered if e["type"] == "call_missed"] or events_of(
            bob, "call_missed", timeout=30
        )
        assert missed[0]["call_id"] == second, "bob's own ring timer still runs"
        bob.json("send", "space is back")
        assert texts_of(events_of(alice, "message")) == ["space is back"]
    finally:
        bob.stop()
        disk.unmount()


def start_agents_pair(alice: Agent, bob: Agent) -> tuple[Agent, Agent]:
    for agent in (alice, bob):
        agent.run("daemon", "start")
    wait_until(lambda: "bob" in alice.online_names(), 20, "alice to see bob")
    wait_until(lambda: "alice" in bob.online_names(), 20, "bob to see alice")
    return alice, bob


# A noisy second relay ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "cpu_share"),
    [
        ("repeat", None),
        ("junk", None),
        # Seen in CI: on a busy machine bob's daemon read the flood slower than the inbound
        # gate's rate, so nothing was shed and the relay was never muted; the SDK's event
        # channel stayed full of junk, and alice's call and messages through the good relay
        # waited behind it or were lost with it. Here bob's daemon gets a tenth of the CPU.
        ("junk", 0.1),
    ],
    ids=["repeat", "junk", "junk, daemon starved"],
)
def test_noisy_second_relay_does_not_stop_delivery(
    relay, make_agent: AgentFactory, mode: str, cpu_share: float | None
) -> None:  # type: ignore[no-untyped-def]
    alice = make_agent("alice", [relay.url], **FAST)
    bob = make_agent("bob", [relay.url], **FAST)
    noisy = NoisyRelay(mode, bob.json("whoami")["pubkey"], armed=False)
    throttle: Throttle | None = None
    try:
        bob.env["P2P_RELAYS"] = f"{relay.url},{noisy.url}"
        bob.run("daemon", "restart")
        alice.run("daemon", "start")
        wait_until(lambda: "bob" in alice.online_names(), 20, "alice to see bob")
        if cpu_share is not None:
            pid = bob.daemon_pid()
            assert pid
            throttle = Throttle(pid, share=cpu_share)
        noisy.arm()
        wait_until(lambda: noisy.sent > 200, 20, "the noise to start")
        connect(alice, bob)
        sent = [f"through the noise {index}" for index in range(10)]
        for text in sent:
            alice.json("send", text)
        # Wraps the noise crowded out come with a catch-up once the noisy relay is muted.
        assert texts_of(events_of(bob, "message", len(sent), timeout=45)) == sent
        # A relay repeating one event was never muted: the SDK passes on only the first
        # copy, but reads every one (daemons at 11 s of CPU each, and alice's messages
        # through the good relay waited behind the repeats for 25 s and more).

        def noisy_muted() -> bool:
            state = {r["url"]: r for r in bob.json("status")["relays"]}[noisy.url]
            return "flood" in state["last_error"]

        wait_until(noisy_muted, 20, f"the relay sending {mode} to be muted")
        # Said in the text status too: the connection stays up while muted, and a relay
        # that looked "ok, receive yes" hid it.
        status = bob.run("status").stdout.splitlines()
        (line,) = [x for x in status if f"relay {noisy.url}" in x]
        assert "muted" in line and "receive no (muted" in line and "flood" in line, line
    finally:
        if throttle is not None:
            throttle.stop()
        bob.stop()
        noisy.stop()


def test_catch_up_is_not_held_by_a_relay_that_floods_its_queries(
    relay, make_agent: AgentFactory
) -> None:  # type: ignore[no-untyped-def]
    """A catch-up asked every inbox relay at once and waited for all: a relay that answers
    the query with junk and never says EOSE held it for the whole timeout per page and
    filled it with thousands of wraps to unwrap. Here bob's gate lets 2 wraps a second
    through, so most of alice's messages can only come with a catch-up, and alice is gone
    (no re-sends). Alice sends without call lanes, so her wraps meet bob's gate."""
    alice = make_agent("alice", [relay.url], **FAST, call_lanes="false")
    bob = make_agent("bob", [relay.url], **FAST, inbound_events_per_second="2")
    noisy = NoisyRelay("query", bob.json("whoami")["pubkey"])
    try:
        bob.env["P2P_RELAYS"] = f"{relay.url},{noisy.url}"
        alice, bob = start_agents_pair(alice, bob)
        connect(alice, bob)
        bob.run("daemon", "stop")
        sent = [f"waiting for bob {index}" for index in range(20)]
        for text in sent:
            alice.json("send", text)
        alice.run("daemon", "stop")
        bob.run("daemon", "start")
        # The catch-up starts 3 s after the first shed wrap; one page from the good relay
        # takes well under a second. Waiting out the flooding relay took 10 s per page, and
        # unwrapping what it sent meanwhile longer still (over 30 s here).
        assert texts_of(events_of(bob, "message", len(sent), timeout=30)) == sent
        assert bob.json("status")["security"]["shed"] > 0, "the gate sent them to a catch-up"

        # A catch-up leaves the flooding relay after its first page of junk (it was muted
        # for it before; but a catch-up also reads back junk a relay stored while muted,
        # and that re-muted it for minutes after the attacker stopped: see
        # test_strangers.py). Paging on through its noise unwrapped thousands.
        junk = bob.json("status")["security"]["dropped"].get("unwrap_failed", 0)
        assert junk <= 2 * 500, junk
    finally:
        bob.stop()
        noisy.stop()


# Skewed clocks -------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["daemon", "raw"])
def test_callee_rings_when_the_caller_clock_is_120s_slow(
    relay, make_agent: AgentFactory, caller: str
) -> None:  # type: ignore[no-untyped-def]
    if caller == "daemon":
        alice = make_agent("alice", [relay.url], clock_offset="-120")
        (bob,) = start_agents(relay.url, make_agent, "bob")
        alice.run("daemon", "start")
        wait_until(lambda: "bob" in alice.online_names(), 20, "alice to see bob")
        started = alice.json("call", "bob", "from a slow clock")
        events_of(bob, "call_request")
        bob.json("answer", "accept")
        events_of(alice, "call_accepted")
        # The clock seam is in force (without it this test cannot show the fault).
        assert started["created_at"] < time.time() - 100
    else:
        (bob,) = start_agents(relay.url, make_agent, "bob")
        peer = RawPeer(relay.url)
        call_id = secrets.token_hex(16)
        request = WireMessage("request", call_id, 1, body={"topic": "slow", "name": "slow"})
        peer.publish(peer.wrap(bob.json("whoami")["pubkey"], request, int(time.time()) - 120))
        events_of(bob, "call_request")
        bob.json("answer", "accept")
        wait_until(lambda: any(d["type"] == "accept" for d in peer.received()), 20, "the accept")


def test_agents_600s_apart_still_see_each_other(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    ahead = make_agent("ahead", [relay.url], clock_offset="600")
    (behind,) = start_agents(relay.url, make_agent, "behind")
    ahead.run("daemon", "start")
    wait_until(lambda: "behind" in ahead.online_names(), 20, "the agent ahead to see the other")
    wait_until(lambda: "ahead" in behind.online_names(), 20, "the agent behind to see the other")
    # The clock seam is in force: the agent ahead stamps its presence 600 s ahead.
    (listed,) = behind.json("list")["agents"]
    assert listed["last_seen_at"] > time.time() + 500


# A half-open connection -----------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_half_open_connection_is_noticed_and_delivery_resumes(
    relay, make_agent: AgentFactory
) -> None:  # type: ignore[no-untyped-def]
    proxy = TcpProxy(relay.port)
    try:
        alice = make_agent("alice", [relay.url], **FAST)
        bob = make_agent("bob", [proxy.url], **FAST)
        start_agents_pair(alice, bob)
        connect(alice, bob)
        proxy.freeze()
        frozen_at = time.monotonic()
        wait_until(
            lambda: bob.json("status")["connected_relays"] == 0,
            35,
            "bob's status to stop saying the frozen relay is connected",
        )
        assert time.monotonic() - frozen_at < 35
        alice.json("send", "across the outage")
        proxy.thaw()
        assert texts_of(events_of(bob, "message", timeout=45)) == ["across the outage"]
        # And the live subscription works again: reconnected within a second of dropping
        # it, a relay in nostr-sdk 0.45 looked connected and never delivered again.
        alice.json("send", "after the outage")
        assert texts_of(events_of(bob, "message", timeout=30)) == ["after the outage"]
    finally:
        proxy.stop()


# Damaged state ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["0-byte database", "garbage database", "deleted identity"])
def test_damaged_state_stops_the_daemon_with_one_sentence(
    relay, make_agent: AgentFactory, damage: str
) -> None:  # type: ignore[no-untyped-def]
    bob = make_agent("bob", [relay.url])
    bob.run("daemon", "start")
    stranger = ns.Keys.generate().public_key().to_hex()
    bob.json("block", ns.Keys.generate().public_key().to_hex())
    bob.json("call", stranger, "state worth keeping")
    bob.run("daemon", "stop")
    database = bob.paths.database
    for suffix in ("-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    if damage == "0-byte database":
        database.write_bytes(b"")
        damaged, name = database, database.name
    elif damage == "garbage database":
        database.write_bytes(os.urandom(16384))
        damaged, name = database, database.name
    else:
        bob.paths.identity.unlink()
        damaged, name = database, bob.paths.identity.name
    before = damaged.read_bytes()
    result = bob.run("status", check=False)
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], result.stderr
    assert damaged.read_bytes() == before, "the damaged file was changed"
    if damage == "deleted identity":
        assert not bob.paths.identity.exists(), "a new identity was made beside the old state"
    log = bob.paths.log.read_text(errors="replace") if bob.paths.log.exists() else ""
    assert "Traceback" not in log


# The control socket -------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_control_socket_bounds_memory_for_huge_unterminated_requests(
    relay, make_agent: AgentFactory
) -> None:  # type: ignore[no-untyped-def]
    bob = make_agent("bob", [relay.url])
    bob.run("daemon", "start")
    pid = bob.daemon_pid()
    assert pid
    block = b"x" * MiB

    def push() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        try:
            sock.connect(str(bob.paths.socket))
            for _ in range(60):
                sock.sendall(block)
        except OSError:
            pass  # refused, closed or stalled by the daemon: all fine
        finally:
            sock.close()

    pushers = [threading.Thread(target=push) for _ in range(8)]
    for thread in pushers:
        thread.start()
    for thread in pushers:
        thread.join(60)
    peak_mib = proc_status_kib(pid, "VmHWM") / 1024
    assert bob.json("status")["daemon"]["pid"] == pid, "the daemon survived"
    assert peak_mib < 200, f"the daemon's RSS peaked at {peak_mib:.0f} MiB"


def test_control_socket_closes_idle_connections(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    bob = make_agent("bob", [relay.url])
    bob.run("daemon", "start")
    with raw_socket(bob) as silent, raw_socket(bob) as unterminated:
        unterminated.sendall(b'{"method": "status", "params": {}')
        assert closed_by_peer(silent, 15), "a connection that sends nothing stays open"
        assert closed_by_peer(unterminated, 5), "a request without a newline stays open"
    assert bob.json("status")["ok"]


@pytest.mark.parametrize(
    "value",
    [
        "nan",
        "inf",
        "-1",
    ],
)
def test_wait_timeout_must_be_a_finite_non_negative_number(
    relay, make_agent: AgentFactory, value: str
) -> None:  # type: ignore[no-untyped-def]
    bob = make_agent("bob", [relay.url])
    result = bob.run("wait", f"--timeout={value}", check=False, timeout=20)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "timeout" in lines[0] and "unexpected" not in lines[0]


# sendfile whose daemon dies, and presence-driven re-sends ---------------------------------------


def test_sendfile_whose_daemon_is_killed_after_queueing_does_not_invite_a_retry(
    independent_relay, make_agent: AgentFactory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # The independent relay answers each publish in milliseconds, not microseconds: the
    # transfer lasts long enough for the kill to land in the middle of it.
    alice, bob = start_pair(independent_relay.url, make_agent)
    connect(alice, bob)
    payload = os.urandom(5 * MiB)
    (tmp_path / "payload.bin").write_bytes(payload)
    sender = subprocess.Popen(
        [*p2p_command(), "sendfile", "payload.bin", "--path", str(tmp_path / "payload.bin")],
        env=alice.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sender.stderr is not None
        # The first progress line comes once the chunks are durable (queued), or the
        # command is already done.
        ready, _, _ = select.select([sender.stderr], [], [], 60)
        first = sender.stderr.readline() if ready else ""
        if sender.poll() is None:
            _kill_daemon(alice)
        out, err = sender.communicate(timeout=30)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.communicate()
    said = first + out + err
    assert sender.returncode == 0 or re.search(
        r"queued|will (still )?be (sent|delivered)", said, re.I
    ), f"exit {sender.returncode}: {said.strip()} (an agent would send the file again)"
    alice.json("status")  # a fresh daemon, which finds the queued file
    (received,) = events_of(bob, "file", timeout=60)
    assert Path(received["path"]).read_bytes() == payload


def test_presence_announcements_do_not_resend_everything_each_time(
    relay, make_agent: AgentFactory
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent)
    connect(alice, bob)
    bob.run("daemon", "stop")
    unacked = 30
    for index in range(unacked):
        alice.json("send", f"unacked {index}")
    # Until every message has been re-sent twice: only those are brought forward.
    wait_until(
        lambda: alice.json("status")["calls"]["stats"]["retransmits"] >= 2 * unacked,
        30,
        "two rounds of re-sends",
    )
    # bob's key announces bob again and again, but no daemon reads or receipts anything.
    bob_again = RawPeer(relay.url, identity_keys(bob))
    before = alice.json("status")["calls"]["stats"]["retransmits"]
    started = time.monotonic()
    first = int(time.time()) + 1
    announcements = 12
    for index in range(announcements):
        bob_again.publish(bob_again.presence("bob", first + index))

        def seen(at: int = first + index) -> bool:
            return any(a["last_seen_at"] >= at for a in alice.json("list")["agents"])

        wait_until(seen, 10, f"alice to see announcement {index}")
    elapsed = time.monotonic() - started
    resent = alice.json("status")["calls"]["stats"]["retransmits"] - before
    # The backoff (next gaps 8, 16 s ...) allows about one re-send per message in this time,
    # and the peer's return may bring them forward once; not once per announcement.
    assert resent <= unacked * 4, f"{resent} re-sends of {unacked} messages in {elapsed:.0f}s"
