"""What the call core asks its shell to do (effects), and what it tells the agent (events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .wire import WireMessage

# Event types the agent sees through `inbox`/`wait`; scripts rely on these names.
AGENT_EVENT_TYPES = (
    "call_request",
    "call_accepted",
    "call_rejected",
    "call_missed",
    "message",
    "file",
    "escalation",
    "call_ended",
    "owner_reply",
)


@dataclass(frozen=True)
class Transmit:
    """Wrap and publish this message (a sequenced one also goes into the outbox)."""

    message: WireMessage


@dataclass(frozen=True)
class Retransmit:
    """Publish again the stored event of our message ``seq`` (the same signed event)."""

    seq: int


@dataclass(frozen=True)
class Deliver:
    """Tell the agent: an event of ``type`` with ``fields``."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteChunk:
    """Write a received chunk of file ``fid`` at ``index`` (idempotent positional write)."""

    fid: str
    index: int
    data: bytes


@dataclass(frozen=True)
class FileComplete:
    """Every chunk of ``fid`` is written: verify the hash, then move it into place."""

    fid: str
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Dropped:
    """A message was refused; the shell logs the reason."""

    reason: str


Effect = Transmit | Retransmit | Deliver | WriteChunk | FileComplete | Dropped
