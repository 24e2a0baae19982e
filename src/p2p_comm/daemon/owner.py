"""Reaching the human owner: NIP-17 to the owner's npub, a command, a webhook, and a log file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import time
from typing import Any

import nostr_sdk as ns

from .. import clock
from ..config import Config
from ..identity import Identity
from ..nostr import nip17
from ..paths import HomePaths
from ..schema import esc_id
from .hooks import run_hook
from .nostr_io import RelayPool
from .presence import PresenceService

log = logging.getLogger("p2p.owner")

ESCALATION_TAG = re.compile(r"\besc:([0-9a-f]{6})\b")


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
    ) -> None:
        self.paths = paths
        self.config = config
        self.identity = identity
        self.pool = pool
        self.presence = presence

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
            channels.append(await self._nostr(message))
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

    async def _nostr(self, message: str) -> dict[str, Any]:
        owner = owner_pubkey(self.config)
        if owner is None:
            return {"channel": "nostr", "ok": False, "error": "owner is not a valid npub"}
        # NIP-17: the owner reads at the relays of their kind-10050 list; without one we
        # fall back on ours, and say so.
        inbox = self.presence.inbox_relays(owner)
        try:
            for _ in range(2):  # again at once if a relay just taught us its PoW demand
                pow_bits = self.pool.health.pow_needed(inbox or self.config.relays)
                wrap = await asyncio.to_thread(
                    nip17.private_message, self.identity.keys, owner, message, clock.now(), pow_bits
                )
                result = await self.pool.publish(wrap, relays=inbox or None)
                if result.accepted or not any(r.startswith("pow") for r in result.failed.values()):
                    break
        except Exception as exc:
            log.warning("NIP-17 message to the owner failed: %s", exc)
            return {"channel": "nostr", "ok": False, "error": str(exc)}
        reached = [url for url in result.accepted if url in (inbox or self.config.relays)]
        if not reached:
            return {
                "channel": "nostr",
                "ok": False,
                "error": f"no inbox relay of the owner accepted it: {result.failed}",
            }
        outcome: dict[str, Any] = {"channel": "nostr", "ok": True, "relays": reached}
        if not inbox:
            outcome["note"] = "the owner has no kind-10050 inbox list we know of; sent to ours"
        return outcome
