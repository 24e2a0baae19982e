"""Messages that wait for their call's ratchet (`require_forward_secrecy`).

A group's session made from a roster sets its ratchet up in band (docs/PROTOCOL.md
3.12.8): until each side has read the other's key, its messages would go sealed to the
identity keys only. An agent that requires forward secrecy does not send content so: the
message is kept in the outbox as waiting, unpublished (a retransmission skips it too), and
everything after it waits behind it, so the peer never reads plain content after a ratchet
message. Once the session can seal, the waiting messages are sealed in order and queued.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from ...config import Config
from ...protocol.call import OUTGOING, Call
from ...protocol.wire import WireMessage
from ...store import Store
from .secrecy import RATCHETED_TYPES, Secrecy

log = logging.getLogger("p2p.outbound")


async def nothing() -> None:
    """What is published for a message that waits: nothing, yet."""


def in_order(works: list[Awaitable[None]]) -> Awaitable[None]:
    """One publication of ``works``, each after the one before (the waiting messages a
    send releases go before it)."""
    if len(works) == 1:
        return works[0]

    async def each() -> None:
        for work in works:
            await work

    return each()


class RatchetWait:
    """Which calls have messages waiting for the ratchet, and sealing them when it is up."""

    def __init__(self, config: Config, store: Store, secrecy: Secrecy) -> None:
        self.config = config
        self.store = store
        self.secrecy = secrecy
        self.calls: set[str] = set()  # calls with waiting messages

    def load(self) -> None:
        self.calls = {call_id for call_id, *_ in self.store.outbox_waiting()}

    def waits(self, call: Call, message: WireMessage) -> bool:
        """Whether ``message``, which the ratchet cannot seal now, must wait: content on a
        roster session of an agent that requires forward secrecy, and whatever comes after
        a waiting message. Not the initiator's first message: it carries the key that sets
        the ratchet up (a `roster` greeting, in practice)."""
        if not (self.config.require_forward_secrecy and call.in_band_keys):
            return False
        if message.type not in RATCHETED_TYPES or (call.direction == OUTGOING and message.seq == 1):
            return False
        return message.type != "roster" or call.id in self.calls

    def keep(self, call: Call, message: WireMessage, content: str, now: float) -> None:
        """Keep ``message`` in the outbox, unpublished (inside the caller's transaction)."""
        self.store.outbox_put(call.id, message.seq, message.type, content, now, waiting=True)
        # At once, not after the commit: what this transaction queues after it waits too (a
        # rollback leaves a name with no waiting row, which `release` clears).
        self.calls.add(call.id)
        log.info("call %s: seq %s waits for the ratchet", call.id[:8], message.seq)

    def release(self, call: Call) -> list[tuple[int, str, int, str]]:
        """(seq, content, rumor time, ratchet ciphertext) of the waiting messages the
        ratchet seals now, in order, each queued in the outbox (inside the caller's
        transaction); the rest waits on."""
        if call.id not in self.calls:
            return []
        sealed_now: list[tuple[int, str, int, str]] = []
        left = False
        for _, seq, content, rumor_at in self.store.outbox_waiting(call.id):
            sealed = self.secrecy.seal(call, content, int(rumor_at))
            if sealed is None:
                left = True
                break
            self.store.outbox_release(call.id, seq, sealed)
            sealed_now.append((seq, content, int(rumor_at), sealed))
        if not left:
            self.store.after_commit(lambda: self.calls.discard(call.id))
        if sealed_now:
            log.info("call %s: %s waiting message(s) sealed now", call.id[:8], len(sealed_now))
        return sealed_now
