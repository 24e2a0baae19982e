"""Call lanes: wraps of a call that its receiver knows before decrypting anything.

A gift wrap is signed by a one-time key, and who sealed it is known only after one
decryption (an ECDH, the dearest step of receiving). Under a flood of wraps from fresh
keys the receiver cannot open them all, and sheds some unopened: a real peer's wrap among
them waited for a re-send. So a sender picks the one-time key of each wrap in a call from
a secret only the two ends of the call hold (their ECDH, with the call id), and the
receiver, which computed the next few such keys beforehand, knows the wrap by its public
key alone (docs/PROTOCOL.md 3.13).

To anyone else the key is an HMAC output, as random as a fresh key. A receiver that does
not know lanes reads the wrap as any other. Recognising a wrap only lets it past the
shedding: it is then opened and checked like every wrap.

Sans-IO: secrets and counters only; making the key pair is the caller's (nostr-sdk).
"""

from __future__ import annotations

import hashlib
import hmac

LABEL = b"p2p-comm lane v1"
MINUTE = 60  # seconds per lane period: the sender's clock, floor(unix time / 60)
PER_MINUTE = 16_384  # lane keys a sender uses per call and period; past that, fresh keys
WINDOW = 16  # keys a receiver expects past the highest it has seen, per call and period
SKEW = 1  # periods either side of the receiver's own that it expects: clocks a minute apart

_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 n


def shared_x(secret: bytes, peer_hex: str) -> bytes:
    """X: the x-coordinate of the ECDH point of our secp256k1 secret key and the peer's
    (x-only) public key, unhashed: the shared secret NIP-04 and NIP-44 start from. Both
    ends of a call get the same 32 bytes; nobody else can."""
    from cryptography.hazmat.primitives.asymmetric import ec  # as ratchet.py: when used

    curve = ec.SECP256K1()
    private = ec.derive_private_key(int.from_bytes(secret, "big"), curve)
    public = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x02" + bytes.fromhex(peer_hex))
    return private.exchange(ec.ECDH(), public)


def lane_secret(
    shared: bytes, call_id: str, sender_hex: str, period: int, index: int
) -> bytes | None:
    """The one-time secret key of ``sender_hex``'s wrap number ``index`` in ``period`` of
    call ``call_id`` between the two keys whose `shared_x` is ``shared``: HMAC-SHA256 keyed
    with LABEL and ``shared``, over the call id (ASCII), the sender's public key (32
    bytes), the period (8 bytes) and the index (4 bytes), big-endian. None in the
    1-in-2^128 case that it is not a valid secp256k1 secret key (the sender then uses a
    fresh key, and the receiver expects nothing there)."""
    data = (
        call_id.encode()
        + bytes.fromhex(sender_hex)
        + period.to_bytes(8, "big")
        + index.to_bytes(4, "big")
    )
    secret = hmac.new(LABEL + shared, data, hashlib.sha256).digest()
    return secret if 0 < int.from_bytes(secret, "big") < _ORDER else None


def period_of(now: float) -> int:
    """The lane period of unix time ``now``."""
    return int(now // MINUTE)


class LaneCounter:
    """A sender's next lane index per call in the current period.

    Indices are not kept across restarts: a sender that signed lane keys in a period
    before a restart uses none again until a later period (``started``: the last period
    it must not use), so it never signs two wraps with one lane key (the relays would
    see two wraps of one call share a key)."""

    def __init__(self, started: int) -> None:
        self._started = started
        self._period = started
        self._next: dict[str, int] = {}

    def take(self, call_id: str, now: float) -> tuple[int, int] | None:
        """(period, index) for the next wrap of ``call_id``, or None: no lane now (nor in
        a period before the latest one used: a clock set back must not number again)."""
        period = period_of(now)
        if period <= self._started or period < self._period:
            return None
        if period > self._period:
            self._period, self._next = period, {}
        index = self._next.get(call_id, 0)
        if index >= PER_MINUTE:
            return None
        self._next[call_id] = index + 1
        return period, index
