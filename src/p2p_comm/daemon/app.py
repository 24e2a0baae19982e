"""The daemon process: one per home, holding the identity, relays and state."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nostr_sdk as ns

from .. import __version__, clock, sdk_speedups
from ..config import ConfigError, load_config
from ..identity import IdentityError
from ..paths import HomePaths, ensure_private_dir
from ..protocol.call import ACTIVE, OUTGOING, RINGING
from ..registry import COMMANDS
from ..store import StorageError
from .agent.commands import CallCommands
from .agent.group_commands import GroupCommands
from .agent.server import SocketServer
from .agent.targeted import TargetCommands
from .base.errors import CommandError
from .base.tasks import spawn
from .builder import Parts, build
from .notify.owner import owner_pubkey
from .process import (
    AlreadyRunning,
    StartupError,
    acquire_lock,
    limit_malloc_arenas,
    max_request,
    open_state,
    setup_logging,
    tighten,
)
from .relays import relay_watch
from .relays.relay_status import relay_states

log = logging.getLogger("p2p.daemon")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Daemon:
    """Answers the CLI over the socket with the parts `builder.build` made and connected."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.paths = parts.paths
        self.config = parts.config
        self.identity = parts.identity
        self.started_at = time.time()
        self.store = parts.store
        self.pool = parts.pool
        self.advice = parts.advice
        self.presence = parts.presence
        self.inbox = parts.inbox
        self.gate = parts.gate
        self.outbound = parts.outbound
        self.inbound = parts.inbound
        self.calls = parts.calls
        self.actions = parts.actions
        self.owner = parts.owner
        self.loops = parts.loops
        self.groups = parts.groups
        self.server = SocketServer(self.paths.socket, self.dispatch, max_request(self.config))
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.targets = parts.targets
        calls = CallCommands(self.actions, self.inbox, self.owner, self.presence.name)
        groups = GroupCommands(self.groups, self.actions, self.owner)
        self.handlers: dict[str, Handler] = {
            "ping": self._ping,
            "status": self._status,
            "whoami": self._whoami,
            "list": self._list,
            "shutdown": self._shutdown,
            "doctor": self._doctor,
            **calls.handlers(),
            # The commands that name a call: a group or a 1:1 call, resolved once.
            **TargetCommands(self.targets, calls, groups, self.loops).handlers(),
        }
        # Every command of the registry (registry.py), which the clients offer, is served.
        missing = sorted({command.name for command in COMMANDS} - set(self.handlers))
        if missing:
            raise RuntimeError(f"the daemon serves no {', '.join(missing)}")

    async def dispatch(self, method: str, params: dict[str, Any]) -> Any:
        handler = self.handlers.get(method)
        if handler is None:
            raise CommandError("unknown_method", f"the daemon does not know '{method}'.")
        await self.advice.before(method, params)
        return await self.advice.after(method, await handler(params))

    async def start(self) -> None:
        self.calls.load()
        self.groups.load()
        await self.server.start()
        await self.pool.start()
        # Wraps in a REQ of their own: strfry-style relays challenge (NIP-42) only a REQ
        # whose every filter asks for a restricted kind. The pool sends it (and catch-up
        # queries) to the inbox relays only, presence and inbox lists to the announce relays.
        owner = owner_pubkey(self.config)
        if owner:
            self.presence.want_inbox_list(owner)
        await self.presence.subscribe()
        await self.pool.subscribe([self.inbound.wrap_filter()])
        self._tasks.append(spawn(self.presence.run(), "presence"))
        self._tasks.append(spawn(self.presence.backfill(), "presence-backfill"))
        self._tasks.append(spawn(self.calls.run_timers(), "call-timers"))
        self._tasks.append(spawn(self.inbound.run(), "inbound"))
        self._tasks.append(spawn(self.inbound.catch_up(), "catch-up"))
        self._tasks.append(self.owner.start())
        log.info(
            "daemon %s started for %s: announce on %s, inbox on %s",
            __version__,
            self.identity.npub,
            self.config.relays,
            self.config.effective_inbox_relays,
        )

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        log.info("daemon stopping")
        for task in self._tasks:
            task.cancel()
        try:
            await asyncio.wait_for(self.presence.announce("offline"), timeout=3)
        except Exception as exc:  # a clean exit matters more than the last announcement
            log.warning("offline announcement failed: %s", exc)
        await self.server.stop()
        await self.pool.stop()
        if not self.inbox.save_marks():
            log.warning("read marks of %d events could not be saved", len(self.inbox.read_unsaved))
        self.store.close()
        log.info("daemon stopped")

    # Handlers -----------------------------------------------------------------

    def _whoami_dict(self) -> dict[str, Any]:
        return {
            "name": self.presence.name,
            "npub": self.identity.npub,
            "pubkey": self.identity.public_hex,
            "relays": list(self.config.relays),
            "inbox_relays": list(self.config.effective_inbox_relays),
        }

    async def _ping(self, params: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "version": __version__}

    async def _whoami(self, params: dict[str, Any]) -> Any:
        return self._whoami_dict()

    def _calls_summary(self) -> dict[str, Any]:
        open_calls = self.targets.open_calls()
        return {
            "active": [c for c in open_calls if c["state"] == ACTIVE],
            # A group that rings here is one this agent was invited to.
            "ringing_in": [
                c for c in open_calls if c["state"] == RINGING and c["direction"] != OUTGOING
            ],
            "ringing_out": [
                c for c in open_calls if c["state"] == RINGING and c["direction"] == OUTGOING
            ],
            "unread": self.inbox.unread_counts(),
            "waiting_clients": self.inbox.waiters,
            "stats": {
                "retransmits": self.outbound.retransmits,
                "mined_wraps": self.outbound.mined,
                "mining_s_per_wrap": round(self.outbound.pow_seconds, 3),
                "max_delivery_delay_s": self.inbound.stats["max_delivery_delay_s"],
            },
        }

    def _security_summary(self) -> dict[str, Any]:
        dropped = {**self.inbound.stats["dropped"], **self.calls.dropped}
        return {
            "call_policy": self.config.call_policy,
            "contacts": len(self.calls.contacts),
            "blocked": len(self.calls.blocked),
            "unwrapped": self.inbound.stats["unwrapped"],
            "shed": self.gate.shed,
            "catch_ups": self.inbound.stats["catch_ups"],
            "catch_up_pages": self.inbound.stats["catch_up_pages"],
            "lane_wraps": self.inbound.lanes.recognised,
            "dropped": {**dropped, **self.gate.refused},
        }

    async def _status(self, params: dict[str, Any]) -> Any:
        relays = await relay_states(self.pool)
        return {
            "identity": self._whoami_dict(),
            "daemon": {
                "pid": os.getpid(),
                "version": __version__,
                "uptime_s": round(time.time() - self.started_at, 1),
            },
            "relays": relays,
            "connected_relays": sum(1 for r in relays if r["state"] == "connected"),
            "presence": {
                "status": self.presence.status,
                **self.presence.last_announce,
                "pow_seconds": self.presence.pow_seconds,  # the last announcement's mining
            },
            "online_agents": len(self.presence.online(clock.now())),
            "calls": self._calls_summary(),
            "security": self._security_summary(),
        }

    async def _list(self, params: dict[str, Any]) -> Any:
        agents = self.presence.describe(clock.now())
        capability = params.get("capability")
        if capability:
            wanted = str(capability).casefold()
            agents = [a for a in agents if wanted in (c.casefold() for c in a["capabilities"])]
        in_call = self.targets.in_call_with_me()
        for agent in agents:
            agent["in_call_with_me"] = in_call.get(agent["pubkey"], [])
        return {"agents": agents}

    async def _doctor(self, params: dict[str, Any]) -> Any:
        """Probe each configured relay with a wrap to ourselves; one verdict per relay."""
        return await relay_watch.doctor(self.pool, self.identity, self.config.all_relays)

    async def _shutdown(self, params: dict[str, Any]) -> Any:
        asyncio.get_running_loop().call_soon(self.request_stop)
        return {"stopping": True, "pid": os.getpid()}


async def _run(paths: HomePaths, report_ready: Callable[[str], None]) -> int:
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    sdk_speedups.apply()
    config = load_config(paths.config)
    setup_logging(paths, config.log_level)
    identity, store = open_state(paths)
    daemon = Daemon(build(paths, config, identity, store))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    await daemon.start()
    report_ready("ready")
    await daemon.wait_stopped()
    await daemon.stop()
    return 0


def run(paths: HomePaths, ready_fd: int | None = None) -> int:
    """Run the daemon until stopped; tell the starter through ``ready_fd`` how it went."""

    def report(message: str) -> None:
        nonlocal ready_fd
        if ready_fd is not None:
            try:
                os.write(ready_fd, (message.replace("\n", " ") + "\n").encode())
                os.close(ready_fd)
            except OSError:
                pass
            ready_fd = None

    # Everything the daemon creates under the home (database and its -wal/-shm, log,
    # escalation log, transcripts, received files) is the owner's alone, whatever the mode
    # of the home it finds (~/.openclaw is often 0755).
    os.umask(0o077)
    limit_malloc_arenas()
    try:
        ensure_private_dir(paths.home)
        tighten(paths)
        lock_fd = acquire_lock(paths)
    except AlreadyRunning as exc:
        report(f"already-running: {exc}")
        return 3
    except OSError as exc:
        report(f"error: cannot write to the home {paths.home}: {exc.strerror or exc}.")
        return 1
    try:
        return asyncio.run(_run(paths, report))
    except (ConfigError, IdentityError, StartupError, StorageError, OSError) as exc:
        logging.getLogger("p2p.daemon").error("cannot start: %s", exc)
        report(f"error: {exc}")
        return 1
    finally:
        os.close(lock_fd)
