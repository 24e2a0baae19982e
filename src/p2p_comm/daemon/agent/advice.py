"""What the daemon adds to a command's answer, or says instead of it: a command that means
nothing without a relay fails in one sentence naming why each relay is down; every answer
carries, as `warnings`, what is wrong right now (no relay connected, messages long
unacknowledged, a config this daemon does not run with)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from ... import clock
from ...config import MISNAMED_CONFIG, config_environment
from ...paths import HomePaths
from ...store import Store
from ..base.errors import CommandError
from ..relays.directory import is_key
from ..relays.nostr_io import RelayPool
from .server import client_environment, client_pid

# Messages unacknowledged for this long are said in `status`.
STALE_UNACKED = 300.0
# Commands whose result means little, or misleads, while no relay is connected: they get a
# `warnings` entry saying so (shown first in text output).
WARN_WITHOUT_RELAY = frozenset(
    {"status", "list", "call", "answer", "send", "sendfile", "escalate", "end"}
)
# Commands that mean nothing without a relay: who is online, ringing someone by a name
# only presence seen through a relay can resolve. They fail with one sentence naming why
# each relay is down (after a moment's grace for a daemon still connecting). A call by npub
# is queued, with a warning, until a relay connects.
RELAY_GRACE = 3.0
# Requests that are not commands of an agent: no warnings ride on them.
QUIET = frozenset({"ping", "ack", "shutdown"})


def _needs_relay(method: str, params: dict[str, Any]) -> bool:
    if method == "list":
        return True
    agent = params.get("agent")
    return method == "call" and isinstance(agent, str) and not is_key(agent.strip())


def config_fingerprint(path: Path) -> tuple[int, str] | None:
    """The config file's mtime and content hash, or None when there is no file."""
    try:
        data = path.read_bytes()
        return path.stat().st_mtime_ns, hashlib.sha256(data).hexdigest()
    except FileNotFoundError:
        return None


class Advice:
    """Checks before a command, and warnings after it."""

    def __init__(self, paths: HomePaths, pool: RelayPool, store: Store) -> None:
        self.paths = paths
        self.pool = pool
        self.store = store
        # What this daemon runs with, to tell a command that would configure it otherwise.
        self.config_seen = config_fingerprint(paths.config)
        self.environment_seen = config_environment(os.environ)

    async def before(self, method: str, params: dict[str, Any]) -> None:
        if _needs_relay(method, params):
            await self._need_relay(method)

    async def after(self, method: str, result: Any) -> Any:
        if method not in QUIET and isinstance(result, dict):
            warnings = await self.warnings(method) if method in WARN_WITHOUT_RELAY else []
            warnings += self.config_warnings()
            if warnings:
                result["warnings"] = [*result.get("warnings", []), *warnings]
        return result

    def config_warnings(self) -> list[str]:
        """A config this daemon does not run with: a changed or misnamed file, or a command
        whose environment sets P2P_* variables otherwise (said by every command)."""
        found = []
        if config_fingerprint(self.paths.config) != self.config_seen:
            found.append(
                f"the config file {self.paths.config} changed since the daemon started;"
                " run 'p2p daemon restart' to apply it."
            )
        misnamed = self.paths.home / MISNAMED_CONFIG
        if misnamed.exists():
            found.append(
                f"{misnamed} is not read: the config file is {self.paths.config.name};"
                " rename it (then run 'p2p daemon restart'), or move it away if it is not"
                " for p2p-comm."
            )
        pid = client_pid.get()
        environ = client_environment(pid) if pid else None
        if environ is not None:
            theirs, ours = config_environment(environ), self.environment_seen
            # Only what the command sets: a client that sets nothing configures nothing.
            changed = sorted(name for name, value in theirs.items() if ours.get(name) != value)
            if changed:
                found.append(
                    f"this command's environment sets {', '.join(changed)} otherwise than the"
                    " running daemon has it; run 'p2p daemon restart' from this environment"
                    " to apply it."
                )
        return found

    async def _need_relay(self, method: str) -> None:
        """Raise a one-sentence error if no relay is connected (after a short grace)."""
        deadline = time.monotonic() + RELAY_GRACE
        while True:
            up, _ = await self.pool.connected(max_age=0.5)
            if up:
                return
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        what = (
            "who is online is unknown"
            if method == "list"
            else "no agent can be found by name (a call by npub is queued until one connects)"
        )
        raise CommandError(
            "no_relay",
            f"no relay is connected ({self.pool.unreachable()}), so {what}; see 'p2p doctor'.",
        )

    async def warnings(self, method: str) -> list[str]:
        """What is wrong right now, one sentence each: said, never left to be guessed."""
        found = []
        up, total = await self.pool.connected(max_age=1.0)
        if not up:
            found.append(
                f"no relay connected (0 of {total}): other agents can neither see nor"
                " reach this agent, and what you send waits until one connects;"
                " see the relay lines of 'p2p status'."
            )
        if method == "status":
            now = clock.now()
            for call_id, (count, oldest) in self.store.outbox_oldest().items():
                if now - oldest >= STALE_UNACKED:
                    minutes = int((now - oldest) // 60)
                    found.append(
                        f"{count} message(s) in call {call_id[:8]} unacknowledged for"
                        f" {minutes} min: the peer may be offline or unreachable"
                        " (they are re-sent until it acknowledges them)."
                    )
        return found
