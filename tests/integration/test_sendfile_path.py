"""What a local path can make `sendfile --path` do (issue 18, finding 6): a FIFO, a device,
a file over the limit, the home's secret files reached directly or through links."""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from p2p_comm.harness import Agent, p2p_command, wait_until
from tests.conftest import AgentFactory
from tests.faults import proc_status_kib
from tests.integration.calls_helpers import connect, events_of, start_agents

# A daemon that reads /dev/zero grows by gigabytes; a refused one by nothing. Far between.
RSS_GROWTH_LIMIT_KIB = 128 * 1024


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one error sentence of a failed command, checked to be just that."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _nothing_received(sender: Agent, receiver: Agent, call_id: str) -> None:
    """A marker message sent after the refused files arrives, and no file came before it:
    messages and files of a call are delivered in order, so one refused but sent anyway
    would have arrived first."""
    sender.json("send", "marker after the refused files", "--call", call_id[:8])
    (marker,) = events_of(receiver, "message", timeout=30)
    assert marker["text"] == "marker after the refused files"
    backlog = receiver.__dict__.get("backlog", [])
    assert not [e for e in backlog if e["type"] == "file"]
    assert not [e for e in receiver.json("inbox")["events"] if e["type"] == "file"]


def _unblock_fifo(fifo: Path) -> None:
    """If something still waits to read the FIFO (the daemon, before the fix), let it go:
    open the write end and close it, so the reader sees end-of-file."""
    with contextlib.suppress(OSError):  # ENXIO: nobody reads it, nothing to release
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_sendfile_of_a_fifo_leaves_the_daemon_answering(
    relay: Any, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """A FIFO nobody writes: the daemon keeps answering other commands meanwhile, and the
    sendfile ends with one sentence (regular files only)."""
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    call_id = connect(alice, bob)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    sending = subprocess.Popen(
        [*p2p_command(), "sendfile", "--path", str(fifo)],
        env=alice.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        try:
            status = alice.json("status", timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("p2p status got no answer while a sendfile read a FIFO")
        assert status["_exit"] == 0
        try:
            stdout, stderr = sending.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("sendfile --path FIFO never ended")
        done = subprocess.CompletedProcess(sending.args, sending.returncode, stdout, stderr)
        line = _error_line(done)
        assert "not a regular file" in line and str(fifo) in line
    finally:
        _unblock_fifo(fifo)
        if sending.poll() is None:
            sending.kill()
        sending.communicate()
    _nothing_received(alice, bob, call_id)


def test_sendfile_of_dev_zero_is_refused_and_reads_nothing(
    relay: Any, make_agent: AgentFactory
) -> None:
    """/dev/zero once grew the daemon to 2.5 GB. A watchdog kills the daemon if its memory
    runs away, so that the old behaviour fails this test without starving the machine."""
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    call_id = connect(alice, bob)
    pid = alice.daemon_pid()
    assert pid
    before = proc_status_kib(pid, "VmRSS")
    sending = subprocess.Popen(
        [*p2p_command(), "sendfile", "--path", "/dev/zero"],
        env=alice.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = before

    def over() -> bool:
        nonlocal peak
        if sending.poll() is not None:
            return True
        peak = max(peak, proc_status_kib(pid, "VmRSS"))
        return peak - before > RSS_GROWTH_LIMIT_KIB

    try:
        wait_until(over, 60, "sendfile /dev/zero to end, or the daemon to grow")
        if sending.poll() is None:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the daemon grew from {before} KiB to {peak} KiB reading /dev/zero")
        stdout, stderr = sending.communicate(timeout=30)
    finally:
        if sending.poll() is None:
            sending.kill()
            sending.communicate()
    done = subprocess.CompletedProcess(sending.args, sending.returncode, stdout, stderr)
    assert "/dev/zero is not a regular file" in _error_line(done)
    peak = max(peak, proc_status_kib(pid, "VmHWM"))
    assert peak - before < RSS_GROWTH_LIMIT_KIB
    _nothing_received(alice, bob, call_id)


def test_sendfile_over_the_limit_is_refused_unread(
    relay: Any, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """A sparse file far over max_file_bytes: the usual too-large error."""
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob", max_file_bytes="65536")
    call_id = connect(alice, bob)
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        handle.truncate(8 << 30)  # 8 GiB of holes: reading it whole would be noticed
    line = _error_line(alice.run("sendfile", "--path", str(big), check=False))
    assert "over the limit of 65536" in line
    _nothing_received(alice, bob, call_id)


def _secret_paths(agent: Agent, tmp_path: Path) -> list[Path]:
    """The home's secret files, directly and through a symlink and a hard link."""
    home = agent.paths
    assert home.identity.exists() and home.database.exists()
    links = tmp_path / "links"
    links.mkdir()
    (links / "innocent.json").symlink_to(home.identity)
    (links / "chain").symlink_to(links / "innocent.json")  # a symlink to a symlink
    (links / "home").symlink_to(home.home)
    paths = [
        home.identity,
        links / "innocent.json",
        links / "chain",
        links / "home" / "p2p-identity.json",
        home.home / "." / "p2p-identity.json",
        home.database,
        links / "state.db",
    ]
    (links / "state.db").symlink_to(home.database)
    wal = Path(str(home.database) + "-wal")
    if wal.exists():
        paths.append(wal)
    try:
        os.link(home.identity, links / "hard.json")
        paths.append(links / "hard.json")
    except OSError as exc:  # another file system: a hard link cannot cross it
        assert exc.errno == errno.EXDEV
    return paths


def test_sendfile_refuses_the_homes_secret_files(
    relay: Any, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """The identity file, the database: directly, through symlinks, through a hard link."""
    alice, bob = start_agents(relay.url, make_agent, "alice", "bob")
    call_id = connect(alice, bob)
    for path in _secret_paths(alice, tmp_path):
        shown = alice.run("sendfile", "--path", str(path), check=False)
        line = _error_line(shown)
        assert "never sent" in line, line
        refused = alice.json("sendfile", "x", "--path", str(path), check=False)
        assert refused["error"]["code"] == "not_allowed"
    # An ordinary file still goes.
    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("fine to share\n")
    alice.json("sendfile", "--path", str(ordinary))
    (received,) = events_of(bob, "file", timeout=30)
    assert Path(received["path"]).read_text() == "fine to share\n"
    _nothing_received(alice, bob, call_id)


def test_group_sendfile_refuses_the_identity_through_a_symlink(
    relay: Any, make_agent: AgentFactory, tmp_path: Path
) -> None:
    """The group copy of sendfile reads paths the same way."""
    alice, bob, carol = start_agents(relay.url, make_agent, "alice", "bob", "carol")
    call_id = connect(alice, bob)
    alice.json("invite", "carol", "--call", call_id[:8])
    (request,) = events_of(carol, "call_request")
    assert request["call_id"] == call_id and request["group"] is True
    carol.json("answer", "accept", "--call", call_id[:8])
    events_of(alice, "participant_joined")
    link = tmp_path / "notes.json"
    link.symlink_to(alice.paths.identity)
    line = _error_line(
        alice.run("sendfile", "--path", str(link), "--call", call_id[:8], check=False)
    )
    assert "never sent" in line
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    try:
        line = _error_line(
            alice.run(
                "sendfile", "--path", str(fifo), "--call", call_id[:8], timeout=30, check=False
            )
        )
    finally:
        _unblock_fifo(fifo)
    assert "not a regular file" in line
    alice.json("sendfile", "ok.bin", base64.b64encode(b"ok").decode(), "--call", call_id[:8])
    for member in (bob, carol):
        (received,) = events_of(member, "file", timeout=30)
        assert received["file_name"] == "ok.bin"
