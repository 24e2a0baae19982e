"""Local actions on calls: one command, one store transaction, the core's verdict first.

A part of its own, holding the calls service (calls.py) by reference and using only its
public API (`apply`, `register`, ...): the commands' side of the calls, readable alone.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from ... import clock
from ...protocol import wire
from ...protocol.call import ENDED, Call, CallError, EndedBy
from ...protocol.events import Effect
from ..base.errors import CommandError
from .calls import CallService

Action = Callable[[float], list[Effect]]


class CallActions:
    """`act`, `start_call` and `block`: what commands ask of the call service."""

    def __init__(self, service: CallService) -> None:
        self.service = service
        self.store = service.store

    def act(
        self, call: Call, action: Action, record: tuple[str, dict[str, Any]] | None = None
    ) -> list[Awaitable[None]]:
        """One command on one call, in one transaction: the core's verdict first, then the
        transcript entry and every effect. A refusal or a failed commit leaves no trace."""
        now = clock.now()
        try:
            with self.store.transaction():
                effects = action(now)
                if record is not None:
                    self.store.add_entry(call.id, now, "out", record[0], record[1])
                return self.service.apply(call, effects, now)
        except CallError as exc:
            raise CommandError(exc.code, str(exc)) from None
        except Exception:
            self.service.reload()
            raise

    def start_call(
        self, agent: str, topic: str, my_name: str
    ) -> tuple[Call, list[Awaitable[None]]]:
        now = clock.now()
        pubkey, name = self.service.directory.resolve(agent, now)
        if pubkey in self.service.blocked:
            raise CommandError("blocked", "that agent is blocked; 'p2p unblock' it first.")
        if len(topic) > wire.MAX_TOPIC:
            raise CommandError("too_large", f"the topic is over {wire.MAX_TOPIC} characters.")
        known = self.service.directory.presence.lookup(pubkey)
        required = self.service.config.require_forward_secrecy
        if required and known is not None and known.presence.feature_level < wire.FS_LEVEL:
            raise CommandError(
                "not_allowed",
                "that agent runs a version without forward secrecy, and"
                " require_forward_secrecy is set: the call was not placed.",
            )
        limits = self.service.limits
        call, effects = Call.start(secrets.token_hex(16), pubkey, topic, my_name, now, limits)
        self.service.register(call, name)
        try:
            with self.store.transaction():
                self.store.add_entry(call.id, now, "out", "call_request", {"topic": topic})
                return call, self.service.apply(call, effects, now)
        except Exception:
            self.service.forget(call.id)
            raise

    def block(self, pubkey: str) -> list[str]:
        """Block ``pubkey``: every open call with it ends on both sides. Returns their ids."""
        now = clock.now()
        ended: list[str] = []
        work: list[Awaitable[None]] = []
        try:
            with self.store.transaction():
                self.store.block(pubkey, now)
                for call in self.service.calls.values():
                    if call.peer == pubkey and call.state != ENDED:
                        self.store.add_entry(
                            call.id, now, "out", "call_ended", {"reason": "blocked"}
                        )
                        effects = call.end("blocked", now, EndedBy.BLOCKED)
                        work += self.service.apply(call, effects, now)
                        ended.append(call.id)
        except Exception:
            self.service.reload()
            raise
        self.service.blocked.add(pubkey)
        self.service.publish(work)
        return ended
