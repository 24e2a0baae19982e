"""Call-protocol messages and their JSON codec (the content of a gift-wrapped rumor).

Every message is one JSON object inside a NIP-59 gift wrap. The decoder is the
boundary for peer-controlled data: anything that is not exactly a valid message
raises `WireError`, and every string and number it returns is bounded.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..sanitize import clean_text

CALL_KIND = 25714  # kind of the rumor inside the seal; never published unwrapped
# The envelope's `v` stays 1: a version-1 peer drops any other value outright. Newer
# features are advertised with `pv` on `request`/`accept` and used only with peers that
# announced them (docs/PROTOCOL.md, "Versions").
VERSION = 1
FEATURE_LEVEL = 5  # 3: group calls (`roster`, ...); 4: `frag` (protocol/frag.py); 5: the
# call ratchet (protocol/ratchet.py): `ek` on `request`/`accept`, ratchet seals after
FS_LEVEL = 5

TEXT_PART_BYTES = 12_000  # UTF-8 bytes of text per message part
FILE_CHUNK_BYTES = 12 * 1024  # raw bytes per file chunk (base64 makes it 16 KiB)
# Feature level 2: a sender may choose smaller chunks (to fit a relay's message limit) and
# says so in each chunk's optional `chunk` field; without it a chunk is FILE_CHUNK_BYTES.
MIN_CHUNK_BYTES = 1024
# Feature level 2 peers may send chunks up to this (the `chunk` field says so), when every
# inbox relay of the receiver takes the larger wrap: fewer chunks is what makes files fast.
MAX_CHUNK_BYTES = 24 * 1024
# A rumor larger than this is refused outright. A level-1 sender stays under 24,000 bytes;
# the room above is for level-2 chunks (24 KiB as base64 is 32 KiB).
MAX_CONTENT_BYTES = 40_000
# Feature level 4: raw bytes of one slice in a `frag` (its base64 stays under the above).
MAX_FRAGMENT_BYTES = 24_000
MAX_PARTS = 4096
MAX_CHUNKS = 1 << 20
MAX_TOPIC = 1000
MAX_REASON = 1000
MAX_NAME = 64
MAX_FILE_NAME = 255
MAX_ROSTER = 16  # protocol.group.MAX_PARTICIPANTS

TYPES = (
    "request",
    "accept",
    "reject",
    "message",
    "file",
    "escalation",
    "end",
    "refuse",
    "roster",
    "ack",
)
REFUSABLE = ("message", "file", "escalation")
SEQUENCED = frozenset(TYPES) - {"ack"}

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class WireError(ValueError):
    """The content is not a valid call-protocol message."""


@dataclass(frozen=True)
class WireMessage:
    """One protocol message. ``seq`` is 0 for ``ack``; ``ack`` is cumulative."""

    type: str
    call: str
    seq: int
    ack: int = 0
    body: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        document: dict[str, Any] = {
            "v": VERSION,
            "type": self.type,
            "call": self.call,
            "seq": self.seq,
            "ack": self.ack,
        }
        for key, value in self.body.items():
            document[key] = base64.b64encode(value).decode() if key == "data" else value
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _int(value: Any, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WireError(f"{name} must be an integer in [{low}, {high}]")
    return value


def _str(value: Any, limit: int, name: str) -> str:
    """A bounded string with terminal escapes and control characters removed and line ends
    made LF (see "Text handling" in docs/PROTOCOL.md); other Unicode is kept as sent."""
    if not isinstance(value, str) or len(value) > limit:
        raise WireError(f"{name} must be a string of at most {limit} characters")
    return clean_text(value)


def _text_part(value: Any) -> str:
    if isinstance(value, str) and len(value.encode()) > TEXT_PART_BYTES:
        raise WireError("text part too large")
    return _str(value, TEXT_PART_BYTES, "text")


def _hex(value: Any, pattern: re.Pattern[str], name: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise WireError(f"{name} is malformed")
    return value


def _refusable(value: Any) -> str:
    if value not in REFUSABLE:
        raise WireError("what must name a refusable message type")
    return str(value)


def _data(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) > (MAX_CHUNK_BYTES * 4) // 3 + 4:
        raise WireError("data must be base64 of at most one chunk")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("data is not valid base64") from None
    if len(data) > MAX_CHUNK_BYTES:
        raise WireError("chunk too large")
    return data


def _fragment_data(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) > (MAX_FRAGMENT_BYTES * 4) // 3 + 4:
        raise WireError("data must be base64 of at most one fragment")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("data is not valid base64") from None


def _roster(value: Any) -> list[list[str]]:
    """A group roster: ``[[hex pubkey, name], ...]``, at most MAX_ROSTER distinct keys."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ROSTER:
        raise WireError(f"roster must be a list of 1 to {MAX_ROSTER} entries")
    out: list[list[str]] = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 2:
            raise WireError("a roster entry is [pubkey, name]")
        out.append([_hex(entry[0], _HEX64, "roster key"), _str(entry[1], MAX_NAME * 4, "name")])
    if len({pk for pk, _ in out}) != len(out):
        raise WireError("roster names a key twice")
    return out


def _invite(value: Any) -> str:
    if value not in ("starter", "any"):
        raise WireError("invite must be 'starter' or 'any'")
    return str(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise WireError("a flag must be true or false")
    return value


Validator = Callable[[Any], Any]


def _ek(value: Any) -> str:
    return _hex(value, _HEX64, "ek")


_BODY: dict[str, dict[str, Validator]] = {
    "request": {
        "topic": lambda v: _str(v, MAX_TOPIC, "topic"),
        "name": lambda v: _str(v, MAX_NAME * 4, "name"),
    },
    "accept": {},
    "reject": {"reason": lambda v: _str(v, MAX_REASON, "reason")},
    "message": {
        "text": _text_part,
        "part": lambda v: _int(v, 1, MAX_PARTS, "part"),
        "parts": lambda v: _int(v, 1, MAX_PARTS, "parts"),
    },
    "file": {
        "fid": lambda v: _hex(v, _HEX32, "fid"),
        "name": lambda v: _str(v, MAX_FILE_NAME * 4, "name"),
        "size": lambda v: _int(v, 0, MAX_CHUNKS * FILE_CHUNK_BYTES, "size"),
        "sha256": lambda v: _hex(v, _HEX64, "sha256"),
        "index": lambda v: _int(v, 0, MAX_CHUNKS - 1, "index"),
        "count": lambda v: _int(v, 1, MAX_CHUNKS, "count"),
        "data": _data,
    },
    "escalation": {"text": _text_part},
    "end": {"reason": lambda v: _str(v, MAX_REASON, "reason")},
    "refuse": {
        "ref": lambda v: _int(v, 1, 2**53, "ref"),
        "what": _refusable,
        "name": lambda v: _str(v, MAX_FILE_NAME * 4, "name"),
        "reason": lambda v: _str(v, MAX_REASON, "reason"),
    },
    "roster": {
        "group": lambda v: _hex(v, _HEX32, "group"),
        "starter": lambda v: _hex(v, _HEX64, "starter"),
        "roster": _roster,
    },
    "ack": {},
    # Feature level 4, not in TYPES: a piece of a sequenced message (protocol/frag.py); the
    # receiver joins the pieces before the call core sees anything.
    "frag": {
        "i": lambda v: _int(v, 0, MAX_CONTENT_BYTES, "i"),
        "n": lambda v: _int(v, 1, MAX_CONTENT_BYTES, "n"),
        "size": lambda v: _int(v, 1, MAX_CONTENT_BYTES, "size"),
        "data": _fragment_data,
    },
}

# Fields a message may carry and an older peer may leave out.
_OPTIONAL: dict[str, dict[str, Validator]] = {
    "request": {
        "pv": lambda v: _int(v, 1, 1000, "pv"),
        # Feature level 3: an invitation into a group call (docs/PROTOCOL.md, 3.9).
        "group": lambda v: _hex(v, _HEX32, "group"),
        "starter": lambda v: _hex(v, _HEX64, "starter"),
        "roster": _roster,
        "invite": _invite,
        # Feature level 5: the caller's ephemeral X25519 key (docs/PROTOCOL.md 3.12.2).
        "ek": lambda v: _hex(v, _HEX64, "ek"),
        # ... and the callee's signed prekey the request was encrypted to, if any (3.12.7).
        "spk": lambda v: _hex(v, _HEX64, "spk"),
    },
    "accept": {"pv": lambda v: _int(v, 1, 1000, "pv"), "ek": lambda v: _hex(v, _HEX64, "ek")},
    "end": {"all": _flag, "ek": _ek},
    "file": {"chunk": lambda v: _int(v, MIN_CHUNK_BYTES, MAX_CHUNK_BYTES, "chunk"), "ek": _ek},
    # Feature level 5: in a group's session made from a roster, the initiator's first
    # message carries its ephemeral key (docs/PROTOCOL.md 3.12.8), whatever its type.
    "message": {"ek": _ek},
    "escalation": {"ek": _ek},
    "refuse": {"ek": _ek},
    "roster": {"ek": _ek},
}


def decode(content: str) -> WireMessage:
    """Parse and validate a rumor's content; raises WireError on anything unexpected."""
    if not isinstance(content, str) or len(content.encode()) > MAX_CONTENT_BYTES:
        raise WireError("content missing or too large")
    try:
        document = json.loads(content)
    except (json.JSONDecodeError, RecursionError):
        raise WireError("content is not JSON") from None
    if not isinstance(document, dict):
        raise WireError("content is not a JSON object")
    if document.get("v") != VERSION:
        raise WireError("unsupported protocol version")
    kind = document.get("type")
    if kind not in _BODY:
        raise WireError("unknown message type")
    call = _hex(document.get("call"), _HEX32, "call")
    seq = _int(document.get("seq"), 0 if kind == "ack" else 1, 2**53, "seq")
    if kind == "ack" and seq != 0:
        raise WireError("ack must have seq 0")
    ack = _int(document.get("ack", 0), 0, 2**53, "ack")
    schema = _BODY[kind]
    missing = schema.keys() - document.keys()
    if missing:
        raise WireError(f"missing fields: {sorted(missing)}")
    body = {key: check(document[key]) for key, check in schema.items()}
    for key, check in _OPTIONAL.get(kind, {}).items():
        if key in document:
            body[key] = check(document[key])
    if kind == "message" and body["part"] > body["parts"]:
        raise WireError("part beyond parts")
    if kind == "file" and body["index"] >= body["count"]:
        raise WireError("index beyond count")
    if kind == "frag" and body["i"] >= body["n"]:
        raise WireError("fragment index beyond count")
    if kind == "file" and len(body["data"]) > body.get("chunk", FILE_CHUNK_BYTES):
        raise WireError("chunk larger than its declared size")
    return WireMessage(type=kind, call=call, seq=seq, ack=ack, body=body)


def split_text(text: str, limit: int = TEXT_PART_BYTES) -> list[str]:
    """Cut text into parts of at most ``limit`` UTF-8 bytes, never inside a character."""
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode())
        if size + width > limit:
            parts.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    parts.append("".join(current))
    return parts


def chunk_count(size: int, chunk: int = FILE_CHUNK_BYTES) -> int:
    """How many chunks of ``chunk`` bytes a file of ``size`` bytes travels in (at least 1)."""
    return max(1, -(-size // chunk))
