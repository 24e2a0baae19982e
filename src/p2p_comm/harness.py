"""Real processes for the demo and the tests: an embedded relay and agents in temporary homes.

Everything here drives the product through its real entry points (the ``p2p``
command and ``p2p relay``) and cleans up every process it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .launcher import lock_held, lock_holder_pid
from .paths import HomePaths


def p2p_command() -> list[str]:
    """The installed ``p2p`` script beside this interpreter, else ``python -m p2p_comm``."""
    script = Path(sys.executable).with_name("p2p")
    return [str(script)] if script.exists() else [sys.executable, "-m", "p2p_comm"]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` with a growing delay until it returns something truthy."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""


def stop_process(proc: subprocess.Popen[str] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s; close its stdout pipe."""
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc and proc.stdout:
        proc.stdout.close()


class RelayProcess:
    """``p2p relay`` on a free loopback port, in its own process."""

    def __init__(self, db: Path | None = None, port: int = 0) -> None:
        self.db = db
        self.port = port
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 15.0) -> RelayProcess:
        cmd = [*p2p_command(), "relay", "--port", str(self.port)]
        if self.db:
            cmd += ["--db", str(self.db)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = _read_line(self.proc, timeout)
        if not line.startswith("relay ready: "):
            self.stop()
            raise RuntimeError(f"relay did not start: {line!r}")
        self.url = line.split()[2]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class CommandFailed(Exception):
    """A ``p2p`` command exited non-zero where success was expected."""


class Agent:
    """One agent: a temporary home and the ``p2p`` command run against it."""

    def __init__(
        self,
        name: str,
        relays: list[str],
        home: Path | None = None,
        loop_guard: bool = False,
        **settings: str,
    ) -> None:
        self.name = name
        self.home = home or Path(tempfile.mkdtemp(prefix=f"p2p-{name}-", dir="/tmp"))
        self.env = dict(
            os.environ, P2P_HOME=str(self.home), P2P_NAME=name, P2P_RELAYS=",".join(relays)
        )
        # Test and bench agents blast messages both ways on purpose: loop protection is off
        # unless asked for (the demo, and tests/integration/test_groups.py, keep it on).
        if not loop_guard:
            self.env.update(
                P2P_LOOP_TURNS_PER_MINUTE="0", P2P_LOOP_MAX_TURNS="0", P2P_LOOP_REPEATS="0"
            )
        self.env.update({f"P2P_{key.upper()}": value for key, value in settings.items()})

    @property
    def paths(self) -> HomePaths:
        return HomePaths(self.home)

    def run(
        self, *args: str, check: bool = True, timeout: float = 60.0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*p2p_command(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
        )
        if check and proc.returncode != 0:
            raise CommandFailed(
                f"p2p {' '.join(args)} -> {proc.returncode}: "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    def json(
        self, *args: str, check: bool = True, timeout: float = 60.0, stdin: str | None = None
    ) -> dict[str, Any]:
        proc = self.run(*args, "--json", check=check, timeout=timeout, stdin=stdin)
        result: dict[str, Any] = json.loads(proc.stdout)
        result["_exit"] = proc.returncode
        return result

    def npub(self) -> str:
        return str(self.json("whoami")["npub"])

    def online_names(self) -> set[str]:
        """Names `list` shows; none while no relay is connected (then `list` says so)."""
        result = self.json("list", check=False)
        if result.get("_exit") and result.get("error", {}).get("code") == "no_relay":
            return set()
        if result.get("_exit"):
            raise CommandFailed(f"p2p list failed: {result}")
        return {agent["name"] for agent in result["agents"]}

    def daemon_pid(self) -> int | None:
        return lock_holder_pid(self.paths) if lock_held(self.paths) else None

    def stop(self) -> None:
        """Stop the daemon cleanly, or kill it if it will not go."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.run("daemon", "stop", check=False, timeout=20)
        pid = self.daemon_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not lock_held(self.paths), 10, "the killed daemon to exit")

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
