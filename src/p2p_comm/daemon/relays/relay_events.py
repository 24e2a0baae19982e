"""What relays hand the daemon: verified events as plain values (`InboundEvent`), read
out of nostr-sdk lazily."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, eq=False)
class InboundEvent:
    """A verified event from a relay (the SDK drops any whose id or signature is wrong).

    Every field is read out of the SDK when first asked for: each read crosses into Rust
    (5-10 us), and a flood's wraps that the inbound gate sheds need none of them but
    their relay. Two events are equal when they are the same event from the same relay."""

    event: Any  # nostr_sdk.Event, kept for unwrapping gift wraps
    relay: str
    # Sent while the relay replays what it stored for us after a mute: history, not a
    # flood (junk among it was stored while we were not reading, maybe for the mute).
    stored: bool = False
    # Events of our subscription for gift wraps: routed to inbound without reading the kind
    # (unwrapping reads it, and refuses any other). Other gift wraps are a query's, which
    # the SDK also tells of: the query takes them.
    wrap_sub: bool = False
    # Sent before that subscription's EOSE at this relay: what it stored, mostly taken
    # already (a restart asks for two days of it).
    backlog: bool = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InboundEvent):
            return NotImplemented
        return (self.id, self.relay, self.stored) == (other.id, other.relay, other.stored)

    def __hash__(self) -> int:
        return hash((self.id, self.relay))

    @functools.cached_property
    def id(self) -> str:
        return str(self.event.id().to_hex())

    @functools.cached_property
    def content(self) -> str:
        return str(self.event.content())

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


def to_inbound(
    event: Any, relay: str, stored: bool = False, wrap_sub: bool = False, backlog: bool = False
) -> InboundEvent:
    """An SDK event as the daemon reads it, from ``relay``."""
    return InboundEvent(event, relay, stored, wrap_sub, backlog)
