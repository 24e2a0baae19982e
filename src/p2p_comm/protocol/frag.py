"""Fragments: a sequenced message whose wrap no relay of the peer takes, carried in pieces.

A relay may refuse a wrap as too large although its NIP-11 document promised more (or said
nothing). The sender then re-sends that message, unchanged, as ``frag`` messages (feature
level 4, docs/PROTOCOL.md 3.5): each carries the call, the ``seq`` of the message it belongs
to, its index ``i`` of ``n``, the ``size`` of the whole encoded message and a slice of it.
Slices are equal (the last one shorter), so ``n`` and ``size`` fix every boundary: a piece of
the wrong length is junk, and two cuttings of one message (different ``n``) are kept apart.

The receiver joins the pieces by (sender, call, seq) and decodes the whole as if it had come
in one wrap; the call core then de-duplicates and receipts it as usual. Incomplete messages
are kept in memory only, bounded in count, size and age: the sender re-sends every piece on
each retransmission, so one lost to a restart or an eviction comes again.

Pure: the clock is passed in; nothing here touches the network or the disk.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from . import wire

FRAG_LEVEL = 4  # the peer's `pv` from which it reassembles fragments
MAX_MESSAGE_BYTES = wire.MAX_CONTENT_BYTES  # the largest whole message we accept
MIN_FRAGMENT_BYTES = 512  # smaller slices mean a relay too small for any call message
MAX_FRAGMENT_BYTES = wire.MAX_FRAGMENT_BYTES
MAX_FRAGMENTS = -(-MAX_MESSAGE_BYTES // MIN_FRAGMENT_BYTES)  # 79
MAX_PARTIAL = 64  # messages being joined at once, over all peers (64 x 40 KB at most)
MAX_PARTIAL_PER_SENDER = 16
PARTIAL_TTL = 600.0  # seconds an incomplete message is kept; a retransmission starts it again


class FragmentError(ValueError):
    """A fragment that is junk, oversized or inconsistent: dropped."""


def usable(peer_level: int) -> bool:
    """Whether a peer that advertised ``peer_level`` reassembles fragments."""
    return peer_level >= FRAG_LEVEL


def step_of(size: int, count: int) -> int:
    """The length of every slice but the last, for ``size`` bytes cut into ``count``."""
    return -(-size // count)


def split(message: wire.WireMessage, piece_bytes: int) -> list[wire.WireMessage]:
    """The fragments that carry ``message``, each slice at most ``piece_bytes`` long (at
    least two pieces: a message that fitted whole would not need this)."""
    if message.type not in wire.SEQUENCED:
        raise ValueError("only sequenced messages are fragmented")
    return split_encoded(message.call, message.seq, message.encode(), piece_bytes)


def split_encoded(call: str, seq: int, content: str, piece_bytes: int) -> list[wire.WireMessage]:
    """Like `split`, for a message kept already encoded (the outbox keeps its content)."""
    data = content.encode()
    size = len(data)
    if not 0 < size <= MAX_MESSAGE_BYTES:
        raise ValueError(f"a message of {size} bytes cannot be fragmented")
    piece = max(MIN_FRAGMENT_BYTES, min(piece_bytes, MAX_FRAGMENT_BYTES))
    count = max(2, -(-size // piece))
    if count > MAX_FRAGMENTS or count > size:
        raise ValueError(f"{size} bytes in pieces of {piece} would need {count} fragments")
    step = step_of(size, count)
    return [
        wire.WireMessage(
            "frag",
            call,
            seq,
            0,
            {"i": i, "n": count, "size": size, "data": data[i * step : (i + 1) * step]},
        )
        for i in range(count)
    ]


def _check(fragment: wire.WireMessage) -> tuple[int, int, int, bytes]:
    """The fragment's (i, n, size, data), or FragmentError if it cannot be one of a set."""
    if fragment.type != "frag":
        raise FragmentError("not a fragment")
    body = fragment.body
    i, count, size, data = body["i"], body["n"], body["size"], body["data"]
    if not 0 <= i < count <= MAX_FRAGMENTS or not 0 < size <= MAX_MESSAGE_BYTES:
        raise FragmentError("fragment index, count or size out of range")
    step = step_of(size, count)
    if step * (count - 1) >= size:
        raise FragmentError(f"{size} bytes cannot be cut into {count} non-empty pieces")
    expected = step if i < count - 1 else size - step * (count - 1)
    if len(data) != expected:
        raise FragmentError(f"piece {i} of {count} has {len(data)} bytes, not {expected}")
    return i, count, size, data


@dataclass
class _Partial:
    count: int
    size: int
    started: float
    pieces: dict[int, bytes] = field(default_factory=dict)


Key = tuple[str, str, int, int]  # (sender, call, seq, pieces)


class Reassembler:
    """Joins fragments into the messages they carry, in bounded memory."""

    def __init__(
        self,
        max_partial: int = MAX_PARTIAL,
        per_sender: int = MAX_PARTIAL_PER_SENDER,
        ttl: float = PARTIAL_TTL,
    ) -> None:
        self.max_partial = max_partial
        self.per_sender = per_sender
        self.ttl = ttl
        self._partials: OrderedDict[Key, _Partial] = OrderedDict()

    def __len__(self) -> int:
        return len(self._partials)

    def held_bytes(self) -> int:
        return sum(len(p) for partial in self._partials.values() for p in partial.pieces.values())

    def add(self, sender: str, fragment: wire.WireMessage, now: float) -> wire.WireMessage | None:
        """Take one fragment from ``sender`` (authenticated by its seal): the whole message
        once its last piece is in, else None. Raises FragmentError for one to drop."""
        i, count, size, data = _check(fragment)
        self._expire(now)
        # A cutting is named by its piece count: a sender that learned a smaller relay limit
        # cuts the same message anew, and pieces of two cuttings must never be mixed.
        key = (sender, fragment.call, fragment.seq, count)
        partial = self._partials.get(key)
        if partial is None:
            self._make_room(sender)
            partial = self._partials[key] = _Partial(count, size, now)
        elif partial.size != size:
            raise FragmentError(f"seq {fragment.seq}: pieces disagree on the message size")
        self._partials.move_to_end(key)
        partial.pieces.setdefault(i, data)
        if len(partial.pieces) < count:
            return None
        # Every cutting of this message goes: the call core takes it once, and later
        # pieces of another cutting only start a partial that ages out.
        for other in [k for k in self._partials if k[:3] == key[:3]]:
            del self._partials[other]
        return _join(fragment, partial)

    def _expire(self, now: float) -> None:
        for key in [k for k, p in self._partials.items() if now - p.started > self.ttl]:
            del self._partials[key]

    def _make_room(self, sender: str) -> None:
        """Before a new partial: the sender's oldest goes past its share; past the total,
        the oldest of whichever sender holds the most, so a sender within its share is
        never pushed out by others (a retransmission brings an evicted message again).
        Only peers in a call with us get here (`Inbound` checks first)."""
        mine = [key for key in self._partials if key[0] == sender]
        if len(mine) >= self.per_sender:
            del self._partials[mine[0]]
        while len(self._partials) >= self.max_partial:
            held = Counter(key[0] for key in self._partials)
            heaviest = max(held, key=lambda s: (held[s], s == sender))
            del self._partials[next(k for k in self._partials if k[0] == heaviest)]


def _join(fragment: wire.WireMessage, partial: _Partial) -> wire.WireMessage:
    whole = b"".join(partial.pieces[i] for i in range(partial.count))
    try:
        content = whole.decode()
    except UnicodeDecodeError:
        raise FragmentError("the joined message is not UTF-8") from None
    try:
        message = wire.decode(content)
    except wire.WireError as exc:
        raise FragmentError(f"the joined message is invalid: {exc}") from None
    if message.type not in wire.SEQUENCED:
        raise FragmentError(f"fragments may not carry {message.type!r}")
    if (message.call, message.seq) != (fragment.call, fragment.seq):
        raise FragmentError("the joined message is not the one its fragments name")
    return message
