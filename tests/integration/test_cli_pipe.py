"""Issue 12, "the CLI only pipes bytes": the daemon parses the command line and renders the
output; the ``p2p`` process sends its argv (and stdin, and its directory) and copies back.

Real daemons through the real ``p2p`` command. Two tests fail on the CLI before the pipe (it
imported json and argparse on every run; stdin that is not UTF-8 ended in exit 1); the others
hold behaviour the move had to keep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from p2p_comm.harness import Agent, RelayProcess, p2p_command, wait_until
from tests.conftest import AgentFactory
from tests.integration.calls_helpers import connect, events_of

NOWHERE = ["ws://127.0.0.1:9"]  # no relay there
HEAVY = ("json", "argparse", "re", "enum", "typing", "asyncio", "nostr_sdk")


def test_a_cli_run_imports_neither_json_nor_argparse(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    agent = make_agent("alice", [relay.url])
    agent.run("daemon", "start")
    code = (
        "import sys\n"
        "from p2p_comm.cli import main\n"
        "codes = [main(a) for a in (['status'], ['status', '--json'], ['inbox'],"
        " ['wait', '--timeout', '0'], ['send', '-'], ['history', '--limit', '2'])]\n"
        f"heavy = sorted(set({HEAVY!r}) & set(sys.modules))\n"
        "import json\n"  # only now, once the modules the runs imported are known
        "sys.stderr.write('\\n' + json.dumps([codes, heavy]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=agent.env,
        input=b"from stdin",
        capture_output=True,
        timeout=60,
    )
    codes, heavy = json.loads(proc.stderr.decode().rsplit("\n", 1)[-1])
    assert codes == [0, 0, 0, 4, 1, 0], proc.stderr  # `send -`: no call; it read stdin first
    assert heavy == [], f"a piped CLI run imported {heavy}"


def test_a_wrong_command_line_is_said_without_starting_a_daemon(
    make_agent: AgentFactory,
) -> None:
    agent = make_agent("alice", NOWHERE)
    for args in (("frobnicate",), ("send",), ("wait", "--timeout", "nan"), ()):
        proc = agent.run(*args, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), (args, proc.stderr)
    assert agent.daemon_pid() is None, "a usage error started a daemon"


def test_command_line_and_stdin_checked_by_the_daemon(
    relay: RelayProcess, make_agent: AgentFactory
) -> None:
    agent = make_agent("alice", [relay.url])
    agent.run("daemon", "start")
    pid = agent.daemon_pid()
    raw = subprocess.run(
        [*p2p_command(), "send", b"\xff\xfe"],  # type: ignore[list-item]
        env=agent.env,
        capture_output=True,
        timeout=30,
    )
    assert (raw.returncode, raw.stderr) == (2, b"error: argument 2 is not valid UTF-8 text.\n")
    bad_stdin = subprocess.run(
        [*p2p_command(), "send", "-", "--json"],
        env=agent.env,
        input=b"\xff not text",
        capture_output=True,
        timeout=30,
    )
    assert bad_stdin.returncode == 2
    assert b'"standard input is not valid UTF-8 text."' in bad_stdin.stdout
    # `--he` is `--help` only to argparse: the daemon hands it back to the CLI, which prints it.
    helped = agent.run("status", "--he", check=False)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: p2p status"), helped
    assert agent.daemon_pid() == pid


def test_pipe_ack_relative_path_and_progress(
    relay: RelayProcess, make_agent: AgentFactory, tmp_path: Path
) -> None:
    alice, bob = make_agent("alice", [relay.url]), make_agent("bob", [relay.url])
    for agent in (alice, bob):
        agent.run("daemon", "start")
    wait_until(lambda: "bob" in alice.online_names(), 20, "alice to see bob")
    connect(alice, bob)
    alice.json("send", "read me once")
    wait_until(lambda: bob.json("status")["calls"]["unread"].get("message"), 20, "the message")

    # Shown into a closed stdout: never acknowledged, still unread.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        lost = subprocess.run(
            [*p2p_command(), "inbox"], env=bob.env, stdout=write_end, stderr=subprocess.PIPE
        )
    finally:
        os.close(write_end)
    assert (lost.returncode, lost.stderr) == (141, b"")
    shown = bob.run("inbox")
    assert "read me once" in shown.stdout
    assert "read me once" not in bob.run("inbox").stdout  # acknowledged over the pipe

    # `sendfile --path` relative to the CLI's directory, not the daemon's; progress on stderr.
    (tmp_path / "notes.bin").write_bytes(os.urandom(200_000))
    sent = subprocess.run(
        [*p2p_command(), "sendfile", "--path", "notes.bin"],
        env=alice.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent file ") and "notes.bin" in sent.stdout
    assert sent.stderr.startswith("sending notes.bin: ") and sent.stderr.endswith("(100%)\n")
    (received,) = events_of(bob, "file", timeout=30)
    assert Path(received["path"]).read_bytes() == (tmp_path / "notes.bin").read_bytes()


def test_an_unsafe_socket_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    agent = Agent("alice", NOWHERE, home=tmp_path / "home")
    try:
        (tmp_path / "home").mkdir(mode=0o700)
        (tmp_path / "home" / "p2p-daemon.sock").write_text("not a socket")
        proc = agent.run("status", check=False)
        assert proc.returncode == 3 and "is not a socket; refusing" in proc.stderr, proc.stderr
    finally:
        agent.cleanup()
