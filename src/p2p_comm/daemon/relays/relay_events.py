"""What relays hand the daemon: verified events as plain values (`InboundEvent`), read
out of nostr-sdk lazily."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InboundEvent:
    """A verified event from a relay (the SDK drops any whose id or signature is wrong).

    Only what every event needs is read out of the SDK at once; the rest is read when
    asked for: each read crosses into Rust, and a flood of junk wraps needs none of it."""

    event: Any  # nostr_sdk.Event, kept for unwrapping gift wraps
    id: str
    content: str
    relay: str
    # Sent while the relay replays what it stored for us after a mute: history, not a
    # flood (junk among it was stored while we were not reading, maybe for the mute).
    stored: bool = False

    @functools.cached_property
    def kind(self) -> int:
        return int(self.event.kind().as_u16())

    @functools.cached_property
    def pubkey(self) -> str:
        return str(self.event.author().to_hex())

    @functools.cached_property
    def created_at(self) -> int:
        return int(self.event.created_at().as_secs())

    @functools.cached_property
    def tags(self) -> list[list[str]]:
        return [tag.to_vec() for tag in self.event.tags()]


def to_inbound(event: Any, relay: str, stored: bool = False) -> InboundEvent:
    """An SDK event as the daemon reads it, from ``relay``."""
    return InboundEvent(
        event=event, id=event.id().to_hex(), content=event.content(), relay=relay, stored=stored
    )
