"""Runaway-loop protection in the daemon: one `LoopGuard` per call, the agent told, the
owner told, and our sends refused until lifted.

Each daemon watches on its own every message of the call it sees (its own and the
others'), so both agents of a ping-pong trip at about the same point without any wire
message. The watch lives in memory: a daemon restart starts the count afresh.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ... import clock
from ...config import Config
from ...protocol.events import AgentEvent
from ...protocol.loops import LoopBudget, LoopGuard
from ...schema import peer
from ...store import Store
from ..base.errors import CommandError
from .inbox import AgentInbox, agent_event
from .owner import OwnerChannels

log = logging.getLogger("p2p.loops")


class LoopWatch:
    """Counts messages per call and trips each call's guard once."""

    def __init__(
        self,
        config: Config,
        store: Store,
        inbox: AgentInbox,
        owner: OwnerChannels | None,
        my_name: str = "",
    ) -> None:
        self.budget = LoopBudget(
            config.loop_turns_per_minute, config.loop_max_turns, config.loop_repeats
        )
        self.store = store
        self.inbox = inbox
        self.owner = owner
        self.my_name = my_name
        self.guards: dict[str, LoopGuard] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.budget.per_minute or self.budget.max_turns or self.budget.repeats)

    def check_send(self, call_id: str, force: bool) -> None:
        """Refuse a send in a call whose guard tripped, unless ``force`` lifts it."""
        guard = self.guards.get(call_id)
        if guard is None or not guard.tripped:
            return
        if force:
            log.info("call %s: loop guard lifted by the agent", call_id[:8])
            guard.lift()
            return
        raise CommandError(
            "loop_suspected",
            f"sends in call {call_id[:8]} are paused because a runaway loop is suspected "
            f"({guard.tripped}); read the conversation and resend with --force if it should "
            "go on.",
        )

    def observe(
        self,
        call_id: str,
        author: str,
        text: str,
        topic: str,
        peers: list[tuple[str, str]],
        now: float,
    ) -> None:
        """Count one message (inside the caller's transaction). ``peers`` are the
        ``(npub, name)`` of the others in the call, for the event and the owner."""
        if not self.enabled:
            return
        guard = self.guards.setdefault(call_id, LoopGuard(self.budget))
        reason = guard.observe(author, text, now)
        if reason is None:
            return
        log.warning("call %s: runaway loop suspected: %s", call_id[:8], reason)
        npub, name = peers[0] if len(peers) == 1 else ("", ", ".join(n for _, n in peers))
        fields = {
            "reason": reason,
            "peers": [peer(p, n) for p, n in peers],
            "how_to_lift": f"p2p send --force --call {call_id[:8]} <message>",
        }
        self.inbox.emit(
            agent_event(AgentEvent.LOOP_SUSPECTED, call_id, npub, name, now, fields), now
        )
        self.store.add_entry(call_id, now, "out", "loop_suspected", {"reason": reason})
        details = {
            "agent": self.my_name,
            "call_id": call_id,
            "peer": name,
            "peer_npub": npub or ", ".join(p for p, _ in peers),
            "topic": topic,
            "text": f"Runaway loop suspected: {reason}. Sends in this call are paused until "
            "the agent resends with --force.",
        }
        self.store.after_commit(lambda: self._tell_owner(details))

    def _tell_owner(self, details: dict[str, str]) -> None:
        if self.owner is None:
            return
        task = asyncio.get_running_loop().create_task(self._escalate(details))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _escalate(self, details: dict[str, str]) -> None:
        assert self.owner is not None
        try:
            outcome = await self.owner.escalate(details)
            with self.store.transaction():
                self.store.add_escalation(
                    outcome["escalation_id"], details["call_id"], details["text"], clock.now()
                )
        except Exception as exc:  # the agent has its event; the owner is best effort
            log.warning("could not tell the owner about a loop: %s", exc)

    def describe(self, call_id: str) -> dict[str, Any]:
        guard = self.guards.get(call_id)
        if guard is None:
            return {"loop_suspected": False, "turns": 0}
        return {"loop_suspected": bool(guard.tripped), "turns": guard.turns}
