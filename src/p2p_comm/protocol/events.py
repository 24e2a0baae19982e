"""What the call core asks its shell to do (effects), and what it tells the agent (events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .wire import WireMessage


class AgentEvent(StrEnum):
    """Event types the agent sees through `inbox`/`wait`; scripts rely on these names."""

    CALL_REQUEST = "call_request"
    CALL_ACCEPTED = "call_accepted"
    CALL_REJECTED = "call_rejected"
    CALL_MISSED = "call_missed"
    MESSAGE = "message"
    FILE = "file"
    ESCALATION = "escalation"
    CALL_ENDED = "call_ended"
    OWNER_REPLY = "owner_reply"
    REFUSED = "refused"
    DELIVERY_FAILED = "delivery_failed"
    PARTICIPANT_JOINED = "participant_joined"
    PARTICIPANT_LEFT = "participant_left"
    LOOP_SUSPECTED = "loop_suspected"
    OWNER_REACHED = "owner_reached"


AGENT_EVENT_TYPES = tuple(str(kind) for kind in AgentEvent)


@dataclass(frozen=True)
class Transmit:
    """Wrap and publish this message (a sequenced one also goes into the outbox)."""

    message: WireMessage


@dataclass(frozen=True)
class Retransmit:
    """Publish our message ``seq`` again, as a fresh wrap of the same rumor."""

    seq: int


@dataclass(frozen=True)
class Acked:
    """The peer has receipted our messages ``seqs``: the outbox may forget them."""

    seqs: tuple[int, ...]


@dataclass(frozen=True)
class Deliver:
    """Tell the agent: an event of ``type`` with ``fields``."""

    type: AgentEvent
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteChunk:
    """Write a received chunk of file ``fid`` at byte ``offset`` (idempotent positional write)."""

    fid: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class FileComplete:
    """Every chunk of ``fid`` is written: verify the hash, then move it into place. The shell
    answers with `Call.file_verified` or `Call.file_failed`."""

    fid: str
    name: str
    size: int
    sha256: str
    seq: int  # the message that completed it, for a refusal if the check fails


@dataclass(frozen=True)
class Dropped:
    """A message was refused; the shell logs the reason."""

    reason: str


@dataclass(frozen=True)
class Roster:
    """The peer announced its group's roster (feature level 3): the group layer decides."""

    body: dict[str, Any]


Effect = Transmit | Retransmit | Acked | Deliver | WriteChunk | FileComplete | Dropped | Roster
