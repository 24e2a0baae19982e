"""Events for the agent: built in one place, stored, waited on, and consumed exactly once.

An event stays unread until its reader acknowledges it (`ack`), which a client does only
after it has handed the event over (the CLI: printed and flushed). A `wait` that is
killed, times out at the agent's side, or writes into a closed pipe therefore loses
nothing: the next `inbox` shows the event again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ..protocol.events import AgentEvent
from ..schema import peer
from ..store import Store
from .hooks import Waker


def agent_event(
    kind: AgentEvent | str,
    call_id: str | None,
    npub: str,
    peer_name: str,
    at: float,
    fields: dict[str, Any],
    name_verified: bool = True,
) -> dict[str, Any]:
    """The one shape of an agent event (schema ``p2p-comm/2``, src/p2p_comm/schema/): who it
    is from as a ``peer`` object (None when no single agent is meant, as for a loop in a
    group call), its time as ``at``, then the type's own fields."""
    who = peer(npub, peer_name, name_verified) if npub or peer_name else None
    return {"type": str(kind), "call_id": call_id, "peer": who, "at": at, **fields}


class AgentInbox:
    """Unread events, the clients blocked in `wait`, and the wake hook."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.waker: Waker | None = None
        self.waiters = 0
        self._changed = asyncio.Condition()

    def emit(self, event: dict[str, Any], now: float) -> None:
        """Queue ``event`` in the current transaction; waiters and hooks hear of it only
        once it is committed."""
        event["event_id"] = self.store.add_event(event.get("call_id"), event["type"], event, now)
        self.store.after_commit(lambda: self._announce(event))

    def _announce(self, event: dict[str, Any]) -> None:
        asyncio.get_running_loop().create_task(self._notify_all())
        if self.waker is not None:
            self.waker.notify(event)

    async def _notify_all(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def unread(self, call_prefix: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        return self.store.unread(call_prefix, after)

    def ack(self, event_ids: list[int]) -> int:
        """The client has the events: they leave the unread set. Returns how many did."""
        with self.store.transaction():
            return self.store.mark_read(event_ids)

    async def wait(
        self, timeout: float, call_prefix: str | None = None, after: int = 0
    ) -> list[dict[str, Any]]:
        """Unread events as soon as there are any, or [] after ``timeout`` seconds. Cancelled
        (the client went away) it simply stops: nothing was consumed."""
        deadline = time.monotonic() + timeout
        self.waiters += 1
        try:
            async with self._changed:
                while True:
                    events = self.unread(call_prefix, after)
                    remaining = deadline - time.monotonic()
                    if events or remaining <= 0:
                        return events
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await self._changed.wait()
        finally:
            self.waiters -= 1
