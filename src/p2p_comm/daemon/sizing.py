"""Sizes: the largest file chunk, text part and `frag` piece whose gift wrap fits the
peer's relays, and what a relay's "too large" refusal teaches about its real limit.

Measured, not guessed: NIP-44 pads, and two layers of base64 inflate what we carry (a
24 KiB chunk wraps to about 77 KB). Limits come from each relay's NIP-11 document and from
its refusals (``relay_health``); results are remembered per limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .. import clock
from ..nostr import kinds, nip59
from ..protocol import frag, wire
from .nostr_io import RelayPool
from .relay_health import NOT_SENT_TOO_LARGE, refused_for_size
from .relay_publish import PublishResult

log = logging.getLogger("p2p.outbound")


def gift_wrap(
    keys: Any,
    author_hex: str,
    receiver_hex: str,
    content: str,
    rumor_at: int,
    pow_bits: int = 0,
    exact_time: bool = False,
) -> Any:
    """A fresh wrap (new one-time key, publication time) of our call rumor; ``exact_time``
    drops the jitter, for a relay that refused a wrap as too old."""
    rumor = nip59.make_rumor(author_hex, kinds.CALL, content, rumor_at)  # no SDK call
    now = clock.now()
    created_at = int(now) if exact_time else nip59.wrap_timestamp(now)
    return nip59.wrap(keys, receiver_hex, rumor, created_at, pow_bits)


def ratchet_wrap(
    keys: Any,
    call_id: str,
    receiver_hex: str,
    sealed: str,
    rumor_at: int,
    pow_bits: int = 0,
    exact_time: bool = False,
) -> Any:
    """A fresh wrap of a ratchet seal (forward secrecy): the same ciphertext every time."""
    now = clock.now()
    created_at = int(now) if exact_time else nip59.wrap_timestamp(now)
    return nip59.wrap_ratchet(keys, receiver_hex, call_id, sealed, rumor_at, created_at, pow_bits)


def largest_fitting_chunk(limit: int, keys: Any) -> int:
    """The largest file chunk whose gift wrap fits a relay limit of ``limit`` bytes."""
    low, high = wire.MIN_CHUNK_BYTES, wire.MAX_CHUNK_BYTES
    found = _largest(low, high, 256, lambda chunk: _wrapped_size(_file_chunk(chunk), keys), limit)
    return found if found is not None else low


def largest_fitting_fragment(limit: int, keys: Any) -> int | None:
    """The largest slice a `frag` carries so that its gift wrap fits ``limit`` bytes; None
    if not even the smallest slice fits (no call message gets through such a relay)."""
    low, high = frag.MIN_FRAGMENT_BYTES, frag.MAX_FRAGMENT_BYTES
    return _largest(low, high, 64, lambda piece: _wrapped_size(_fragment(piece), keys), limit)


def _largest(low: int, high: int, step: int, size: Callable[[int], int], limit: int) -> int | None:
    """The largest n in low..high (to within ``step``) with size(n) <= limit, by bisection;
    None if not even ``low`` fits."""
    if size(low) > limit:
        return None
    if size(high) <= limit:
        return high
    while high - low > step:
        middle = (low + high) // 2
        if size(middle) <= limit:
            low = middle
        else:
            high = middle
    return low


def _file_chunk(chunk: int) -> wire.WireMessage:
    """The largest file message carrying ``chunk`` bytes (every other field at its widest)."""
    body = {
        "fid": "0" * 32,
        "name": "n" * 300,
        "size": 2**40,
        "sha256": "0" * 64,
        "index": 2**20,
        "count": 2**20,
        "data": bytes(chunk),
        "chunk": chunk,
    }
    return wire.WireMessage("file", "0" * 32, 2**40, 2**40, body)


def file_chunk_content(chunk: int = wire.FILE_CHUNK_BYTES) -> str:
    """The content of the largest file message carrying ``chunk`` bytes: `doctor` sends a
    message this long, so its probe is as large as a file chunk on the wire."""
    return _file_chunk(chunk).encode()


def _fragment(piece: int) -> wire.WireMessage:
    body = {"i": 99, "n": 99, "size": frag.MAX_MESSAGE_BYTES, "data": bytes(piece)}
    return wire.WireMessage("frag", "0" * 32, 2**40, 0, body)


def _wrapped_size(message: wire.WireMessage, keys: Any) -> int:
    """Bytes on the wire of ``message`` gift-wrapped: measured, not guessed (NIP-44 pads,
    and two layers of base64 inflate it)."""
    me = keys.public_key().to_hex()
    event = gift_wrap(keys, me, me, message.encode(), int(clock.now()))
    return len(event.as_json()) + 64  # the ["EVENT", ...] framing, as RelayPool.publish counts


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
