"""The ``p2p`` script of `p2p_comm.shim` (issue 20): Python without ``site``, p2p_comm's
directory on the path, every behaviour of pip's console script kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from p2p_comm import shim
from p2p_comm.codes import EXIT_USAGE
from p2p_comm.harness import RelayProcess
from tests.conftest import AgentFactory


def _run(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=60)


def _bare_env(home: Path) -> dict[str, str]:
    """What an agent's shell may give it: no venv on PATH, nothing of ours set but the home."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/"),
        "P2P_HOME": str(home),
        "P2P_NAME": "carol",
        "P2P_RELAYS": "ws://127.0.0.1:9",
    }


def test_the_script_runs_without_site_and_works_from_a_bare_path(
    tmp_path: Path, relay: RelayProcess, make_agent: AgentFactory
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = shim.write(bin_dir)
    first = script.read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -S"
    # A symlink elsewhere, as the README installs it, runs the same interpreter.
    link = tmp_path / "elsewhere" / "p2p"
    link.parent.mkdir()
    link.symlink_to(script)

    agent = make_agent("dave", [relay.url])
    env = {**_bare_env(agent.home), "P2P_NAME": "dave", "P2P_RELAYS": relay.url}
    # A local command (argparse, then `site` for whatever it needs): the daemon starts.
    started = _run(link, env, "daemon", "start", "--json")
    assert started.returncode == 0, started.stderr
    # A piped command, on the fast path.
    status = _run(script, env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"name": "dave"' in status.stdout or '"name":"dave"' in status.stdout
    code = (
        "import sys; sys.argv = ['p2p', 'status']; from p2p_comm.cli import main; main();"
        " print('SITE', 'site' in sys.modules, file=sys.stderr)"
    )
    # What the script does, spelled out: no `site` on the command's own path.
    probe = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            f"import sys; sys.path.append({shim.package_dir()!r}); {code}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0 and "SITE False" in probe.stderr, probe.stderr


def test_a_wrong_command_line_is_said_without_a_daemon(tmp_path: Path) -> None:
    script = shim.write(tmp_path)
    env = _bare_env(tmp_path / "home")
    result = _run(script, env, "no-such-command")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "no-such-command" in result.stderr
    assert not (tmp_path / "home" / "daemon.lock").exists()


def test_a_moved_package_falls_back_to_site(tmp_path: Path) -> None:
    """The directory written into the script no longer holds p2p_comm: `site` finds it."""
    script = tmp_path / "p2p"
    script.write_text(shim.script(sys.executable, str(tmp_path / "gone")))
    script.chmod(0o755)
    result = _run(script, _bare_env(tmp_path / "home"), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_python_m_p2p_comm_is_the_same_command(tmp_path: Path) -> None:
    env = {**_bare_env(tmp_path / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run(
        [sys.executable, "-m", "p2p_comm", "no-such-command"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_USAGE and "no-such-command" in result.stderr


def test_an_interpreter_path_no_kernel_reads_is_refused() -> None:
    for python in ("/a path/with spaces/python", "/" + "x" * 200 + "/python"):
        try:
            shim.script(python, "/somewhere")
        except shim.ShimError:
            continue
        raise AssertionError(f"accepted {python!r}")
