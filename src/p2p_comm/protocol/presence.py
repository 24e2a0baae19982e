"""Presence announcements: how an agent says it is online, and how we read others'.

Wire format (see docs/PROTOCOL.md): an addressable event of kind 30078 with
``d`` = ``p2p-comm/presence``, a NIP-40 ``expiration`` tag, a ``t`` tag
``p2p-comm``, and JSON content. Also a kind-10050 list of inbox relays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..sanitize import clean_label

PRESENCE_KIND = 30078
PRESENCE_D_TAG = "p2p-comm/presence"
PRESENCE_T_TAG = "p2p-comm"
INBOX_RELAYS_KIND = 10050
STATUSES = ("available", "busy", "offline")

MAX_CONTENT_BYTES = 8192
MAX_NAME = 64
MAX_DESCRIPTION = 280
MAX_CAPABILITIES = 32
MAX_CAPABILITY = 64
MAX_RELAYS = 10
MAX_RELAY_URL = 256

Tags = list[list[str]]


@dataclass(frozen=True)
class Presence:
    """What one agent announces about itself."""

    name: str
    description: str = ""
    capabilities: tuple[str, ...] = ()
    status: str = "available"
    relays: tuple[str, ...] = ()
    protocol: int = 1
    # The feature level (`pv`, docs/PROTOCOL.md 3.7) it speaks; 0: not announced (an older
    # version). A caller that requires forward secrecy does not ring a peer below 5.
    feature_level: int = 0
    # A signed prekey (`spk`, docs/PROTOCOL.md 3.12.2): an X25519 public key, 64 lowercase
    # hex, that a caller's request may be encrypted to; "" if none is announced.
    prekey: str = ""


@dataclass(frozen=True)
class PeerPresence:
    """A presence we received: who said it, when, and until when it holds."""

    pubkey: str
    presence: Presence
    created_at: int
    expires_at: int | None
    received_at: float | None = None  # by our clock, when we took it

    def is_live(self, now: float, window: float) -> bool:
        if self.presence.status == "offline" or self.from_the_future(now):
            return False
        base = float(self.created_at)
        if self.received_at is not None and abs(self.received_at - base) <= CLOCK_TOLERANCE:
            # Judge by our own clock: the peer's may be minutes off ours.
            base = self.received_at
        if self.expires_at is not None and now >= base + (self.expires_at - self.created_at):
            return False
        return now - base <= window

    def from_the_future(self, now: float) -> bool:
        """Dated further ahead of ``now`` than clocks differ: no clock says that, so it is not
        believed (it would stay "online" for as long as it is ahead)."""
        return self.created_at > now + CLOCK_TOLERANCE


# Clocks further apart than this are not trusted to be skew: such an announcement is
# judged by its own timestamp (an old one replayed by a relay stays old).
CLOCK_TOLERANCE = 900.0


def encode_presence(presence: Presence, expires_at: int) -> tuple[str, Tags]:
    """Content and tags for a presence event."""
    content = json.dumps(
        {
            "v": presence.protocol,
            "name": presence.name,
            "description": presence.description,
            "capabilities": list(presence.capabilities),
            "status": presence.status,
            "relays": list(presence.relays),
            **({"pv": presence.feature_level} if presence.feature_level else {}),
            **({"spk": presence.prekey} if presence.prekey else {}),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    tags = [
        ["d", PRESENCE_D_TAG],
        ["t", PRESENCE_T_TAG],
        ["expiration", str(expires_at)],
    ]
    return content, tags


def inbox_relay_tags(relays: tuple[str, ...]) -> Tags:
    """Tags of the kind-10050 event listing where we receive private messages."""
    return [["relay", url] for url in relays]


def _tag_value(tags: Tags, name: str) -> str | None:
    for tag in tags:
        if len(tag) >= 2 and tag[0] == name:
            return tag[1]
    return None


def _relay_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    urls = [
        url
        for url in value[:MAX_RELAYS]
        if isinstance(url, str)
        and len(url) <= MAX_RELAY_URL
        and url.startswith(("ws://", "wss://"))
        and url.isprintable()
        and " " not in url
    ]
    return tuple(dict.fromkeys(urls))


def _capabilities(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    caps = [clean_label(c, MAX_CAPABILITY) for c in value[:MAX_CAPABILITIES] if isinstance(c, str)]
    return tuple(dict.fromkeys(c for c in caps if c))


def _prekey(value: Any) -> str:
    """An announced prekey if it is one (64 lowercase hex), else "" (none)."""
    if isinstance(value, str) and len(value) == 64 and all(c in _HEX for c in value):
        return value
    return ""


_HEX = frozenset("0123456789abcdef")


def decode_presence(pubkey: str, created_at: int, content: str, tags: Tags) -> PeerPresence | None:
    """Parse a presence event already verified by the Nostr layer; None if it is not one."""
    if _tag_value(tags, "d") != PRESENCE_D_TAG or len(content.encode()) > MAX_CONTENT_BYTES:
        return None
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    name = clean_label(data["name"], MAX_NAME)
    if not name:
        return None
    status = data.get("status")
    version = data.get("v")
    level = data.get("pv")
    description = data.get("description")
    presence = Presence(
        name=name,
        description=clean_label(description, MAX_DESCRIPTION)
        if isinstance(description, str)
        else "",
        capabilities=_capabilities(data.get("capabilities")),
        status=status if status in STATUSES else "available",
        relays=_relay_list(data.get("relays")),
        protocol=version if isinstance(version, int) and not isinstance(version, bool) else 1,
        feature_level=level
        if isinstance(level, int) and not isinstance(level, bool) and 0 < level <= 1000
        else 0,
        prekey=_prekey(data.get("spk")),
    )
    expiration = _tag_value(tags, "expiration")
    expires_at = int(expiration) if expiration and expiration.isdigit() else None
    return PeerPresence(
        pubkey=pubkey, presence=presence, created_at=created_at, expires_at=expires_at
    )


def decode_inbox_relays(tags: Tags) -> tuple[str, ...]:
    """Relay URLs of a kind-10050 event, validated like presence relays."""
    return _relay_list([tag[1] for tag in tags if len(tag) >= 2 and tag[0] == "relay"])
