"""Events for the agent: built in one place, stored, waited on, and consumed exactly once.

An event stays unread until its reader acknowledges it (`ack`), which a client does only
after it has handed the event over (the CLI: printed and flushed). A `wait` that is
killed, times out at the agent's side, or writes into a closed pipe therefore loses
nothing: the next `inbox` shows the event again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from ...config import WakeConfig
from ...protocol.events import AgentEvent
from ...schema import peer
from ...store import StorageError, Store
from .hooks import Waker

log = logging.getLogger("p2p.inbox")


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


# Events one `inbox`/`wait` returns at most (`max` asks for fewer).
PAGE = 1000
# Seconds between attempts to save read marks the disk refused (a full disk).
RETRY_MARKS = 2.0


class AgentInbox:
    """Unread events, the clients blocked in `wait`, and the wake hook.

    A read mark the disk will not take (a full disk) is kept in memory and saved as soon as
    it can be: an event the agent was shown is never shown again, whatever the disk does
    (only a daemon that dies before the disk has room forgets the mark)."""

    def __init__(
        self,
        store: Store,
        wake: WakeConfig | None = None,
        hook_timeout: float = 10.0,
        keep_read: bool = True,
    ) -> None:
        self.store = store
        # `keep_transcripts = false`: an event the agent has is deleted, not kept marked
        # read (its text is the call's, and a stolen home would read it).
        self.erase = not keep_read
        self.waiters = 0
        # The wake hook asks how many clients wait and whether an event is still unread.
        self.waker: Waker | None = None
        if wake is not None:
            self.waker = Waker(wake, hook_timeout, lambda: self.waiters, self.is_unread)
        self._changed = asyncio.Condition()
        self.read_unsaved: set[int] = set()
        self._retry: asyncio.TimerHandle | None = None

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

    def unread(
        self, call_prefix: str | None = None, after: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Unread events, oldest first: at most ``limit`` (and `PAGE`)."""
        self.save_marks()
        wanted = min(limit or PAGE, PAGE)
        events = self.store.unread(call_prefix, after, wanted + len(self.read_unsaved))
        if self.read_unsaved:
            events = [e for e in events if e["event_id"] not in self.read_unsaved]
        return events[:wanted]

    def is_unread(self, event_id: int) -> bool:
        return event_id not in self.read_unsaved and self.store.is_unread(event_id)

    def unread_counts(self) -> dict[str, int]:
        self.save_marks()
        counts = self.store.unread_counts()
        if self.read_unsaved:
            for event in self.store.unread(limit=len(self.read_unsaved) + PAGE):
                if event["event_id"] in self.read_unsaved and counts.get(event["type"]):
                    counts[event["type"]] -= 1
            counts = {kind: n for kind, n in counts.items() if n}
        return counts

    def ack(self, event_ids: list[int]) -> int:
        """The client has the events: they leave the unread set. Returns how many did."""
        fresh = [i for i in event_ids if i not in self.read_unsaved]
        try:
            with self.store.transaction():
                return self.store.mark_read(fresh, self.erase)
        except StorageError as exc:
            # They were shown: they are read, whether or not the disk can say so yet.
            log.warning(
                "keeping %d read marks in memory until they can be saved: %s", len(fresh), exc
            )
            self.read_unsaved.update(fresh)
            self._schedule_retry()
            return len(fresh)

    def save_marks(self) -> bool:
        """Save the read marks the disk refused before; True once none is left unsaved."""
        if not self.read_unsaved:
            return True
        try:
            with self.store.transaction():
                self.store.mark_read(sorted(self.read_unsaved), self.erase)
        except StorageError:
            self._schedule_retry()
            return False
        log.info("saved %d read marks kept in memory", len(self.read_unsaved))
        self.read_unsaved.clear()
        return True

    def _schedule_retry(self) -> None:
        if self._retry is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test): the next read saves them

        def retry() -> None:
            self._retry = None
            self.save_marks()

        self._retry = loop.call_later(RETRY_MARKS, retry)

    async def wait(
        self,
        timeout: float,
        call_prefix: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Unread events as soon as there are any, or [] after ``timeout`` seconds. Cancelled
        (the client went away) it simply stops: nothing was consumed."""
        deadline = time.monotonic() + timeout
        self.waiters += 1
        try:
            async with self._changed:
                while True:
                    events = self.unread(call_prefix, after, limit)
                    remaining = deadline - time.monotonic()
                    if events or remaining <= 0:
                        return events
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await self._changed.wait()
        finally:
            self.waiters -= 1
