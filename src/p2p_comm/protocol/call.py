"""The call state machine: ringing, active, ended; sequencing, receipts, refusals, retransmits.

Pure: no I/O, no clock. Every method takes ``now`` and returns effects for the shell
(`events.py`); every change of a call's state happens here. Each side numbers its own
sequenced messages 1, 2, 3, ...; the receiver delivers them in order exactly once and
acknowledges cumulatively (the ``ack`` field of any message, or a bare ``ack``). The
sender retransmits unacknowledged messages with exponential backoff until acknowledged.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from .events import (
    Acked,
    AgentEvent,
    Deliver,
    Dropped,
    Effect,
    FileComplete,
    Retransmit,
    Roster,
    Transmit,
    WriteChunk,
)
from .wire import (
    FEATURE_LEVEL,
    FILE_CHUNK_BYTES,
    FS_LEVEL,
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    REFUSABLE,
    TEXT_PART_BYTES,
    WireMessage,
    chunk_count,
    split_text,
)


class State(StrEnum):
    """Where a call is."""

    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"


class Direction(StrEnum):
    """Who rang whom."""

    OUTGOING = "outgoing"
    INCOMING = "incoming"


class Outcome(StrEnum):
    """How an ended call ended ("" while it is not ended)."""

    NONE = ""
    COMPLETED = "completed"
    REJECTED = "rejected"
    MISSED = "missed"
    CANCELLED = "cancelled"


class EndedBy(StrEnum):
    """Which side, or what, ended the call."""

    NONE = ""
    LOCAL = "local"
    PEER = "peer"
    TIMEOUT = "timeout"
    POLICY = "policy"
    BLOCKED = "blocked"


# Kept for callers that use the short names.
RINGING, ACTIVE, ENDED = State.RINGING, State.ACTIVE, State.ENDED
OUTGOING, INCOMING = Direction.OUTGOING, Direction.INCOMING

FIRST_RETRY = 2.0
MAX_RETRY = 60.0
# After a call ends we keep re-sending what the peer has not receipted (its last
# messages and our `end`) for this long, so a peer offline for hours still learns.
RETRY_AFTER_END = 2 * 86400.0
REORDER_WINDOW = 4096
# Only the oldest unacknowledged messages are re-sent: receipts are cumulative, so the
# rest cannot be taken before these anyway, and a peer that was away fetches the originals.
RETRANSMIT_WINDOW = 128
# While the peer's receipts advance it is draining a backlog (what the relay kept for it):
# a re-send is one more fresh wrap for it to open. Re-sends wait until receipts have not
# advanced for this long; a peer back online gets this long to start receipting.
RECEIPT_HOLD = 4.0
# A request older than its ring time plus this margin is a replay of a call long over: it
# is shown as missed. The margin tolerates clocks up to ten minutes apart.
STALE_MARGIN = 600.0
BLOCKED_REASON = "the other agent ended the conversation"


@dataclass(frozen=True)
class Limits:
    """Bounds on what a peer may make us accept."""

    max_message_bytes: int = 256 * 1024
    max_file_bytes: int = 10 * 1024 * 1024
    ring_timeout: float = 60.0


@dataclass
class Pending:
    """One of our messages the peer has not yet receipted (not persisted: rebuilt from
    the outbox at start, with a fresh schedule)."""

    attempts: int
    next_at: float
    # Taken by a relay when last published: only then may the peer be fetching it, and
    # its re-send wait while the peer's receipts advance.
    published: bool = True


@dataclass
class Inbound:
    """A file being received."""

    name: str
    size: int
    sha256: str
    count: int
    next_index: int = 0
    chunk: int = FILE_CHUNK_BYTES


@dataclass
class Call:
    """One call seen from our side. `to_dict`/`from_dict` persist all but the reorder
    buffer and the retransmit schedule, which the shell keeps in its own tables."""

    id: str
    peer: str
    direction: Direction
    topic: str
    created_at: float
    ring_deadline: float
    state: State = State.RINGING
    answered_at: float | None = None
    ended_at: float | None = None
    outcome: Outcome = Outcome.NONE
    end_reason: str = ""
    ended_by: EndedBy = EndedBy.NONE
    next_seq: int = 1
    recv_next: int = 1
    peer_level: int = 1  # the peer's `pv`: what it understands (docs/PROTOCOL.md)
    delivered: int = 0  # our sequenced messages the peer has receipted
    refused: int = 0  # of those, how many it refused
    # Feature level 5 (docs/PROTOCOL.md 3.12): both sides gave an ephemeral key, so every
    # message after the set-up travels under the call ratchet. `peer_ek` is the caller's
    # key from its request, kept until we answer (public: no secret).
    forward_secrecy: bool = False
    peer_ek: str = ""
    # The callee's signed prekey (hex) our request was encrypted to, if it announced one:
    # the request then travels under the ratchet, and its seal names the prekey.
    prekey: str = ""
    # A group's pairwise session made from a roster (no request or accept on the wire): its
    # ratchet is set up by its first messages (docs/PROTOCOL.md 3.12.8). `peer_ratchet_from`
    # is the first seq the peer sent under the ratchet: content in a plain seal after it is
    # a downgrade (before it, the peer had no ratchet yet).
    in_band_keys: bool = False
    peer_ratchet_from: int = 0
    # Our seqs the peer may still refuse, as sorted [first, last] runs: messages, files and
    # escalations we sent, less those it already refused.
    refusable: list[list[int]] = field(default_factory=list)
    ack_due: bool = False
    text_parts: list[str] = field(default_factory=list)
    files: dict[str, Inbound] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    pending: dict[int, Pending] = field(default_factory=dict, repr=False)
    reorder: dict[int, WireMessage] = field(default_factory=dict, repr=False)
    _due: float | None = field(default=None, repr=False)

    # Construction -----------------------------------------------------------------

    @classmethod
    def start(
        cls, call_id: str, peer: str, topic: str, my_name: str, now: float, limits: Limits
    ) -> tuple[Call, list[Effect]]:
        """We ring ``peer``."""
        call = cls(call_id, peer, OUTGOING, topic, now, now + limits.ring_timeout, limits=limits)
        return call, [call._send("request", now, topic=topic, name=my_name, pv=FEATURE_LEVEL)]

    @classmethod
    def ring_in(
        cls, message: WireMessage, peer: str, sent_at: float, now: float, limits: Limits
    ) -> tuple[Call, list[Effect]]:
        """A request from ``peer`` arrived (``sent_at`` is the rumor's own timestamp, by the
        caller's clock: used only to spot a stale replay; the ring time is ours)."""
        if message.type != "request" or message.seq != 1:
            raise CallError("a call starts with a request of seq 1.")
        topic = message.body["topic"]
        call = cls(message.call, peer, INCOMING, topic, now, now + limits.ring_timeout)
        call.limits = limits
        call.peer_level = int(message.body.get("pv", 1))
        if call.peer_level >= FS_LEVEL:
            call.peer_ek = str(message.body.get("ek", ""))
        call.recv_next = message.seq + 1
        call.ack_due = True
        # The caller's claimed name is not repeated: the event's `peer` names it (the name
        # it announced, else this one).
        request = Deliver(AgentEvent.CALL_REQUEST, {"topic": topic})
        if now - sent_at > limits.ring_timeout + STALE_MARGIN:
            call._finish(Outcome.MISSED, EndedBy.TIMEOUT, now, "no answer")
            return call, [request, Deliver(AgentEvent.CALL_MISSED, {"reason": "the call rang out"})]
        return call, [request]

    @classmethod
    def answered_session(
        cls,
        call_id: str,
        peer: str,
        direction: Direction,
        topic: str,
        now: float,
        limits: Limits,
        peer_level: int,
    ) -> Call:
        """A call that starts answered, with no request on the wire: a group's pairwise
        session, which both sides derive from the roster."""
        call = cls(call_id, peer, direction, topic, now, now, limits=limits)
        call.state = State.ACTIVE
        call.answered_at = now
        call.peer_level = peer_level
        call.in_band_keys = True
        return call

    # Forward secrecy (the ratchet itself lives in daemon/relays/secrecy.py) -----------

    def ratchet_started(self) -> None:
        """A session made from a roster has its ratchet: we sent our key in our first
        message (the initiator), or took the initiator's from its first (the responder)."""
        if self.in_band_keys:
            self.forward_secrecy = True

    def sealed_to_prekey(self, prekey: str) -> None:
        """Our request is encrypted to the callee's signed prekey ``prekey`` (hex): it goes
        under the ratchet, in a seal that names the prekey."""
        if self.direction == OUTGOING:
            self.prekey = prekey

    def ratchet_read(self, seq: int) -> None:
        """The peer's message ``seq`` came under the ratchet."""
        if not self.peer_ratchet_from or seq < self.peer_ratchet_from:
            self.peer_ratchet_from = seq

    def downgraded(self, seq: int) -> bool:
        """Whether content of the peer's ``seq`` in a plain (NIP-44) seal is a downgrade: in
        a call with forward secrecy, always; in a session made from a roster, only after the
        peer's first ratchet message (before it, it had no ratchet to send with)."""
        if not self.forward_secrecy:
            return False
        return not self.in_band_keys or 0 < self.peer_ratchet_from < seq

    # Local actions ------------------------------------------------------------------

    def accept(self, now: float) -> list[Effect]:
        self._require(self.direction == INCOMING and self.state == RINGING, "is not ringing here")
        self.state = State.ACTIVE
        self.answered_at = now
        self.forward_secrecy = self.peer_level >= FS_LEVEL and bool(self.peer_ek)
        return [self._send("accept", now, pv=FEATURE_LEVEL)]

    def reject(self, reason: str, now: float, by: EndedBy = EndedBy.LOCAL) -> list[Effect]:
        """Turn down a ringing incoming call (``by`` POLICY when the agent was never rung)."""
        self._require(self.direction == INCOMING and self.state == RINGING, "is not ringing here")
        self._finish(Outcome.REJECTED, by, now, reason)
        return [self._send("reject", now, reason=reason)]

    def close_quietly(self, reason: str, now: float) -> None:
        """End the call without a word on the wire (a group session with a member that never
        confirmed: it may not exist, and nothing goes to what we do not believe)."""
        if self.state != State.ENDED:
            self._finish(Outcome.COMPLETED, EndedBy.LOCAL, now, reason)

    def send_text(self, text: str, now: float, part_bytes: int = TEXT_PART_BYTES) -> list[Effect]:
        """Text in parts of at most ``part_bytes`` (smaller where the peer's relays are)."""
        self._require(self.state == ACTIVE, "is not active")
        self._check_size(len(text.encode()), self.limits.max_message_bytes, "message")
        parts = split_text(text, min(part_bytes, TEXT_PART_BYTES))
        return [
            self._send("message", now, text=part, part=index, parts=len(parts))
            for index, part in enumerate(parts, 1)
        ]

    def send_file(
        self,
        fid: str,
        name: str,
        data: bytes,
        sha256: str,
        now: float,
        chunk_bytes: int = FILE_CHUNK_BYTES,
    ) -> list[Effect]:
        """The file in chunks of ``chunk_bytes`` (to fit the peer's relays); a peer below
        feature level 2 only knows FILE_CHUNK_BYTES."""
        self._require(self.state == ACTIVE, "is not active")
        self._check_size(len(data), self.limits.max_file_bytes, "file")
        chunk = max(MIN_CHUNK_BYTES, min(chunk_bytes, MAX_CHUNK_BYTES))
        if self.peer_level < 2:
            chunk = FILE_CHUNK_BYTES
        count = chunk_count(len(data), chunk)
        # The field only when it differs: the default format stays as version 1 knows it.
        extra = {"chunk": chunk} if chunk != FILE_CHUNK_BYTES else {}
        return [
            self._send(
                "file",
                now,
                fid=fid,
                name=name,
                size=len(data),
                sha256=sha256,
                index=index,
                count=count,
                data=data[index * chunk : (index + 1) * chunk],
                **extra,
            )
            for index in range(count)
        ]

    def escalate(self, text: str, now: float) -> list[Effect]:
        self._require(self.state == ACTIVE, "is not active")
        self._check_size(len(text.encode()), 12_000, "escalation")
        return [self._send("escalation", now, text=text)]

    def end(
        self, reason: str, now: float, by: EndedBy = EndedBy.LOCAL, everyone: bool = False
    ) -> list[Effect]:
        """Hang up (``by`` BLOCKED when the agent blocked the peer: the peer hears a neutral
        reason; ``everyone``: the starter ends a group call for all, feature level 3)."""
        self._require(self.state != ENDED, "has already ended")
        was_ringing_out = self.state == RINGING and self.direction == OUTGOING
        outcome = Outcome.CANCELLED if was_ringing_out else Outcome.COMPLETED
        self._finish(outcome, by, now, reason)
        told = BLOCKED_REASON if by == EndedBy.BLOCKED else reason
        extra = {"all": True} if everyone else {}
        return [self._send("end", now, reason=told, **extra)]

    def send_roster(self, body: dict[str, Any], now: float) -> list[Effect]:
        """Announce a group's roster to the peer (feature level 3)."""
        self._require(self.state == ACTIVE, "is not active")
        return [self._send("roster", now, **body)]

    def request_extra(
        self, effects: list[Effect], extra: dict[str, Any], kind: str = "request"
    ) -> list[Effect]:
        """Our `request` (from `start`) with ``extra`` fields: a group invitation; or our
        message of type ``kind`` with them (the ratchet's `ek` on `request` and `accept`)."""
        return [
            Transmit(replace(e.message, body={**e.message.body, **extra}))
            if isinstance(e, Transmit) and e.message.type == kind
            else e
            for e in effects
        ]

    def file_verified(self, fields: dict[str, Any]) -> list[Effect]:
        """The shell checked and placed a received file: tell the agent."""
        return [Deliver(AgentEvent.FILE, fields)]

    def file_failed(self, seq: int, name: str, reason: str, now: float) -> list[Effect]:
        """A received file failed its check: the peer learns it was not delivered."""
        return self._refuse(seq, "file", name, reason, now)

    # Time ---------------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self.state == RINGING and now >= self.ring_deadline:
            self._finish(Outcome.MISSED, EndedBy.TIMEOUT, now, "no answer")
            reason = "nobody answered" if self.direction == OUTGOING else "the call rang out"
            effects.append(Deliver(AgentEvent.CALL_MISSED, {"reason": reason}))
            if self.direction == OUTGOING:
                effects.append(self._send("end", now, reason="no answer"))
        if self.ended_at is not None and now > self.ended_at + RETRY_AFTER_END:
            self.pending.clear()
        for seq in self._window():
            pending = self.pending[seq]
            if now >= pending.next_at:
                pending.attempts += 1
                pending.next_at = now + min(MAX_RETRY, FIRST_RETRY * 2 ** (pending.attempts - 1))
                effects.append(Retransmit(seq))
        self._due = None
        return effects

    def nudge(self, now: float) -> bool:
        """The peer is reachable again: messages already retried twice go out soon (unless
        its receipts start to advance first: it is catching up), with a fresh backoff.
        Returns True if anything was brought forward."""
        moved = False
        soon = now + RECEIPT_HOLD
        for seq in self._window():
            pending = self.pending[seq]
            if pending.attempts >= 2 and pending.next_at > soon:
                pending.attempts = 1
                pending.next_at = soon
                moved = True
        self._due = None
        return moved

    def mark_published(self, seq: int, published: bool) -> None:
        """Whether a relay took our message ``seq`` when we last published it."""
        pending = self.pending.get(seq)
        if pending is not None:
            pending.published = published

    def next_deadline(self) -> float | None:
        if self._due is None and self.pending:
            self._due = min(self.pending[seq].next_at for seq in self._window())
        times = [self._due] if self.pending and self._due is not None else []
        if self.state == RINGING:
            times.append(self.ring_deadline)
        return min(times) if times else None

    def restore_pending(self, seqs: list[int], now: float) -> None:
        """At start: our messages still unreceipted (from the outbox) go out again soon."""
        self.pending = {seq: Pending(attempts=0, next_at=now + 0.5) for seq in seqs}
        self._due = None

    # Inbound ------------------------------------------------------------------------

    @property
    def holds_out_of_order(self) -> bool:
        """Whether a message that arrives before its predecessors is kept for them: only
        in a call we placed or answered, and only until it ends. A stranger's ringing call
        has no gap worth waiting for (its caller sends nothing but `end` before our answer),
        and holding for it let any key fill our disk."""
        return self.state != ENDED and (self.direction == OUTGOING or self.answered_at is not None)

    def receive(self, message: WireMessage, now: float, may_hold: bool = True) -> list[Effect]:
        """Take one message from the peer (already verified to come from it). ``may_hold``:
        whether the shell has room to hold it, should it come before its predecessors."""
        effects: list[Effect] = self._take_ack(message.ack, now)
        if message.type == "ack":
            return effects
        if message.seq < self.recv_next or message.seq in self.reorder:
            self.ack_due = True  # a duplicate: our receipt was probably lost
            return effects
        if message.seq - self.recv_next >= REORDER_WINDOW:
            return [*effects, Dropped(f"seq {message.seq} is too far ahead of {self.recv_next}")]
        if message.seq != self.recv_next and not (may_hold and self.holds_out_of_order):
            # Not receipted: the peer re-sends it, and it is taken once the gap has filled.
            return [*effects, Dropped(f"seq {message.seq} came before {self.recv_next}; not held")]
        self.reorder[message.seq] = message
        self.ack_due = True
        while self.recv_next in self.reorder:
            effects += self._apply(self.reorder.pop(self.recv_next), now)
            self.recv_next += 1
        return effects

    def duplicate_seen(self) -> None:
        """A ratchet message whose key is already used came again (a retransmission whose
        receipt was lost): it cannot be read twice, so only the receipt is owed."""
        self.ack_due = True

    def receive_ack_only(self, message: WireMessage) -> list[Effect]:
        """From a peer we blocked: only its receipts still count (so our `end` stops)."""
        return self._take_ack(message.ack)

    def take_ack(self) -> WireMessage | None:
        """A bare receipt if one is owed and nothing carried it; call once per inbound batch."""
        if not self.ack_due:
            return None
        self.ack_due = False
        return WireMessage("ack", self.id, 0, ack=self.recv_next - 1)

    @property
    def unacked(self) -> int:
        return len(self.pending)

    # Persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _PERSISTED}
        data["text_parts"] = list(self.text_parts)
        data["refusable"] = [list(run) for run in self.refusable]
        data["files"] = {fid: asdict(f) for fid, f in self.files.items()}
        data["limits"] = asdict(self.limits)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Call:
        known = {name for name in _PERSISTED} | {"text_parts", "files", "limits", "refusable"}
        data = {key: value for key, value in data.items() if key in known}
        if "refusable" not in data:  # saved before we kept track: any seq we sent, once
            data["refusable"] = [[1, data["next_seq"] - 1]] if data["next_seq"] > 1 else []
        data["files"] = {fid: Inbound(**f) for fid, f in data["files"].items()}
        data["limits"] = Limits(**data["limits"])
        data["state"] = State(data["state"])
        data["direction"] = Direction(data["direction"])
        data["outcome"] = Outcome(data.get("outcome", ""))
        data["ended_by"] = EndedBy(data.get("ended_by", ""))
        return cls(**data)

    # Internals --------------------------------------------------------------------------

    def _window(self) -> list[int]:
        if len(self.pending) <= RETRANSMIT_WINDOW:
            return sorted(self.pending)
        return heapq.nsmallest(RETRANSMIT_WINDOW, self.pending)

    def _require(self, condition: bool, problem: str) -> None:
        if not condition:
            raise CallError(f"call {self.id[:8]} {problem}.")

    def _check_size(self, size: int, limit: int, what: str) -> None:
        if size > limit:
            raise CallError(
                f"the {what} is {size} bytes, over the limit of {limit} bytes.", "too_large"
            )

    def _send(self, kind: str, now: float, **body: Any) -> Transmit:
        seq = self.next_seq
        self.next_seq += 1
        if kind in REFUSABLE:
            if self.refusable and self.refusable[-1][1] == seq - 1:
                self.refusable[-1][1] = seq
            else:
                self.refusable.append([seq, seq])
        next_at = now + FIRST_RETRY
        self.pending[seq] = Pending(attempts=0, next_at=next_at)
        if self._due is not None and len(self.pending) <= RETRANSMIT_WINDOW:
            self._due = min(self._due, next_at)
        self.ack_due = False  # this message carries our receipt
        return Transmit(WireMessage(kind, self.id, seq, ack=self.recv_next - 1, body=body))

    def _take_refusable(self, seq: int) -> bool:
        """Whether the peer may refuse our ``seq`` (then it may not again)."""
        at = bisect.bisect_right(self.refusable, seq, key=lambda run: run[0]) - 1
        if at < 0 or seq > self.refusable[at][1]:
            return False
        first, last = self.refusable[at]
        self.refusable[at : at + 1] = [
            r for r in ([first, seq - 1], [seq + 1, last]) if r[0] <= r[1]
        ]
        return True

    def _take_ack(self, upto: int, now: float | None = None) -> list[Effect]:
        done = tuple(s for s in self.pending if s <= upto) if self.pending else ()
        if not done:
            return []
        for seq in done:
            del self.pending[seq]
        self.delivered += len(done)
        self._due = None
        if now is not None:  # receipts advance: hold the re-sends of what is left
            for seq in self._window():
                pending = self.pending[seq]
                if pending.published:
                    pending.next_at = max(pending.next_at, now + RECEIPT_HOLD)
        return [Acked(done)]

    def _finish(self, outcome: Outcome, by: EndedBy, now: float, reason: str) -> None:
        self.reorder.clear()  # nothing is held for an ended call (`holds_out_of_order`)
        self.state = State.ENDED
        self.ended_at = now
        self.outcome = outcome
        self.ended_by = by
        self.end_reason = reason

    def _refuse(self, seq: int, what: str, name: str, reason: str, now: float) -> list[Effect]:
        """Refuse the peer's message ``seq``: an explicit `refuse` to peers that understand
        it (feature level 2), otherwise only our log knows."""
        dropped = Dropped(f"refused {what} seq {seq}: {reason}")
        if self.peer_level < 2 or self.state == ENDED:
            return [dropped]
        return [dropped, self._send("refuse", now, ref=seq, what=what, name=name, reason=reason)]

    def _apply(self, message: WireMessage, now: float) -> list[Effect]:
        handler = _HANDLERS.get(message.type)
        if handler is None:
            return [Dropped(f"unexpected {message.type} in call {self.id[:8]}")]
        return handler(self, message, now)

    def _on_accept(self, message: WireMessage, now: float) -> list[Effect]:
        if self.direction != OUTGOING or self.state != RINGING:
            return [Dropped(f"accept while {self.state}")]
        self.state = State.ACTIVE
        self.answered_at = now
        self.peer_level = int(message.body.get("pv", 1))
        self.forward_secrecy = self.peer_level >= FS_LEVEL and "ek" in message.body
        return [Deliver(AgentEvent.CALL_ACCEPTED, {})]

    def _on_reject(self, message: WireMessage, now: float) -> list[Effect]:
        if self.direction != OUTGOING or self.state != RINGING:
            return [Dropped(f"reject while {self.state}")]
        self._finish(Outcome.REJECTED, EndedBy.PEER, now, message.body["reason"])
        return [Deliver(AgentEvent.CALL_REJECTED, {"reason": message.body["reason"]})]

    def _on_message(self, message: WireMessage, now: float) -> list[Effect]:
        if self.answered_at is None:
            return self._refuse(message.seq, "message", "", "the call was not answered", now)
        body = message.body
        if body["part"] != len(self.text_parts) + 1:
            self.text_parts = []
            return [Dropped("message part out of order")]
        self.text_parts.append(body["text"])
        if sum(len(p.encode()) for p in self.text_parts) > self.limits.max_message_bytes:
            self.text_parts = []
            limit = self.limits.max_message_bytes
            return self._refuse(message.seq, "message", "", f"over the {limit}-byte limit", now)
        if body["part"] < body["parts"]:
            return []
        text, self.text_parts = "".join(self.text_parts), []
        return [Deliver(AgentEvent.MESSAGE, {"text": text})]

    def _on_file(self, message: WireMessage, now: float) -> list[Effect]:
        body = message.body
        fid, name = body["fid"], body["name"]
        if self.answered_at is None:
            if body["index"] != 0:
                return [Dropped(f"file {fid[:8]} chunk before the call was answered")]
            return self._refuse(message.seq, "file", name, "the call was not answered", now)
        inbound = self.files.get(fid)
        if inbound is None:
            if body["index"] != 0:
                return [Dropped(f"file {fid[:8]} chunk {body['index']} without its start")]
            if body["size"] > self.limits.max_file_bytes:
                limit = self.limits.max_file_bytes
                reason = f"the file is {body['size']} bytes, over the receiver's limit of {limit}"
                return self._refuse(message.seq, "file", name, reason, now)
            chunk = body.get("chunk", FILE_CHUNK_BYTES)
            if body["count"] != chunk_count(body["size"], chunk):
                return [Dropped("file chunk count does not match its size")]
            inbound = Inbound(name, body["size"], body["sha256"], body["count"], chunk=chunk)
            self.files[fid] = inbound
        if (
            body["index"],
            body["count"],
            body["size"],
            body["sha256"],
            body.get("chunk", FILE_CHUNK_BYTES),
        ) != (inbound.next_index, inbound.count, inbound.size, inbound.sha256, inbound.chunk):
            del self.files[fid]
            return [Dropped(f"file {fid[:8]} chunk does not fit the file")]
        data = body["data"]
        last = inbound.next_index == inbound.count - 1
        expected = inbound.size - inbound.chunk * (inbound.count - 1) if last else inbound.chunk
        if len(data) != expected:
            del self.files[fid]
            return [Dropped(f"file {fid[:8]} chunk has the wrong length")]
        inbound.next_index += 1
        effects: list[Effect] = [WriteChunk(fid, body["index"] * inbound.chunk, data)]
        if last:
            del self.files[fid]
            effects.append(
                FileComplete(fid, inbound.name, inbound.size, inbound.sha256, message.seq)
            )
        return effects

    def _on_escalation(self, message: WireMessage, now: float) -> list[Effect]:
        if self.answered_at is None:
            return self._refuse(message.seq, "escalation", "", "the call was not answered", now)
        return [Deliver(AgentEvent.ESCALATION, {"text": message.body["text"]})]

    def _on_refuse(self, message: WireMessage, now: float) -> list[Effect]:
        body = message.body
        if not self._take_refusable(body["ref"]):
            return [Dropped(f"refuse of seq {body['ref']}: not one of ours it could refuse")]
        self.refused += 1
        fields = {"what": body["what"], "file_name": body["name"], "reason": body["reason"]}
        return [Deliver(AgentEvent.REFUSED, {**fields, "ref_seq": body["ref"]})]

    def _on_end(self, message: WireMessage, now: float) -> list[Effect]:
        if self.forward_secrecy:
            # The peer erased its ratchet with its `end`: what it has not taken by then it
            # can never read, so re-sending it for two days would only load the relays.
            self.pending.clear()
            self._due = None
        if self.state == ENDED:
            return []
        reason = message.body["reason"]
        if self.state == RINGING:
            self._finish(Outcome.MISSED, EndedBy.PEER, now, reason or "the caller hung up")
            return [Deliver(AgentEvent.CALL_MISSED, {"reason": self.end_reason})]
        self._finish(Outcome.COMPLETED, EndedBy.PEER, now, reason)
        extra = {"all": True} if message.body.get("all") else {}
        return [Deliver(AgentEvent.CALL_ENDED, {"reason": reason, **extra})]

    def _on_roster(self, message: WireMessage, now: float) -> list[Effect]:
        if self.state != ACTIVE:
            return [Dropped(f"roster while {self.state}")]
        return [Roster(message.body)]


# Plain fields of Call saved as they are; the containers are converted in to_dict.
_PERSISTED = tuple(
    f.name
    for f in fields(Call)
    if f.name not in ("reorder", "pending", "text_parts", "files", "limits", "refusable", "_due")
)


class CallError(Exception):
    """A local action that the call's state does not allow; the message is for the user."""

    def __init__(self, message: str, code: str = "bad_state") -> None:
        super().__init__(message)
        self.code = code


_HANDLERS = {
    "accept": Call._on_accept,
    "reject": Call._on_reject,
    "message": Call._on_message,
    "file": Call._on_file,
    "escalation": Call._on_escalation,
    "refuse": Call._on_refuse,
    "end": Call._on_end,
    "roster": Call._on_roster,
}
