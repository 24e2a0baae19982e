"""What inbound hands the calls: each message taken, inside inbound's transaction.

`CallIntake` is the `CallSink` of daemon/relays/inbound.py: a message of a call we have goes to
its core (held if out of order); a request rings in, within the gate's ring limits and the
call policy; a blocked peer's receipts, and our owner's NIP-17 replies, have their own way
in. It also tells inbound whose wraps are worth opening, and opens ratchet seals
(daemon/relays/secrecy.py). What the cores ask for is carried out by `CallService.apply`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ... import clock
from ...protocol import wire
from ...protocol.call import (
    ACTIVE,
    ENDED,
    INCOMING,
    OUTGOING,
    REORDER_WINDOW,
    RINGING,
    Call,
    CallError,
    EndedBy,
)
from ...protocol.events import AgentEvent
from ...protocol.limits import RingCounts
from ...sanitize import clean_text
from ...schema import esc_id
from ..notify.inbox import agent_event
from ..notify.owner import ESCALATION_TAG
from ..relays.directory import npub_of

if TYPE_CHECKING:
    from .calls import CallService

log = logging.getLogger("p2p.calls")

POLICY_REJECT_REASON = "not accepting calls right now"
FS_REQUIRED_REASON = "this agent takes only calls with forward secrecy"


class CallIntake:
    """The calls as inbound sees them: one `CallService`'s registry, taking messages."""

    def __init__(self, service: CallService) -> None:
        self.service = service

    @property
    def blocked(self) -> set[str]:
        return self.service.blocked

    @property
    def owner(self) -> str | None:
        return self.service.owner

    def reload(self) -> None:
        self.service.reload()

    def publish(self, work: list[Awaitable[None]]) -> None:
        self.service.publish(work)

    def receive(
        self, sender: str, message: wire.WireMessage, sent_at: int, now: float
    ) -> list[Awaitable[None]]:
        call = self.service.calls.get(message.call)
        if call is None:
            return self._ring_in(sender, message, sent_at, now)
        if call.peer != sender:
            log.warning("dropped %s for call %s from a key not in it", message.type, call.id[:8])
            self._count("not_in_call")
            return []
        held_before = bool(call.reorder)
        content = message.encode() if message.seq > call.recv_next else ""
        may_hold = self.service.held.room_for(len(content))
        effects = call.receive(message, now, may_hold)
        ready = False  # our side of a roster session's ratchet was set up just now
        if message.type == "accept" and call.forward_secrecy:
            self.service.outbound.secrecy.accepted(call, message)
        elif call.in_band_keys and message.seq == 1 and call.direction == INCOMING:
            ready = self.service.outbound.secrecy.responded(call, message)
        elif (
            message.type == "accept"
            and call.state == ACTIVE
            and self.service.config.require_forward_secrecy
        ):
            log.info("call %s: the peer answered without forward secrecy; ended", call.id[:8])
            self.service.store.add_entry(
                call.id, now, "out", "call_ended", {"reason": FS_REQUIRED_REASON}
            )
            effects += call.end(FS_REQUIRED_REASON, now)
        if message.seq in call.reorder:  # out of order: held durably until the gap fills
            self.service.held.hold(call, message.seq, content)
        elif held_before:
            self.service.held.release(call)
        if call.ack_due:
            self.service.store.after_commit(lambda: self.service.outbound.owe_ack(call))
        work = self.service.apply(call, effects, now)
        if call.in_band_keys:
            # What waited for the ratchet goes now, if it may (`require_forward_secrecy`);
            # and a responder answers under it at once, so the initiator, which has no
            # sending chain until it reads one, can send under it too (PROTOCOL.md 3.12.8).
            if call.id in self.service.outbound.ratchet_wait.calls:
                work += self.service.outbound.release_waiting(call)
            if ready and self.service.hooks is not None and call.state == ACTIVE:
                work += self.service.hooks.ratchet_ready(call, now)
        return work

    def out_of_reach(self, sender: str, message: wire.WireMessage) -> bool:
        """Whether `receive` would drop ``message`` for its order: too far ahead of its call,
        or ahead with no room (or no call state) to hold it. Inbound then fetches it again
        later instead of counting on the peer's re-sends."""
        call = self.service.calls.get(message.call)
        if call is None or call.peer != sender or message.type == "ack":
            return False
        gap = message.seq - call.recv_next
        if gap <= 0 or message.seq in call.reorder:
            return False
        if gap >= REORDER_WINDOW:
            return True
        return not (call.holds_out_of_order and self.service.held.room_for(len(message.encode())))

    def _ring_in(
        self, sender: str, message: wire.WireMessage, sent_at: int, now: float
    ) -> list[Awaitable[None]]:
        if message.type != "request":
            log.info("dropped %s for unknown call %s", message.type, message.call[:8])
            self._count("unknown_call")
            return []
        refused = self.service.gate.admit_request(sender, self._ring_counts(sender), now)
        if refused:
            log.info("dropped call request from %s: %s", sender[:12], refused)
            return []
        try:
            call, effects = Call.ring_in(message, sender, sent_at, now, self.service.limits)
        except CallError as exc:
            log.info("dropped request from %s: %s", sender[:12], exc)
            return []
        self.service.calls[call.id] = call
        self.service.peer_names[call.id] = self.service.directory.peer_name(
            sender, message.body["name"]
        )
        if not self.service.directory.announced(sender):
            self.service.records.unverified.add(call.id)  # its name is only its claim
        self.service.store.add_entry(call.id, sent_at, "in", "call_request", {"topic": call.topic})
        if not self._policy_allows(sender):
            log.info("call %s from %s refused by policy", call.id[:8], sender[:12])
            self._count("policy")
            effects = call.reject(POLICY_REJECT_REASON, now, by=EndedBy.POLICY)
            self.service.store.add_entry(
                call.id, now, "out", "call_rejected", {"reason": "call policy"}
            )
        elif (
            call.state == RINGING
            and self.service.config.require_forward_secrecy
            and not (call.peer_level >= wire.FS_LEVEL and call.peer_ek)
        ):
            log.info("call %s from %s refused: no forward secrecy", call.id[:8], sender[:12])
            self._count("no_forward_secrecy")
            effects = call.reject(FS_REQUIRED_REASON, now, by=EndedBy.POLICY)
            self.service.store.add_entry(
                call.id, now, "out", "call_rejected", {"reason": FS_REQUIRED_REASON}
            )
        if self.service.hooks is not None and call.state == RINGING:
            self.service.hooks.ring_in(call, message, now)
        if call.ack_due:
            self.service.store.after_commit(lambda: self.service.outbound.owe_ack(call))
        return self.service.apply(call, effects, now)

    # Forward secrecy (daemon/relays/secrecy.py) -----------------------------------------------

    def opener(self, now: float, max_skip: int | None = None) -> Any:
        return self.service.outbound.secrecy.opener(now, max_skip, self.service.calls)

    def flush_secrets(self, busy: set[str]) -> None:
        self.service.outbound.secrecy.flush(busy, self.service.calls)

    def ratcheted(self, call_id: str, sender: str, seq: int) -> bool:
        """Whether ``sender`` has the ratchet in this call for its message ``seq``: then
        whatever it sends that carries content must come under it (a downgrade is
        refused)."""
        call = self.service.calls.get(call_id)
        return call is not None and call.peer == sender and call.downgraded(seq)

    def ratchet_read(self, call_id: str, sender: str, seq: int) -> None:
        """``sender``'s message ``seq`` came under the ratchet of this call."""
        call = self.service.calls.get(call_id)
        if call is not None and call.peer == sender:
            call.ratchet_read(seq)

    def duplicate(self, call_id: str, sender: str) -> bool:
        """A ratchet message already read came again: owe the receipt (it was lost)."""
        call = self.service.calls.get(call_id)
        if call is None or call.peer != sender:
            return False
        call.duplicate_seen()
        self.service.outbound.owe_ack(call)
        return True

    def peer_of(self, call_id: str) -> str | None:
        """The peer of call ``call_id``, None if we have no such call."""
        call = self.service.calls.get(call_id)
        return call.peer if call is not None else None

    def lane_calls(self) -> list[tuple[str, str]]:
        """(call id, peer) of each call we placed or answered that has not ended: those
        whose wraps we know by their one-time key (protocol/lane.py)."""
        calls = self.service.calls.values()
        return [
            (call.id, call.peer)
            for call in calls
            if call.ended_at is None
            and (call.direction == OUTGOING or call.answered_at is not None)
        ]

    def familiar(self, pubkey: str) -> bool:
        """Known (below), or in any call with us (one ringing here included), or blocked
        (its receipts still count): a key whose wraps are worth opening in full."""
        return (
            self.known(pubkey)
            or pubkey in self.service.call_peers
            or pubkey in self.service.blocked
        )

    def known(self, pubkey: str) -> bool:
        """A contact, or a peer of a call we placed or answered."""
        return pubkey in self.service.contacts or pubkey in self.service.known_peers

    def _ring_counts(self, caller: str) -> RingCounts:
        stranger = not self.known(caller)
        ringing = strangers = from_caller = open_calls = 0
        for call in self.service.calls.values():
            if call.state == ENDED:
                continue
            rung_by_stranger = (
                call.state == RINGING and call.direction == INCOMING and not self.known(call.peer)
            )
            strangers += rung_by_stranger
            from_caller += rung_by_stranger and call.peer == caller
            if stranger or not rung_by_stranger:  # a known caller does not count them
                ringing += call.state == RINGING
                open_calls += 1
        return RingCounts(stranger, ringing, open_calls, strangers, from_caller)

    def receive_from_blocked(self, sender: str, message: wire.WireMessage) -> None:
        """A blocked peer's receipts still end our re-sends of the `end` that told it."""
        call = self.service.calls.get(message.call)
        if call is not None and call.peer == sender and call.state == ENDED:
            self.service.apply(call, call.receive_ack_only(message), clock.now())

    def owner_reply(self, text: str, now: float) -> None:
        """A NIP-17 message from our owner: an answer to the escalation it names, or the latest."""
        named = ESCALATION_TAG.search(text)
        found = self.service.store.escalation_for_reply(named.group(1) if named else None)
        escalation_id, call_id = found if found else (None, None)
        if escalation_id:
            self.service.store.mark_answered(escalation_id)
        text = clean_text(text)[: wire.TEXT_PART_BYTES]
        fields = {"escalation_id": esc_id(escalation_id), "text": text}
        owner_npub = npub_of(self.service.owner or "")
        self.service.inbox.emit(
            agent_event(AgentEvent.OWNER_REPLY, call_id, owner_npub, "owner", now, fields), now
        )
        call = self.service.calls.get(call_id or "")
        if call is not None:
            self.service.store.add_entry(call.id, now, "owner", "owner_reply", {"text": text})
            if call.state == ENDED:
                self.service.store.after_commit(
                    lambda: self.service.records.write_transcript(call, self.service.peer_names)
                )

    def _count(self, reason: str) -> None:
        self.service.dropped[reason] = self.service.dropped.get(reason, 0) + 1

    def _policy_allows(self, caller: str) -> bool:
        policy = self.service.config.call_policy
        return policy == "anyone" or (policy == "contacts" and caller in self.service.contacts)
