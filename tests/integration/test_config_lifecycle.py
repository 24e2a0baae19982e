"""Issue 21, finding 5: the config's lifecycle through the real `p2p` command.

A restart with a broken config must not stop the running daemon; a pending change of the
config file or of the environment is said by every command; an empty ``P2P_HOME``, a
misnamed config file and a wrongly typed value are said, with what to do. Each test failed
on the code before the fix.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from p2p_comm.harness import Agent, p2p_command, wait_until
from p2p_comm.relay import free_port
from tests.conftest import AgentFactory

RESTART = "run 'p2p daemon restart'"


def test_restart_with_a_broken_config_keeps_the_daemon_running(
    make_agent: AgentFactory,
) -> None:
    agent = make_agent("alice", [f"ws://127.0.0.1:{free_port()}"])
    agent.run("daemon", "start")
    pid = agent.daemon_pid()
    agent.paths.config.write_text('relays = "ws://127.0.0.1:9"\n')  # a string, not a list
    proc = agent.run("daemon", "restart", check=False)
    assert proc.returncode == 3, proc
    assert proc.stderr.count("\n") == 1 and "relays" in proc.stderr, proc.stderr
    assert "left running" in proc.stderr, proc.stderr
    assert agent.daemon_pid() == pid, "the running daemon was not stopped"
    refused = agent.json("daemon", "restart", check=False)
    assert refused["_exit"] == 3 and refused["error"]["code"] == "config"
    agent.paths.config.write_text('relays = ["ws://127.0.0.1:9"]\n')
    agent.run("daemon", "restart")
    assert agent.daemon_pid() not in (None, pid)


def test_a_pending_config_change_is_warned_by_every_command(make_agent: AgentFactory) -> None:
    agent = make_agent("alice", [f"ws://127.0.0.1:{free_port()}"])
    agent.run("daemon", "start")
    assert "warnings" not in agent.json("whoami")
    agent.paths.config.write_text('description = "new words"\n')
    # (`list` needs a relay, and this home has none: it says so instead, test_relay_reach.py.)
    for args in (("whoami",), ("inbox",), ("history",), ("status",)):
        warnings = agent.json(*args).get("warnings", [])
        assert any("config file" in w and RESTART in w for w in warnings), (args, warnings)
    text = agent.run("whoami").stdout.splitlines()
    assert text[0].startswith("warning: the config file ") and RESTART in text[0], text
    agent.run("daemon", "restart")
    assert "warnings" not in agent.json("whoami")


def test_a_changed_environment_is_warned(make_agent: AgentFactory) -> None:
    agent = make_agent("alice", [f"ws://127.0.0.1:{free_port()}"])
    agent.run("daemon", "start")
    other = f"ws://127.0.0.1:{free_port()}"
    agent.env["P2P_RELAYS"] = other
    result = agent.json("whoami")
    assert result["relays"] != [other], "the running daemon keeps its relays"
    (warning,) = [w for w in result.get("warnings", []) if "P2P_RELAYS" in w]
    assert RESTART in warning
    assert other not in warning, "values are not echoed (tokens live in the environment too)"
    agent.run("daemon", "restart")
    result = agent.json("whoami")
    assert result["relays"] == [other] and "warnings" not in result


def test_empty_p2p_home_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "P2P_HOME": ""}
    try:
        for args in (["status"], ["daemon", "start"], ["--json", "whoami"]):
            proc = subprocess.run(
                [*p2p_command(), *args], env=env, capture_output=True, text=True, timeout=30
            )
            assert proc.returncode == 3, (args, proc)
            said = proc.stderr + proc.stdout
            assert "P2P_HOME" in said and "unset" in said, said
        assert not (tmp_path / ".openclaw").exists(), "nothing was created in the default home"
    finally:  # a daemon the old code started there, on the public relays
        Agent("x", [], home=tmp_path / ".openclaw").stop()


def test_a_misnamed_config_file_is_said(make_agent: AgentFactory) -> None:
    agent = make_agent("alice", [f"ws://127.0.0.1:{free_port()}"])
    agent.home.mkdir(exist_ok=True)
    (agent.home / "config.toml").write_text('description = "meant for p2p"\n')
    result = agent.json("whoami")
    (warning,) = [w for w in result.get("warnings", []) if "config.toml" in w]
    assert "p2p-config.toml" in warning and "rename" in warning
    wait_until(lambda: agent.daemon_pid(), 10, "the daemon")
