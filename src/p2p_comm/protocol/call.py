"""The call state machine: ringing, active, ended; sequencing, receipts and retransmits.

Pure: no I/O, no clock. Every method takes ``now`` and returns effects for the shell
(`events.py`). Each side numbers its own sequenced messages 1, 2, 3, ...; the
receiver delivers them in order exactly once and acknowledges cumulatively (the
``ack`` field of any message, or a bare ``ack``). The sender retransmits every
unacknowledged message with exponential backoff until it is acknowledged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .events import Deliver, Dropped, Effect, FileComplete, Retransmit, Transmit, WriteChunk
from .wire import FILE_CHUNK_BYTES, WireMessage, chunk_count, split_text

RINGING = "ringing"
ACTIVE = "active"
ENDED = "ended"

OUTGOING = "outgoing"
INCOMING = "incoming"

FIRST_RETRY = 2.0
MAX_RETRY = 60.0
# After a call ends we keep re-sending what the peer has not receipted (its last
# messages and our `end`) for this long, so a peer offline for hours still learns.
RETRY_AFTER_END = 2 * 86400.0
REORDER_WINDOW = 4096


@dataclass(frozen=True)
class Limits:
    """Bounds on what a peer may make us accept."""

    max_message_bytes: int = 256 * 1024
    max_file_bytes: int = 10 * 1024 * 1024
    ring_timeout: float = 60.0


@dataclass
class Pending:
    """One of our messages the peer has not yet receipted."""

    attempts: int
    next_at: float


@dataclass
class Inbound:
    """A file being received."""

    name: str
    size: int
    sha256: str
    count: int
    next_index: int = 0


@dataclass
class Call:
    """One call seen from our side. `to_dict`/`from_dict` persist all but the reorder buffer."""

    id: str
    peer: str
    direction: str
    topic: str
    created_at: float
    ring_deadline: float
    state: str = RINGING
    answered_at: float | None = None
    ended_at: float | None = None
    outcome: str = ""  # completed | rejected | missed | cancelled, once ended
    end_reason: str = ""
    ended_by: str = ""  # local | peer | timeout
    next_seq: int = 1
    recv_next: int = 1
    pending: dict[int, Pending] = field(default_factory=dict)
    ack_due: bool = False
    text_parts: list[str] = field(default_factory=list)
    files: dict[str, Inbound] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    reorder: dict[int, WireMessage] = field(default_factory=dict, repr=False)

    # Construction -----------------------------------------------------------------

    @classmethod
    def start(
        cls, call_id: str, peer: str, topic: str, my_name: str, now: float, limits: Limits
    ) -> tuple[Call, list[Effect]]:
        """We ring ``peer``."""
        call = cls(call_id, peer, OUTGOING, topic, now, now + limits.ring_timeout, limits=limits)
        return call, [call._send("request", now, topic=topic, name=my_name)]

    @classmethod
    def ring_in(
        cls, message: WireMessage, peer: str, sent_at: float, now: float, limits: Limits
    ) -> tuple[Call, list[Effect]]:
        """A request from ``peer`` arrived (``sent_at`` is the rumor's own timestamp)."""
        if message.type != "request" or message.seq != 1:
            raise CallError("a call starts with a request of seq 1.")
        topic = message.body["topic"]
        deadline = min(sent_at, now) + limits.ring_timeout
        call = cls(message.call, peer, INCOMING, topic, now, deadline, limits=limits)
        call.recv_next = message.seq + 1
        call.ack_due = True
        request = Deliver("call_request", {"topic": topic, "caller_name": message.body["name"]})
        if now >= deadline:
            call._finish("missed", "timeout", now)
            call.end_reason = "no answer"
            return call, [request, Deliver("call_missed", {"reason": "the call rang out"})]
        return call, [request]

    # Local actions ------------------------------------------------------------------

    def accept(self, now: float) -> list[Effect]:
        self._require(self.direction == INCOMING and self.state == RINGING, "is not ringing here")
        self.state = ACTIVE
        self.answered_at = now
        return [self._send("accept", now)]

    def reject(self, reason: str, now: float) -> list[Effect]:
        self._require(self.direction == INCOMING and self.state == RINGING, "is not ringing here")
        self._finish("rejected", "local", now)
        self.end_reason = reason
        return [self._send("reject", now, reason=reason)]

    def send_text(self, text: str, now: float) -> list[Effect]:
        self._require(self.state == ACTIVE, "is not active")
        self._check_size(len(text.encode()), self.limits.max_message_bytes, "message")
        parts = split_text(text)
        return [
            self._send("message", now, text=part, part=index, parts=len(parts))
            for index, part in enumerate(parts, 1)
        ]

    def send_file(self, fid: str, name: str, data: bytes, sha256: str, now: float) -> list[Effect]:
        self._require(self.state == ACTIVE, "is not active")
        self._check_size(len(data), self.limits.max_file_bytes, "file")
        count = chunk_count(len(data))
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
                data=data[index * FILE_CHUNK_BYTES : (index + 1) * FILE_CHUNK_BYTES],
            )
            for index in range(count)
        ]

    def escalate(self, text: str, now: float) -> list[Effect]:
        self._require(self.state == ACTIVE, "is not active")
        self._check_size(len(text.encode()), 12_000, "escalation")
        return [self._send("escalation", now, text=text)]

    def end(self, reason: str, now: float) -> list[Effect]:
        self._require(self.state != ENDED, "has already ended")
        was_ringing_out = self.state == RINGING and self.direction == OUTGOING
        self._finish("cancelled" if was_ringing_out else "completed", "local", now)
        self.end_reason = reason
        return [self._send("end", now, reason=reason)]

    # Time ---------------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self.state == RINGING and now >= self.ring_deadline:
            self._finish("missed", "timeout", now)
            self.end_reason = "no answer"
            effects.append(
                Deliver(
                    "call_missed",
                    {
                        "reason": "nobody answered"
                        if self.direction == OUTGOING
                        else "the call rang out"
                    },
                )
            )
            if self.direction == OUTGOING:
                effects.append(self._send("end", now, reason="no answer"))
        if self.ended_at is not None and now > self.ended_at + RETRY_AFTER_END:
            self.pending.clear()
        for seq, pending in sorted(self.pending.items()):
            if now >= pending.next_at:
                pending.attempts += 1
                pending.next_at = now + min(MAX_RETRY, FIRST_RETRY * 2 ** (pending.attempts - 1))
                effects.append(Retransmit(seq))
        return effects

    def nudge(self, now: float) -> bool:
        """The peer is reachable again: messages already retried twice go out now, with a
        fresh backoff. Returns True if anything was brought forward."""
        moved = False
        for pending in self.pending.values():
            if pending.attempts >= 2 and pending.next_at > now:
                pending.attempts = 1
                pending.next_at = now
                moved = True
        return moved

    def next_deadline(self) -> float | None:
        times = [p.next_at for p in self.pending.values()]
        if self.state == RINGING:
            times.append(self.ring_deadline)
        return min(times) if times else None

    # Inbound ------------------------------------------------------------------------

    def receive(self, message: WireMessage, now: float) -> list[Effect]:
        """Take one message from the peer (already verified to come from it)."""
        self._take_ack(message.ack)
        if message.type == "ack":
            return []
        if message.seq < self.recv_next:
            self.ack_due = True  # a duplicate: our receipt was probably lost
            return []
        if message.seq - self.recv_next >= REORDER_WINDOW:
            return [Dropped(f"seq {message.seq} is too far ahead of {self.recv_next}")]
        self.reorder[message.seq] = message
        self.ack_due = True
        effects: list[Effect] = []
        while self.recv_next in self.reorder:
            effects += self._apply(self.reorder.pop(self.recv_next), now)
            self.recv_next += 1
        return effects

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
        # By hand, not dataclasses.asdict: that deep-copies the reorder buffer (file
        # chunks included) only to throw it away, and it runs once per message.
        data = {name: getattr(self, name) for name in _PERSISTED}
        data["pending"] = {str(seq): [p.attempts, p.next_at] for seq, p in self.pending.items()}
        data["text_parts"] = list(self.text_parts)
        data["files"] = {fid: asdict(f) for fid, f in self.files.items()}
        data["limits"] = asdict(self.limits)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Call:
        data = dict(data)
        data["pending"] = {int(seq): Pending(*p) for seq, p in data["pending"].items()}
        data["files"] = {fid: Inbound(**f) for fid, f in data["files"].items()}
        data["limits"] = Limits(**data["limits"])
        return cls(**data)

    # Internals --------------------------------------------------------------------------

    def _require(self, condition: bool, problem: str) -> None:
        if not condition:
            raise CallError(f"call {self.id[:8]} {problem}.")

    def _check_size(self, size: int, limit: int, what: str) -> None:
        if size > limit:
            raise CallError(f"the {what} is {size} bytes, over the limit of {limit} bytes.")

    def _send(self, kind: str, now: float, **body: Any) -> Transmit:
        seq = self.next_seq
        self.next_seq += 1
        self.pending[seq] = Pending(attempts=0, next_at=now + FIRST_RETRY)
        self.ack_due = False  # this message carries our receipt
        return Transmit(WireMessage(kind, self.id, seq, ack=self.recv_next - 1, body=body))

    def _take_ack(self, upto: int) -> None:
        for seq in [s for s in self.pending if s <= upto]:
            del self.pending[seq]

    def _finish(self, outcome: str, by: str, now: float) -> None:
        self.state = ENDED
        self.ended_at = now
        self.outcome = outcome
        self.ended_by = by

    def _apply(self, message: WireMessage, now: float) -> list[Effect]:
        handler = _HANDLERS.get(message.type)
        if handler is None:
            return [Dropped(f"unexpected {message.type} in call {self.id[:8]}")]
        return handler(self, message, now)

    def _on_accept(self, message: WireMessage, now: float) -> list[Effect]:
        if self.direction != OUTGOING or self.state != RINGING:
            return [Dropped(f"accept while {self.state}")]
        self.state = ACTIVE
        self.answered_at = now
        return [Deliver("call_accepted", {})]

    def _on_reject(self, message: WireMessage, now: float) -> list[Effect]:
        if self.direction != OUTGOING or self.state != RINGING:
            return [Dropped(f"reject while {self.state}")]
        self._finish("rejected", "peer", now)
        self.end_reason = message.body["reason"]
        return [Deliver("call_rejected", {"reason": message.body["reason"]})]

    def _on_message(self, message: WireMessage, now: float) -> list[Effect]:
        if self.answered_at is None:
            return [Dropped("message before the call was answered")]
        body = message.body
        if body["part"] != len(self.text_parts) + 1:
            self.text_parts = []
            return [Dropped("message part out of order")]
        self.text_parts.append(body["text"])
        if sum(len(p.encode()) for p in self.text_parts) > self.limits.max_message_bytes:
            self.text_parts = []
            return [Dropped("message over the size limit")]
        if body["part"] < body["parts"]:
            return []
        text, self.text_parts = "".join(self.text_parts), []
        return [Deliver("message", {"text": text})]

    def _on_file(self, message: WireMessage, now: float) -> list[Effect]:
        if self.answered_at is None:
            return [Dropped("file before the call was answered")]
        body = message.body
        fid = body["fid"]
        inbound = self.files.get(fid)
        if inbound is None:
            if body["index"] != 0:
                return [Dropped(f"file {fid[:8]} chunk {body['index']} without its start")]
            if body["size"] > self.limits.max_file_bytes:
                return [Dropped(f"file of {body['size']} bytes is over the limit")]
            if body["count"] != chunk_count(body["size"]):
                return [Dropped("file chunk count does not match its size")]
            inbound = Inbound(body["name"], body["size"], body["sha256"], body["count"])
            self.files[fid] = inbound
        if (body["index"], body["count"], body["size"], body["sha256"]) != (
            inbound.next_index,
            inbound.count,
            inbound.size,
            inbound.sha256,
        ):
            del self.files[fid]
            return [Dropped(f"file {fid[:8]} chunk does not fit the file")]
        data = body["data"]
        last = inbound.next_index == inbound.count - 1
        expected = (
            inbound.size - FILE_CHUNK_BYTES * (inbound.count - 1) if last else FILE_CHUNK_BYTES
        )
        if len(data) != expected:
            del self.files[fid]
            return [Dropped(f"file {fid[:8]} chunk has the wrong length")]
        inbound.next_index += 1
        effects: list[Effect] = [WriteChunk(fid, body["index"], data)]
        if last:
            del self.files[fid]
            effects.append(FileComplete(fid, inbound.name, inbound.size, inbound.sha256))
        return effects

    def _on_escalation(self, message: WireMessage, now: float) -> list[Effect]:
        if self.answered_at is None:
            return [Dropped("escalation before the call was answered")]
        return [Deliver("escalation", {"text": message.body["text"]})]

    def _on_end(self, message: WireMessage, now: float) -> list[Effect]:
        if self.state == ENDED:
            return []
        reason = message.body["reason"]
        if self.state == RINGING:
            self._finish("missed", "peer", now)
            self.end_reason = reason or "the caller hung up"
            return [Deliver("call_missed", {"reason": self.end_reason})]
        self._finish("completed", "peer", now)
        self.end_reason = reason
        return [Deliver("call_ended", {"reason": reason})]


# Plain fields of Call saved as they are; the containers are converted in to_dict.
_PERSISTED = tuple(
    f.name
    for f in fields(Call)
    if f.name not in ("reorder", "pending", "text_parts", "files", "limits")
)


class CallError(Exception):
    """A local action that the call's state does not allow; the message is for the user."""


_HANDLERS = {
    "accept": Call._on_accept,
    "reject": Call._on_reject,
    "message": Call._on_message,
    "file": Call._on_file,
    "escalation": Call._on_escalation,
    "end": Call._on_end,
}
