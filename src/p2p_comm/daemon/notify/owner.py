"""Reaching the human owner: NIP-17 to the owner's npub, a command, a webhook, and a log file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import time
from typing import Any

import nostr_sdk as ns

from ... import clock
from ...config import Config
from ...identity import Identity
from ...nostr import nip17
from ...paths import HomePaths
from ...protocol.events import AgentEvent
from ...schema import esc_id
from ...store import Store
from ..base.tasks import spawn
from ..relays.nostr_io import RelayPool
from ..relays.presence_service import PresenceService
from .hooks import run_hook
from .inbox import AgentInbox, agent_event

log = logging.getLogger("p2p.owner")

ESCALATION_TAG = re.compile(r"\besc:([0-9a-f]{6})\b")

# The owner's NIP-17 message waits in a durable outbox (the `settings` table, one key per
# escalation) until an inbox relay of the owner takes it: sent again after 5 s, 10 s, 20 s
# ... at most every RETRY_MAX, for up to the two days a peer's messages wait too.
OUTBOX_PREFIX = "owner-dm:"
RETRY_FIRST, RETRY_MAX = 5.0, 60.0
GIVE_UP_AFTER = 2 * 86400.0


def owner_pubkey(config: Config) -> str | None:
    """The owner's hex key, or None if unset or invalid."""
    if not config.owner:
        return None
    try:
        return str(ns.PublicKey.parse(config.owner).to_hex())
    except Exception:
        return None


class OwnerChannels:
    """Fans an escalation out to every configured owner channel and reports each outcome."""

    def __init__(
        self,
        paths: HomePaths,
        config: Config,
        identity: Identity,
        pool: RelayPool,
        presence: PresenceService,
        store: Store | None = None,
        inbox: AgentInbox | None = None,
    ) -> None:
        self.paths = paths
        self.config = config
        self.identity = identity
        self.pool = pool
        self.presence = presence
        # Where queued messages are kept and the agent is told.
        self.store = store
        self.inbox = inbox
        self._due: dict[str, float] = {}  # escalation id -> when to send again (monotonic)
        self._wake = asyncio.Event()

    def compose(self, escalation_id: str, details: dict[str, str]) -> str:
        return (
            f"Escalation {escalation_id} from your agent {details['agent']} "
            f"({self.identity.npub}) in call {details['call_id'][:8]} with "
            f"{details['peer']} ({details['peer_npub']}).\n"
            f"Topic: {details['topic']}\n\n{details['text']}\n\n"
            f"Reply to this message to answer your agent (start with {escalation_id} "
            "if several escalations are open)."
        )

    async def escalate(self, details: dict[str, str]) -> dict[str, Any]:
        escalation_id = esc_id(secrets.token_hex(3)) or ""  # "esc:" + 6 hex, as shown everywhere
        message = self.compose(escalation_id, details)
        channels = [self._log_line(escalation_id, details)]
        if self.config.owner:
            channels.append(await self._nostr(message, escalation_id, details["call_id"]))
        if self.config.owner_hook.configured:
            values = {**details, "message": message, "escalation_id": escalation_id}
            payload = {
                "type": "escalation",
                "escalation_id": escalation_id,
                **details,
                "message": message,
            }
            channels += await run_hook(
                self.config.owner_hook, values, payload, self.config.hook_timeout
            )
        reached = [c["channel"] for c in channels if c["ok"] and c["channel"] != "log"]
        return {
            "escalation_id": escalation_id,
            "channels": channels,
            "owner_configured": bool(self.config.owner or self.config.owner_hook.configured),
            "owner_reached": reached,
            # Not taken yet, kept and sent again: `owner_reached` events say when it lands.
            "owner_queued": [c["channel"] for c in channels if c.get("queued")],
        }

    def _log_line(self, escalation_id: str, details: dict[str, str]) -> dict[str, Any]:
        record = {"escalation_id": escalation_id, "at": time.time(), **details}
        try:
            fd = os.open(self.paths.escalations, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:
            log.warning("cannot append to %s: %s", self.paths.escalations, exc)
            return {"channel": "log", "ok": False, "error": str(exc)}
        return {"channel": "log", "ok": True, "path": str(self.paths.escalations)}

    async def _nostr(self, message: str, escalation_id: str, call_id: str) -> dict[str, Any]:
        owner = owner_pubkey(self.config)
        if owner is None:
            return {"channel": "nostr", "ok": False, "error": "owner is not a valid npub"}
        # NIP-17: the owner reads at the relays of their kind-10050 list; without one we
        # fall back on ours, and say so.
        inbox = self.presence.inbox_relays(owner)
        try:
            wrap = await self._wrap(owner, message, inbox)
            # Kept before it is sent: a daemon that dies meanwhile sends it on restart.
            entry = {
                "escalation_id": escalation_id,
                "call_id": call_id,
                "message": message,
                "wrap": wrap.as_json(),
                "queued_at": clock.now(),
                "attempts": 0,
                "failed": {},
            }
            self._keep(entry)
            result, wrap = await self._send(owner, message, wrap, inbox)
        except Exception as exc:
            log.warning("NIP-17 message to the owner failed: %s", exc)
            return {"channel": "nostr", "ok": False, "error": str(exc)}
        reached = self._reached(result, inbox)
        if not reached:
            entry.update(wrap=wrap.as_json(), attempts=1, failed=result.failed)
            self._keep(entry)
            self._due[escalation_id] = time.monotonic() + RETRY_FIRST
            self._wake.set()
            log.warning(
                "NIP-17 message %s to the owner not taken yet (%s); queued",
                escalation_id,
                result.failed,
            )
            return {
                "channel": "nostr",
                "ok": False,
                "queued": True,
                "error": f"no inbox relay of the owner took it yet ({_reasons(result.failed)});"
                " queued: sent again until one does (for up to 2 days), and an"
                " 'owner_reached' event says when it lands",
            }
        self._forget(escalation_id)
        outcome: dict[str, Any] = {"channel": "nostr", "ok": True, "relays": reached}
        if not inbox:
            outcome["note"] = "the owner has no kind-10050 inbox list we know of; sent to ours"
        return outcome

    async def _wrap(self, owner: str, message: str, inbox: tuple[str, ...]) -> Any:
        pow_bits = self.pool.health.pow_needed(inbox or self.config.relays)
        return await asyncio.to_thread(
            nip17.private_message, self.identity.keys, owner, message, clock.now(), pow_bits
        )

    async def _send(
        self, owner: str, message: str, wrap: Any, inbox: tuple[str, ...]
    ) -> tuple[Any, Any]:
        """Publish ``wrap`` (the same signed event each time: relays drop a copy they hold,
        so the owner never reads it twice); a fresh one at once where a relay asks for
        proof of work or a later ``created_at``. Returns (result, the wrap last sent)."""
        for attempt in range(2):
            result = await self.pool.publish(wrap, relays=inbox or None)
            reasons = [r.lower() for r in result.failed.values()]
            fresh = any(r.startswith("pow") or "created_at" in r for r in reasons)
            if result.accepted or attempt or not fresh:
                break
            wrap = await self._wrap(owner, message, inbox)
        return result, wrap

    def _reached(self, result: Any, inbox: tuple[str, ...]) -> list[str]:
        wanted = inbox or self.config.relays
        taken = [url for url in result.accepted if url in wanted]
        # A relay that says "duplicate" holds it already (an earlier attempt landed).
        taken += [
            url
            for url, why in result.failed.items()
            if url in wanted and why.lower().startswith("duplicate")
        ]
        return taken

    # The durable outbox ------------------------------------------------------------------

    def _keep(self, entry: dict[str, Any]) -> None:
        if self.store is None:
            return
        with self.store.transaction():
            self.store.put(OUTBOX_PREFIX + entry["escalation_id"], json.dumps(entry))

    def _forget(self, escalation_id: str) -> None:
        self._due.pop(escalation_id, None)
        if self.store is None:
            return
        with self.store.transaction():
            self.store.delete(OUTBOX_PREFIX + escalation_id)

    def queued(self) -> list[dict[str, Any]]:
        """The owner messages not taken by any inbox relay of the owner yet."""
        if self.store is None:
            return []
        return [json.loads(value) for _, value in self.store.prefixed(OUTBOX_PREFIX)]

    async def run(self) -> None:
        """Send queued owner messages again until they land or two days pass."""
        for entry in self.queued():  # from before a restart: try soon
            self._due.setdefault(entry["escalation_id"], time.monotonic() + 1.0)
        while True:
            now = time.monotonic()
            wait = min((due - now for due in self._due.values()), default=RETRY_MAX)
            self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, RETRY_MAX))
                continue
            for entry in self.queued():
                if self._due.get(entry["escalation_id"], 0.0) <= time.monotonic():
                    try:
                        await self._retry(entry)
                    except Exception:  # never the end of the retries of the others
                        log.exception("re-sending owner message %s failed", entry["escalation_id"])
                        self._due[entry["escalation_id"]] = time.monotonic() + RETRY_MAX

    async def _retry(self, entry: dict[str, Any]) -> None:
        escalation_id = entry["escalation_id"]
        owner = owner_pubkey(self.config)
        if owner is None:
            self._give_up(entry, "the owner is no longer a valid npub in the config")
            return
        inbox = self.presence.inbox_relays(owner)
        wrap = ns.Event.from_json(entry["wrap"])
        result, wrap = await self._send(owner, entry["message"], wrap, inbox)
        reached = self._reached(result, inbox)
        if reached:
            self._forget(escalation_id)
            log.info("NIP-17 message %s reached the owner at %s", escalation_id, reached)
            self._tell(entry, AgentEvent.OWNER_REACHED, {"channel": "nostr", "relays": reached})
            return
        entry.update(wrap=wrap.as_json(), attempts=entry["attempts"] + 1, failed=result.failed)
        if clock.now() - entry["queued_at"] >= GIVE_UP_AFTER:
            self._give_up(entry, _reasons(result.failed))
            return
        self._keep(entry)
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** min(entry["attempts"], 10))
        self._due[escalation_id] = time.monotonic() + delay

    def _give_up(self, entry: dict[str, Any], why: str) -> None:
        self._forget(entry["escalation_id"])
        reason = (
            f"the owner never got escalation {entry['escalation_id']}: no inbox relay of the"
            f" owner took it in {entry['attempts']} attempts over 2 days ({why})"
        )
        log.warning("%s", reason)
        self._tell(entry, AgentEvent.DELIVERY_FAILED, {"reason": reason})

    def _tell(self, entry: dict[str, Any], kind: AgentEvent, fields: dict[str, Any]) -> None:
        if self.store is None or self.inbox is None:
            return
        owner_npub = ns.PublicKey.parse(self.config.owner).to_bech32() if self.config.owner else ""
        now = clock.now()
        fields = {"escalation_id": entry["escalation_id"], **fields}
        event = agent_event(kind, entry["call_id"], owner_npub, "owner", now, fields)
        try:
            with self.store.transaction():
                self.inbox.emit(event, now)
        except Exception as exc:
            log.warning(
                "cannot record that owner message %s %s: %s", entry["escalation_id"], kind, exc
            )

    def start(self) -> asyncio.Task[Any]:
        return spawn(self.run(), "owner-outbox")


def _reasons(failed: dict[str, str]) -> str:
    return "; ".join(f"{url}: {why}" for url, why in sorted(failed.items())) or "no relay to try"
