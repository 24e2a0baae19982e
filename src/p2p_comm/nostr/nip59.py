"""NIP-59 gift wraps: rumor, seal and wrap, with a ``created_at`` we choose.

We assemble the three layers ourselves from SDK primitives: NIP-44 encryption
(``nip44_encrypt``/``nip44_decrypt``), BIP-340 signatures (``Keys.sign_schnorr``, checked
with ``Event.verify``) and NIP-01 ids (``nip01``). Two reasons:

- The SDK's ``nip59_make_gift_wrap`` backdates the wrap by a random 0-2 days: relays with a
  ``created_at`` floor (often 6 h) refuse most such wraps, and a receiver coming back with
  ``since = last_seen - lookback`` misses those backdated past its lookback. A retransmit
  is a fresh wrap of the same rumor, so relays forward it again.
- Speed. Building each layer with ``EventBuilder`` and handing our ``Keys`` to the SDK as a
  signer (which calls back into Python for every signature and encryption) took about 100
  calls into the bindings per wrap, at 10-40 us each: 0.6 ms a wrap against 0.35 ms now
  (100 B), and about a third of the daemon's CPU per message.

The seal is dated like the SDK dates it (randomly up to two days back): only the receiver
sees it, who reads the rumor's own ``created_at``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nostr_sdk as ns

from p2p_comm.nostr import kinds, nip01

WRAP_JITTER = 900
"""Most seconds a wrap's ``created_at`` lies before the real send time.

A little jitter keeps relays from reading the exact moment of each message (and from lining
up a sender's seal with its wraps); 15 minutes stays far inside every receiver's lookback
and any relay's 6 h ``created_at`` floor, unlike the SDK's 2 days.
"""

SEAL_JITTER = 2 * 86400
"""Most seconds a seal's (encrypted, receiver-only) ``created_at`` lies before the rumor's."""

_V2 = ns.Nip44Version.V2


class UnwrapError(ValueError):
    """A kind-1059 event we cannot accept; ``str()`` is a short reason for the log."""


@dataclass(frozen=True)
class Unwrapped:
    """What a verified gift wrap carried: the rumor and its proven author."""

    sender: str
    """Hex public key that signed the seal, equal to the rumor's author (checked)."""
    kind: int
    content: str
    created_at: int
    """The rumor's own timestamp, as its author set it (the wrap's is jittered)."""
    rumor_id: str
    """Hex NIP-01 id of the rumor, recomputed and checked against the one it claims."""
    ratchet_call: str | None = None
    """The call whose ratchet the seal's content was under (None: NIP-44, as before)."""


@dataclass(frozen=True)
class Rumor:
    """An unsigned event with its id (NIP-59's rumor): what a seal encrypts."""

    pubkey: str
    created_at: int
    kind: int
    tags: tuple[tuple[str, ...], ...]
    content: str
    id: str

    def to_json(self) -> str:
        return nip01.compact(
            {
                "id": self.id,
                "pubkey": self.pubkey,
                "created_at": self.created_at,
                "kind": self.kind,
                "tags": [list(tag) for tag in self.tags],
                "content": self.content,
            }
        )


def make_rumor(
    author_hex: str,
    kind: int,
    content: str,
    created_at: int,
    tags: Sequence[Sequence[str]] = (),
) -> Rumor:
    """A rumor by ``author_hex`` (lowercase hex) with its id set, as NIP-59 asks."""
    frozen = tuple(tuple(tag) for tag in tags)
    rumor_id = nip01.event_id(author_hex, created_at, kind, frozen, content)
    return Rumor(author_hex, created_at, kind, frozen, content, rumor_id)


def rumor_to_json(rumor: Rumor) -> str:
    """The rumor as NIP-01 JSON with its id."""
    return rumor.to_json()


def rumor_from_json(text: str) -> Rumor:
    """A stored rumor back; ``ValueError`` if it is not one or its id does not match."""
    try:
        fields = nip01.parse_unsigned(text)
    except ValueError as exc:
        raise ValueError(f"not a rumor: {exc}") from None
    return make_rumor(
        fields["pubkey"], fields["kind"], fields["content"], fields["created_at"], fields["tags"]
    )


# SDK objects we need again and again, made once: each construction crosses into Rust.
_public_keys: dict[str, ns.PublicKey] = {}
_own: dict[int, tuple[ns.Keys, ns.SecretKey, str]] = {}


def _public_key(hex_key: str) -> ns.PublicKey:
    key = _public_keys.get(hex_key)
    if key is None:
        if len(_public_keys) >= 4096:
            _public_keys.clear()
        key = _public_keys[hex_key] = ns.PublicKey.parse(hex_key)
    return key


def _secrets_of(keys: ns.Keys) -> tuple[ns.SecretKey, str]:
    """(secret key, public hex) of ``keys``, remembered per ``Keys`` object (kept alive
    in the cache, so its ``id`` cannot be reused by another)."""
    known = _own.get(id(keys))
    if known is None or known[0] is not keys:
        if len(_own) >= 64:
            _own.clear()
        known = _own[id(keys)] = (keys, keys.secret_key(), keys.public_key().to_hex())
    return known[1], known[2]


def wrap(
    keys: ns.Keys,
    receiver_hex: str,
    rumor: Rumor,
    created_at: int,
    pow_bits: int = 0,
    one_time: ns.Keys | None = None,
) -> ns.Event:
    """Seal ``rumor`` with ``keys`` and gift-wrap it for ``receiver_hex``, dated ``created_at``.

    The wrap is signed by a fresh one-time key and tagged ``p`` with the receiver only.
    ``pow_bits`` > 0 mines the wrap (NIP-13) for relays that demand it: blocking, about
    a second at 20 bits, so call it in a thread then. ``one_time``: the wrap's key, when
    the caller chose it (a call lane, protocol/lane.py); else a fresh one.
    """
    secret, me = _secrets_of(keys)
    if rumor.pubkey != me:
        # The receiver would drop it as forged ("sender mismatch"): fail here, loudly.
        raise ValueError("the rumor's author is not the key sealing it")
    receiver = _public_key(receiver_hex.lower())
    sealed = ns.nip44_encrypt(secret, receiver, rumor.to_json(), _V2)
    return _seal_and_wrap(
        keys, receiver_hex, (), sealed, rumor.created_at, created_at, pow_bits, one_time
    )


def wrap_ratchet(
    keys: ns.Keys,
    receiver_hex: str,
    call_id: str,
    ciphertext: str,
    rumor_at: int,
    created_at: int,
    pow_bits: int = 0,
    prekey: str = "",
    one_time: ns.Keys | None = None,
) -> ns.Event:
    """A gift wrap whose seal carries a call ratchet message (docs/PROTOCOL.md 3.12.7)
    instead of NIP-44: the seal is signed by ``keys`` as always, tagged ``["c", call_id]``,
    and its content is ``ciphertext`` (base64 of the ratchet message of the rumor's JSON,
    made once by the caller and kept: a retransmission seals and wraps the same bytes).
    ``prekey``: a request encrypted to the receiver's signed prekey names it in a
    ``["spk", hex]`` tag (3.12.2), so the receiver can set up its side to read it."""
    tags: tuple[tuple[str, ...], ...] = ((RATCHET_TAG, call_id),)
    if prekey:
        tags += ((PREKEY_TAG, prekey),)
    return _seal_and_wrap(
        keys, receiver_hex, tags, ciphertext, rumor_at, created_at, pow_bits, one_time
    )


RATCHET_TAG = "c"
"""The seal tag that names the call whose ratchet encrypted the seal's content."""

PREKEY_TAG = "spk"
"""The seal tag that names the receiver's signed prekey a request was encrypted to."""


def _seal_and_wrap(
    keys: ns.Keys,
    receiver_hex: str,
    seal_tags: tuple[tuple[str, ...], ...],
    seal_content: str,
    rumor_at: int,
    created_at: int,
    pow_bits: int,
    one_time: ns.Keys | None = None,
) -> ns.Event:
    _, me = _secrets_of(keys)
    receiver = _public_key(receiver_hex.lower())
    seal_at = max(0, rumor_at - secrets.randbelow(SEAL_JITTER + 1))
    seal = nip01.signed_json(keys, me, seal_at, kinds.SEAL, seal_tags, seal_content)
    one_time = one_time or ns.Keys.generate()
    content = ns.nip44_encrypt(one_time.secret_key(), receiver, seal, _V2)
    tags = (("p", receiver_hex.lower()),)
    if pow_bits > 0:
        from p2p_comm.nostr import nip13  # only relays demanding PoW need it

        unsigned = (
            ns.EventBuilder(ns.Kind(kinds.GIFT_WRAP), content)
            .tags([ns.Tag.public_key(receiver)])
            .custom_created_at(ns.Timestamp.from_secs(created_at))
            .finalize_unsigned(one_time.public_key())
        )
        return nip13.mine(one_time, unsigned, pow_bits)
    one_time_hex = one_time.public_key().to_hex()
    document = nip01.signed_json(one_time, one_time_hex, created_at, kinds.GIFT_WRAP, tags, content)
    return ns.Event.from_json(document)


def wrap_timestamp(now: float) -> int:
    """A wrap's ``created_at``: ``now`` less a uniformly random 0..WRAP_JITTER seconds."""
    return int(now) - secrets.randbelow(WRAP_JITTER + 1)


@dataclass(frozen=True)
class Sealed:
    """A wrap's outer layer opened: the seal inside, not yet checked. ``sender`` is only
    what the seal claims until `open_seal` has verified it."""

    sender: str
    text: str
    content: str
    call: str | None = None
    """The call named by a ``["c", ...]`` tag: the content is a ratchet message of it."""
    prekey: str | None = None
    """The prekey named by a ``["spk", ...]`` tag (a request encrypted to our prekey)."""


Opener = Callable[["Sealed"], str]
"""How a receiver reads a ratchet seal (`Sealed.call` set) -> the rumor's JSON; it raises
for a seal it cannot read (``ratchet.RatchetError`` and its kinds)."""


def unwrap(keys: ns.Keys, event: ns.Event, verified: bool = False) -> Unwrapped:
    """Open a gift wrap addressed to ``keys``; ``UnwrapError`` for anything not genuine.

    Checked: the wrap's and the seal's ids and signatures, both decryptions, the seal's
    kind, the rumor's shape and id, and that the rumor's author signed the seal.
    ``verified``: the wrap's own id and signature were checked already (nostr-sdk drops
    an event from a relay whose id or signature is wrong before handing it on), so they
    are not checked twice: a flood of junk wraps paid for both.
    """
    return open_seal(keys, open_wrap(keys, event, verified))


def open_wrap(
    keys: ns.Keys,
    event: ns.Event,
    verified: bool = False,
    read: tuple[int, str] | None = None,
) -> Sealed:
    """The first half of `unwrap`: the wrap's layer (one decryption). What the seal
    claims lets a receiver turn away a flood from keys it does not know before paying
    for the second decryption and the seal's signature. ``read``: the event's kind and
    content, already read out of the SDK by the caller (each read copies across the
    bindings: under a flood, a few microseconds a wrap)."""
    kind, content = read if read is not None else (event.kind().as_u16(), event.content())
    if kind != kinds.GIFT_WRAP:
        raise UnwrapError(f"kind {kind} is not a gift wrap")
    if not verified and not event.verify():
        raise UnwrapError("bad wrap: id or signature does not match")
    secret, _ = _secrets_of(keys)
    try:
        seal_json = ns.nip44_decrypt(secret, event.author(), content)
    except Exception:  # NostrSdkError variants: a bad MAC, padding or encoding
        raise UnwrapError("not for us: cannot decrypt") from None
    try:
        seal = json.loads(seal_json)
    except ValueError:
        raise UnwrapError("bad seal: not an event") from None
    if not isinstance(seal, dict) or seal.get("kind") != kinds.SEAL:
        kind_of = seal.get("kind") if isinstance(seal, dict) else None
        raise UnwrapError(f"bad seal: kind {kind_of!r}")
    pubkey, content = seal.get("pubkey"), seal.get("content")
    if not isinstance(pubkey, str) or not isinstance(content, str):
        raise UnwrapError("bad seal: not an event")
    tags = seal.get("tags")
    call = _tag(tags, RATCHET_TAG)
    prekey = _tag(tags, PREKEY_TAG) if call is not None else None
    return Sealed(pubkey.lower(), seal_json, content, call, prekey)


def _tag(tags: object, name: str) -> str | None:
    """The value of the first tag ``name`` in a seal's tags, if any."""
    if not isinstance(tags, list) or not tags:
        return None
    for tag in tags:
        if isinstance(tag, list) and len(tag) >= 2 and tag[0] == name:
            return str(tag[1])
    return None


def check_seal(sealed: Sealed) -> None:
    """Raise `UnwrapError` unless the seal's id and signature are its sender's."""
    try:
        verified = ns.Event.from_json(sealed.text).verify()
    except Exception:
        raise UnwrapError("bad seal: not an event") from None
    if not verified:
        raise UnwrapError("bad seal: id or signature does not match")


def open_seal(
    keys: ns.Keys, sealed: Sealed, ratchet: Opener | None = None, verify: bool = True
) -> Unwrapped:
    """The second half of `unwrap`: the seal's signature, its content and the rumor. A
    ratchet seal (`wrap_ratchet`) is read by ``ratchet``; without one it is refused.
    ``verify=False`` leaves the signature to the caller (`check_seal`), who must check it
    before believing who sent the rumor: a receiver may first see whether the rumor leads
    anywhere (a ratchet seal is always checked first: reading it spends a key)."""
    if verify or sealed.call is not None:
        check_seal(sealed)
    if sealed.call is not None:
        if ratchet is None:
            raise UnwrapError("a ratchet seal, and no ratchet to read it")
        rumor_json = ratchet(sealed)
    else:
        secret, _ = _secrets_of(keys)
        try:
            rumor_json = ns.nip44_decrypt(secret, _public_key(sealed.sender), sealed.content)
        except Exception:
            raise UnwrapError("bad seal: cannot decrypt its content") from None
    try:
        rumor = nip01.parse_unsigned(rumor_json)
    except ValueError as exc:
        reason = str(exc)
        if "id does not match" in reason:
            raise UnwrapError("rumor id does not match its content") from None
        raise UnwrapError(f"bad rumor: {reason}") from None
    if rumor["pubkey"] != sealed.sender:
        raise UnwrapError("forged: the rumor's author did not sign the seal")
    return Unwrapped(
        sender=sealed.sender,
        kind=rumor["kind"],
        content=rumor["content"],
        created_at=rumor["created_at"],
        rumor_id=rumor["id"],
        ratchet_call=sealed.call,
    )
