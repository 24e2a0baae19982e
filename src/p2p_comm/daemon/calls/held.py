"""Messages that came before their predecessors, held on disk until the gap fills.

Only calls we placed or answered hold any (`Call.holds_out_of_order`): a stranger's ringing
call, or an ended one, holds nothing. All calls together hold at most `max_held_bytes`; the
call core is told whether there is room (`room_for`) before it takes an early message.
"""

from __future__ import annotations

import contextlib
import logging

from ...protocol import wire
from ...protocol.call import Call
from ...store import Store

log = logging.getLogger("p2p.calls")


class HeldMessages:
    """The held rows, and their sizes by call, kept in step."""

    def __init__(self, store: Store, limit: int) -> None:
        self.store = store
        self.limit = limit
        self._sizes: dict[str, dict[int, int]] = {}  # call -> seq -> bytes

    @property
    def bytes(self) -> int:
        return sum(sum(seqs.values()) for seqs in self._sizes.values())

    def room_for(self, size: int) -> bool:
        return self.bytes + size <= self.limit

    def load(self, calls: dict[str, Call]) -> None:
        """Into each call's reorder buffer, what it holds; rows of calls that hold nothing
        now are deleted."""
        self._sizes = {}
        for call_id, seq, content in self.store.held():
            holder = calls.get(call_id)
            if holder is not None and seq >= holder.recv_next and holder.holds_out_of_order:
                with contextlib.suppress(wire.WireError):
                    holder.reorder[seq] = wire.decode(content)
                    self._sizes.setdefault(call_id, {})[seq] = len(content)
        try:  # after a failed transaction (a full disk): next time
            self.store.drop_held_except(set(self._sizes))
        except Exception as exc:
            log.warning("could not drop held rows of ended calls: %s", exc)

    def hold(self, call: Call, seq: int, content: str) -> None:
        self.store.hold(call.id, seq, content)
        self._sizes.setdefault(call.id, {})[seq] = len(content)

    def release(self, call: Call) -> None:
        """Forget the held messages the call has taken (all of them once it ended)."""
        seqs = self._sizes.get(call.id)
        if not seqs:
            return
        below = call.recv_next if call.holds_out_of_order else 2**62
        self.store.release(call.id, below)
        for seq in [s for s in seqs if s < below]:
            del seqs[seq]
        if not seqs:
            del self._sizes[call.id]
