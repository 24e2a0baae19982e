"""Issue 12: every failure is one sentence with a documented exit code, and what is wrong is
said (no relay connected, a config changed under a running daemon)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import nostr_sdk as ns

from p2p_comm.harness import Agent, RelayProcess, p2p_command, wait_until
from p2p_comm.launcher import lock_held
from p2p_comm.relay import free_port
from tests.conftest import AgentFactory


def _run_into_closed_pipe(agent: Agent, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `p2p` with its stdout a pipe whose reader is already gone (`| head -0`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*p2p_command(), *args],
            env=agent.env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=30,
        )
    finally:
        os.close(write_end)


def test_a_closed_output_pipe_ends_quietly_with_141(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    agent = make_agent("alice", [relay.url])
    agent.run("daemon", "start")
    for args in (("history",), ("history", "--limit", "1"), ("status", "--json"), ("list",)):
        proc = _run_into_closed_pipe(agent, *args)
        assert (proc.returncode, proc.stderr) == (141, b""), args


def test_unwritable_home_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    agent = Agent("alice", ["ws://127.0.0.1:9"], home=blocker / "home")
    for args in (("status",), ("daemon", "start")):
        proc = agent.run(*args, check=False)
        assert proc.returncode == 3
        assert proc.stderr.count("\n") == 1 and str(blocker / "home") in proc.stderr
        assert "unexpected" not in proc.stderr and "internal" not in proc.stderr
    refused = agent.json("status", check=False)
    assert refused["error"]["code"] == "daemon_unavailable" and refused["_exit"] == 3


def test_relay_port_in_use_is_one_sentence() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [*p2p_command(), "relay", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error: port {port} on 127.0.0.1 is already in use;"
        " pick another --port (0 picks a free one).\n"
    )
    bad = subprocess.run(
        [*p2p_command(), "relay", "--port", "70000"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2 and "--port must be from 0 to 65535" in bad.stderr


def test_daemon_that_cannot_start_says_why(make_agent: AgentFactory) -> None:
    agent = make_agent("alice", ["ws://127.0.0.1:9"])
    agent.paths.config.write_text("anounce_interval = 30\n")
    proc = agent.run("status", check=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: cannot start the daemon: ")
    assert "unknown key 'anounce_interval'. Did you mean 'announce_interval'?" in proc.stderr
    status = agent.run("daemon", "status", check=False)
    assert (status.returncode, status.stdout) == (3, "daemon not running\n")
    assert not lock_held(agent.paths), "'daemon status' never starts a daemon"


def test_no_relay_and_changed_config_are_said_first(make_agent: AgentFactory) -> None:
    agent = make_agent("alice", [f"ws://127.0.0.1:{free_port()}"])  # nothing listens there
    first = agent.run("status").stdout.splitlines()[0]
    assert first.startswith("warning: no relay connected (0 of 1)")
    listed = agent.json("list", check=False)  # who is online cannot be known: an error
    assert listed["_exit"] == 1 and listed["error"]["code"] == "no_relay", listed
    stranger = ns.Keys.generate().public_key().to_bech32()
    ringing = agent.run("call", stranger, "hello").stdout.splitlines()
    assert ringing[0].startswith("warning: no relay connected")
    assert agent.run("daemon", "status").stdout.startswith("daemon running, pid ")

    assert "changed since" not in agent.run("status").stdout
    agent.paths.config.write_text('description = "new words"\n')
    text = agent.run("status").stdout
    assert (
        f"warning: the config file {agent.paths.config} changed since the daemon started;"
        " run 'p2p daemon restart' to apply it." in text.splitlines()
    )
    agent.run("daemon", "restart")
    wait_until(lambda: "changed since" not in agent.run("status").stdout, 10, "a clean status")


def test_connected_agent_has_no_warnings(relay: RelayProcess, make_agent: AgentFactory) -> None:
    agent = make_agent("alice", [relay.url])
    wait_until(lambda: agent.json("status")["connected_relays"] == 1, 10, "the relay")
    assert "warnings" not in agent.json("status") and "warnings" not in agent.json("list")
