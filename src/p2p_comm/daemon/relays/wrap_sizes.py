"""How large a message's gift wrap comes out: wrapping, and the largest file chunk or `frag`
piece whose wrap fits a relay's limit. Pure functions, measured by wrapping for real.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ... import clock
from ...nostr import kinds, nip59
from ...protocol import frag, wire
from ...protocol.call import OUTGOING, Call


def gift_wrap(
    keys: Any,
    author_hex: str,
    receiver_hex: str,
    content: str,
    rumor_at: int,
    pow_bits: int = 0,
    exact_time: bool = False,
    one_time: Any = None,
) -> Any:
    """A fresh wrap (new one-time key, or ``one_time``: a call lane's; publication time) of
    our call rumor; ``exact_time`` drops the jitter, for a relay that refused a wrap as too
    old."""
    rumor = nip59.make_rumor(author_hex, kinds.CALL, content, rumor_at)  # no SDK call
    now = clock.now()
    created_at = int(now) if exact_time else nip59.wrap_timestamp(now)
    return nip59.wrap(keys, receiver_hex, rumor, created_at, pow_bits, one_time)


# How our own request's content starts (`WireMessage.encode` writes these fields first).
_REQUEST_START = f'{{"v":{wire.VERSION},"type":"request",'


def is_request(call: Call, content: str) -> bool:
    """Whether ``content`` (from our outbox) is our request in a call we placed: the one
    ratchet seal that names the callee's prekey."""
    return call.direction == OUTGOING and content.startswith(_REQUEST_START)


def ratchet_wrap(
    keys: Any,
    call_id: str,
    receiver_hex: str,
    sealed: str,
    rumor_at: int,
    pow_bits: int = 0,
    exact_time: bool = False,
    prekey: str = "",
    one_time: Any = None,
) -> Any:
    """A fresh wrap of a ratchet seal (forward secrecy): the same ciphertext every time;
    ``prekey``: the request's, encrypted to the callee's signed prekey, names it."""
    now = clock.now()
    created_at = int(now) if exact_time else nip59.wrap_timestamp(now)
    return nip59.wrap_ratchet(
        keys, receiver_hex, call_id, sealed, rumor_at, created_at, pow_bits, prekey, one_time
    )


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
