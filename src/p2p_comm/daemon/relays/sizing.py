"""Sizes: the largest file chunk, text part and `frag` piece whose gift wrap fits the
peer's relays, and what a relay's "too large" refusal teaches about its real limit.

Measured, not guessed: NIP-44 pads, and two layers of base64 inflate what we carry (a
24 KiB chunk wraps to about 77 KB). Limits come from each relay's NIP-11 document and from
its refusals (``relay_health``); results are remembered per limit. The measuring itself
is in wrap_sizes.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ...protocol import wire
from .nostr_io import RelayPool
from .relay_health import NOT_SENT_TOO_LARGE, refused_for_size
from .relay_publish import PublishResult
from .wrap_sizes import largest_fitting_chunk, largest_fitting_fragment

log = logging.getLogger("p2p.outbound")


class Sizes:
    """What fits the relays a message goes to, learned per relay and remembered per limit."""

    def __init__(self, pool: Callable[[], RelayPool], keys: Any) -> None:
        self._pool = pool  # the publisher's pool as it is now (tests swap it)
        self.keys = keys
        self._chunk_for: dict[int, int] = {}
        self._fragment_for: dict[int, int | None] = {}

    def chunk_bytes(self, relays: tuple[str, ...]) -> int:
        """The largest file chunk whose wrap fits every one of ``relays``."""
        limit = self._pool().health.smallest_limit(relays)
        if limit is None:
            return wire.FILE_CHUNK_BYTES
        if limit not in self._chunk_for:
            chunk = self._chunk_for[limit] = largest_fitting_chunk(limit, self.keys)
            log.info("relay limit %d bytes: file chunks of %d bytes", limit, chunk)
        return self._chunk_for[limit]

    def text_part_bytes(self, relays: tuple[str, ...]) -> int:
        """Text parts that fit too, even if every character doubles when JSON-escaped."""
        chunk = self.chunk_bytes(relays)
        if chunk >= wire.FILE_CHUNK_BYTES:
            return wire.TEXT_PART_BYTES
        return max(256, chunk * 4 // 3 // 2)

    def fragment_bytes(self, limit: int) -> int | None:
        if limit not in self._fragment_for:
            self._fragment_for[limit] = largest_fitting_fragment(limit, self.keys)
        return self._fragment_for[limit]

    def learn(self, result: PublishResult, event: Any) -> bool:
        """Learn each relay's real limit from a refusal as too large; whether any relay
        refused (or we did not send, by what we know of it) for size."""
        refused = [url for url, why in result.failed.items() if refused_for_size(why)]
        if refused:
            size = len(event.as_json()) + 64  # as RelayPool.publish measures it
            for url in refused:
                limit = self._pool().health.refused_size(url, size)
                log.warning(
                    "relay %s refused a %d-byte event as too large: its limit is now taken "
                    "as %d bytes (files and long texts are cut to fit)",
                    url,
                    size,
                    limit,
                )
        skipped = any(why.startswith(NOT_SENT_TOO_LARGE) for why in result.failed.values())
        return bool(refused) or skipped
