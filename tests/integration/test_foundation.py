"""Identity, daemon lifecycle, socket safety and CLI behaviour, with real processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

from p2p_comm.harness import Agent, RelayProcess, wait_until
from tests.conftest import AgentFactory


def test_identity_is_private_and_stable_across_restarts(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    agent = make_agent("alice", [relay.url])
    first = agent.json("whoami")
    assert first["name"] == "alice"
    assert first["npub"].startswith("npub1") and len(first["pubkey"]) == 64
    assert first["relays"] == [relay.url]
    identity = agent.paths.identity
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    secret = json.loads(identity.read_text())["secret_key"]
    agent.run("daemon", "restart")
    assert agent.json("whoami")["npub"] == first["npub"]
    status = agent.run("status").stdout
    logs = agent.paths.log.read_text()
    assert secret not in status and secret not in logs and secret not in agent.run("whoami").stdout


def test_status_shows_identity_and_connected_relay(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    agent = make_agent("alice", [relay.url])
    status = wait_until(
        lambda: (s := agent.json("status"))["connected_relays"] == 1 and s, 10, "relay connection"
    )
    assert status["relays"][0]["url"] == relay.url
    assert status["relays"][0]["state"] == "connected"
    text = agent.run("status").stdout
    assert f"relay {relay.url}: connected, ok" in text
    assert "name: alice" in text


def test_sigkilled_daemon_is_replaced_by_the_next_command(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    agent = make_agent("alice", [relay.url])
    npub = agent.npub()
    old_pid = agent.daemon_pid()
    assert old_pid
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: agent.daemon_pid() is None, 10, "the kernel to release the lock")
    assert agent.paths.socket.exists(), "a stale socket is left behind by SIGKILL"
    assert agent.npub() == npub
    new_pid = agent.daemon_pid()
    assert new_pid and new_pid != old_pid


def test_one_daemon_per_home(relay: RelayProcess, make_agent: AgentFactory) -> None:
    agent = make_agent("alice", [relay.url])
    agent.run("status")
    pid = agent.daemon_pid()
    # A second daemon started by hand for the same home must refuse and exit.
    proc = subprocess.run(
        [sys.executable, "-m", "p2p_comm.daemon"], env=agent.env, capture_output=True, timeout=30
    )
    assert proc.returncode == 3
    assert agent.daemon_pid() == pid
    assert agent.json("status")["daemon"]["pid"] == pid


def test_daemon_stop_and_start(relay: RelayProcess, make_agent: AgentFactory) -> None:
    agent = make_agent("alice", [relay.url])
    started = agent.json("daemon", "start")
    assert started["started"] is True
    assert agent.json("daemon", "start")["started"] is False
    assert agent.json("daemon", "stop")["was_running"] is True
    assert agent.daemon_pid() is None
    assert not agent.paths.socket.exists()
    assert agent.json("daemon", "stop")["was_running"] is False
    logs = agent.json("daemon", "logs")
    assert any("daemon stopped" in line for line in logs["lines"])


def test_socket_is_owner_only_and_unsafe_socket_is_refused(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    agent = make_agent("alice", [relay.url])
    agent.run("status")
    sock = agent.paths.socket
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    os.chmod(sock, 0o666)
    refused = agent.json("status", check=False)
    assert refused["_exit"] == 3
    assert refused["error"]["code"] == "unsafe_socket"
    agent.run("daemon", "restart")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert agent.json("status")["ok"] is True


def test_corrupt_identity_is_a_one_line_error(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    agent = make_agent("alice", [relay.url])
    agent.home.mkdir(exist_ok=True)
    agent.paths.identity.write_text("{broken")
    os.chmod(agent.paths.identity, 0o600)
    proc = agent.run("status", check=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: cannot start the daemon: identity file")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert agent.paths.identity.read_text() == "{broken"


def test_user_mistakes_are_one_sentence_with_json_too(make_agent: AgentFactory) -> None:
    agent = make_agent("alice", ["ws://127.0.0.1:9"])
    proc = agent.run("frobnicate", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    as_json = agent.json("frobnicate", check=False)
    assert as_json["ok"] is False and as_json["error"]["code"] == "usage"
    bad_config = Agent("bad", ["http://not-a-relay"])
    try:
        proc = bad_config.run("status", check=False)
        assert proc.returncode == 3
        assert "must start with ws://" in proc.stderr
    finally:
        bad_config.cleanup()


def test_cli_module_imports_neither_asyncio_nor_nostr_sdk() -> None:
    code = (
        "import sys, p2p_comm.cli; "
        "bad = {'asyncio', 'nostr_sdk'} & set(sys.modules); "
        "print(sorted(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
