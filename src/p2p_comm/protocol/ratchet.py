"""Forward secrecy for one pairwise call: an X3DH-shaped set-up and a Double Ratchet.

Specified in docs/PROTOCOL.md 3.12; on the wire at feature level 5 (3.12.7,
daemon/relays/secrecy.py).
The shape is Signal's Double Ratchet specification (signal.org/docs/specifications/
doubleratchet, revision 4) with the functions it recommends:

- ``GENERATE_DH``/``DH``: X25519 (RFC 7748);
- ``KDF_RK(rk, dh_out)``: HKDF-SHA256 (RFC 5869) with ``rk`` as salt, ``dh_out`` as input key
  material, 64 bytes out (the new root key, then a chain key);
- ``KDF_CK(ck)``: HMAC-SHA256 keyed by ``ck``: of the byte 0x01 for the message key, of 0x02
  for the next chain key;
- ``ENCRYPT(mk, plaintext, ad)``: ChaCha20-Poly1305 (RFC 8439) under a key and nonce both
  derived from ``mk`` with HKDF-SHA256: one of the nonce schemes the specification allows
  ("derived from mk alongside an independent AEAD encryption key"), safe because a message
  key encrypts exactly one message, and deterministic, so test vectors fix every byte.

Why X25519 and the ``cryptography`` package rather than secp256k1 with NIP-44: nostr-sdk
exposes NIP-44 only as encryption between two key pairs, with a random nonce and no way to
encrypt under a derived symmetric key, so a chain of message keys cannot be built on it and
its output cannot be given as vectors; ``cryptography`` has every primitive above, each a
published construction backed by OpenSSL. Nothing below those calls is written here. (HMAC
is the standard library's ``hmac.digest``, the same OpenSSL HMAC, without an object per call.)

The set-up (X3DH in shape, docs/PROTOCOL.md 3.12.2): the caller's request carries an
ephemeral X25519 key ``ek`` and, optionally, the callee's signed prekey ``spk`` (from its
presence) that it used; the callee's accept carries its own ephemeral ``ek``, which is also
its first ratchet key. Both travel inside the seal, so the identity that signs each seal
authenticates them; no Diffie-Hellman with the secp256k1 identity keys is done (they are
signing keys, and the signature already binds the ephemeral key to its owner). The initial
root key is public (derived from the call id and both identities only): secrecy comes from
the first ``KDF_RK``, which mixes in DH(caller's ``ek``, callee's ``spk`` or ``ek``).

Pure and synchronous like the rest of ``protocol``: the clock is passed in, randomness only
where a new ratchet key is generated (and even that can be passed in, for vectors).
"""

from __future__ import annotations

import hmac
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# The primitives are imported where first used: `cryptography`'s bindings cost an idle
# daemon about 7 MiB of private memory, and a daemon with no call under the ratchet needs
# none of them (this module's types and errors are imported by the daemon at start).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

RATCHET_LEVEL = 5  # the feature level (`pv`) that carries this (docs/PROTOCOL.md 3.12.7)

LABEL = b"p2p-comm/ratchet/v1"
INFO_INIT = LABEL + b"/init"
INFO_ROOT = LABEL + b"/root"
INFO_MESSAGE = LABEL + b"/message"
INIT_IKM = b"\xff" * 32  # X3DH's F for X25519: the input key material of the initial root
ZERO_SALT = b"\x00" * 32

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_VERSION = 1
HEADER_BYTES = 1 + KEY_BYTES + 4 + 4  # version, ratchet key, pn, n
AD_BYTES = len(LABEL) + 16 + 32 + 32  # label, call id, initiator, responder
MAX_COUNTER = 0xFFFF_FFFF  # n and pn are 32-bit on the wire

MAX_SKIP = 1000
"""Most message keys one header may make us skip in one chain (Signal's MAX_SKIP). A header
further ahead is refused before any derivation: an n of 10**9 costs a comparison. An honest
sender this far ahead is not lost: the call layer re-sends its oldest unreceipted messages,
the gap fills, and the refused message decrypts when it comes again."""
MAX_SKIPPED = 2000
# A saved state may hold more: the keys of messages read and not yet taken are saved as
# skipped keys too (`to_dict(unread)`), at most one per message a daemon keeps read.
MAX_SAVED_SKIPPED = MAX_SKIPPED + 8192
"""Most skipped message keys a session keeps in all. A message that would skip past it is
refused for now (`TooFarAhead`), never a kept key erased: the oldest kept key is the one of
the message its call waits for, and erasing it left that call unable to take anything more
from any re-send (a burst with the receiver's gate shedding a third of it). The gap-filling
messages the sender re-sends first need no new skip, so the call still moves on."""
SKIPPED_TTL = 2 * 86400 + 3600
"""Seconds a skipped message key is kept: the two-day offline window plus the hour of
lookback slack (docs/PROTOCOL.md 3.3). A message delayed longer is not decryptable."""
MAX_OLD_CHAINS = 16
"""Peer ratchet keys of finished receiving chains remembered (public keys, no secret), so a
late duplicate from one of them is answered as gone without a Diffie-Hellman."""

_HEX = re.compile(r"[0-9a-f]*")


class RatchetError(ValueError):
    """A message we cannot decrypt or a call we cannot set up. The session is unchanged."""


class MessageKeyGone(RatchetError):
    """The header names a message key already used, expired or evicted: a duplicate or a
    replay (the call layer de-duplicates by ``seq`` before it gets here)."""


class TooFarAhead(RatchetError):
    """The header would make us skip more than ``MAX_SKIP`` keys: refused for now; an honest
    sender's retransmission decrypts once the gap before it has filled."""


# --- The specification's functions -----------------------------------------------------


def kdf_rk(rk: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    """``KDF_RK``: (new root key, new chain key) from the root key and a DH output."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    out = HKDF(algorithm=hashes.SHA256(), length=64, salt=rk, info=INFO_ROOT).derive(dh_out)
    return out[:32], out[32:]


def kdf_ck(ck: bytes) -> tuple[bytes, bytes]:
    """``KDF_CK``: (next chain key, message key) from a chain key."""
    return hmac.digest(ck, b"\x02", "sha256"), hmac.digest(ck, b"\x01", "sha256")


def message_secrets(mk: bytes) -> tuple[bytes, bytes]:
    """The ChaCha20-Poly1305 key and nonce that message key ``mk`` stands for."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    length = KEY_BYTES + NONCE_BYTES
    out = HKDF(algorithm=hashes.SHA256(), length=length, salt=ZERO_SALT, info=INFO_MESSAGE).derive(
        mk
    )
    return out[:KEY_BYTES], out[KEY_BYTES:]


def encrypt_with(mk: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """``ENCRYPT``: ciphertext with its 16-byte tag appended."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key, nonce = message_secrets(mk)
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, ad)


def decrypt_with(mk: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    """``DECRYPT``; `RatchetError` if the tag does not verify."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key, nonce = message_secrets(mk)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, ad)
    except InvalidTag:
        raise RatchetError("the message does not authenticate") from None


def dh(private: bytes, public: bytes) -> bytes:
    """``DH``: X25519 of a raw private and a raw public key. `RatchetError` for a public key
    of small order (the shared secret would be all zeros)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError:
        raise RatchetError("unusable ratchet key") from None


def public_of(private: bytes) -> bytes:
    """The raw X25519 public key of a raw private key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def new_key() -> X25519PrivateKey:
    """A fresh X25519 private key (an ephemeral or a ratchet key)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.generate()


def associated_data(call: str, initiator: str, responder: str) -> bytes:
    """What every message of the call authenticates besides its header: the label, the call
    id (16 bytes) and both identities (32-byte x-only keys), caller first. Fixed length, so
    the header and any extra data after it are unambiguous."""
    return (
        LABEL
        + bytes.fromhex(_hexfield(call, 16, "call"))
        + bytes.fromhex(_hexfield(initiator, 32, "initiator"))
        + bytes.fromhex(_hexfield(responder, 32, "responder"))
    )


def initial_root(ad: bytes) -> bytes:
    """The root key before the first ratchet step: public, but bound to call and identities
    so every later key is. HKDF-SHA256(ikm = 32 x 0xff, salt = 32 x 0x00, info = INFO_INIT
    + the associated data without its label)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = INFO_INIT + ad[len(LABEL) :]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ZERO_SALT, info=info).derive(INIT_IKM)


# --- Headers, messages and the set-up's plain data -------------------------------------


@dataclass(frozen=True)
class Header:
    """The specification's HEADER: the sender's ratchet public key, the length of its
    previous sending chain, and this message's number in the current one."""

    dh: bytes
    pn: int
    n: int

    def encode(self) -> bytes:
        """41 bytes: version 0x01, the key, pn and n as unsigned 32-bit big-endian."""
        return bytes([HEADER_VERSION]) + self.dh + struct.pack(">II", self.pn, self.n)

    @classmethod
    def decode(cls, data: bytes) -> Header:
        if len(data) != HEADER_BYTES or data[0] != HEADER_VERSION:
            raise RatchetError("not a ratchet header")
        pn, n = struct.unpack(">II", data[1 + KEY_BYTES :])
        return cls(bytes(data[1 : 1 + KEY_BYTES]), pn, n)


def split_message(data: bytes) -> tuple[Header, bytes]:
    """A ratchet message (header then ciphertext with tag) cut in its two parts."""
    if len(data) < HEADER_BYTES + TAG_BYTES:
        raise RatchetError("too short for a ratchet message")
    return Header.decode(data[:HEADER_BYTES]), data[HEADER_BYTES:]


@dataclass(frozen=True)
class RequestKeys:
    """What a call request carries for the set-up: the caller's ephemeral public key and,
    if it used one, the callee's signed prekey (as the callee's presence announced it)."""

    ek: bytes
    spk: bytes | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"ek": self.ek.hex()}
        if self.spk is not None:
            out["spk"] = self.spk.hex()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestKeys:
        spk = data.get("spk")
        return cls(
            _key(data.get("ek"), "ek"),
            None if spk is None else _key(spk, "spk"),
        )


@dataclass(frozen=True)
class AcceptKeys:
    """What an accept carries: the callee's ephemeral public key, its first ratchet key."""

    ek: bytes

    def to_dict(self) -> dict[str, str]:
        return {"ek": self.ek.hex()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AcceptKeys:
        return cls(_key(data.get("ek"), "ek"))


# --- The session -----------------------------------------------------------------------


class Session:
    """One side's Double Ratchet state for one pairwise call.

    Build it with `initiator_session` or `responder_session`, or `from_dict` after a
    restart. `encrypt` and `decrypt` change it; the daemon must store the new state (with
    `to_dict`) in the same transaction as the message it concerns, and publish an encrypted
    message only after that commit: a crash between the two would otherwise encrypt another
    message under the same key and nonce.

    Erasure: a chain key is replaced by the next on every message, and a message key lives
    only inside the call that uses it; a skipped key is deleted when used or when older than
    ``SKIPPED_TTL``; our ratchet private key is dropped as soon as the peer has answered it
    (a new one is made when we next send). The serialised state after decrypting message k
    therefore holds nothing that decrypts k again. Deleting the stored state when the call
    ends (and its retransmission window with it) erases the rest.
    """

    def __init__(self, call: str, initiator: str, responder: str, role: str) -> None:
        if role not in ("initiator", "responder"):
            raise ValueError(f"unknown role {role!r}")
        self.call, self.initiator, self.responder, self.role = call, initiator, responder, role
        self.ad = associated_data(call, initiator, responder)
        self.rk = initial_root(self.ad)
        self.dhs: bytes | None = None  # our ratchet private key; None until we next send
        self.dhs_pub: bytes | None = None
        self.dhr: bytes | None = None  # the peer's current ratchet public key
        self.cks: bytes | None = None
        self.ckr: bytes | None = None
        self.ns = 0
        self.nr = 0
        self.pn = 0
        # (peer ratchet key, n) -> (message key, when it was skipped); insertion order is
        # age order, so the oldest is evicted first.
        self.skipped: dict[tuple[bytes, int], tuple[bytes, float]] = {}
        self.old_dhr: list[bytes] = []
        # The (peer ratchet key, n) and message key of the message `decrypt` read last;
        # never saved. The daemon keeps it while that message waits to be taken.
        self.last_read: tuple[tuple[bytes, int], bytes] | None = None

    # -- sending --

    @property
    def can_send(self) -> bool:
        """Whether `encrypt` works now: false only for a caller without a prekey until the
        accept (or the callee's first message) has arrived."""
        return self.cks is not None or (self.dhr is not None and self.dhs is None)

    def encrypt(
        self, plaintext: bytes, extra_ad: bytes = b"", *, next_key: X25519PrivateKey | None = None
    ) -> bytes:
        """The ratchet message (header, then ciphertext and tag) carrying ``plaintext``.

        ``extra_ad`` is authenticated too (the call layer's clear fields); the receiver must
        pass the same. ``next_key`` is the new ratchet key to use if a Diffie-Hellman step is
        due (the first message after the peer's turn); by default a fresh random one.
        """
        if self.cks is None:
            if self.dhr is None or self.dhs is not None:
                raise RatchetError("no sending chain before the peer's ratchet key")
            key = next_key if next_key is not None else new_key()
            private = key.private_bytes_raw()
            self.rk, self.cks = kdf_rk(self.rk, dh(private, self.dhr))
            self.dhs, self.dhs_pub, self.ns = private, key.public_key().public_bytes_raw(), 0
        if self.ns > MAX_COUNTER or self.dhs_pub is None:
            raise RatchetError("sending chain exhausted")
        self.cks, mk = kdf_ck(self.cks)
        header = Header(self.dhs_pub, self.pn, self.ns).encode()
        self.ns += 1
        return header + encrypt_with(mk, plaintext, self.ad + header + extra_ad)

    # -- receiving --

    def decrypt(self, data: bytes, extra_ad: bytes = b"", *, now: float) -> bytes:
        """The plaintext of a ratchet message, or `RatchetError` with the session unchanged
        (bar the expiry of skipped keys older than ``SKIPPED_TTL`` at ``now``)."""
        header, ciphertext = split_message(data)
        self.expire(now)
        ad = self.ad + data[:HEADER_BYTES] + extra_ad
        slot = (header.dh, header.n)
        found = self.skipped.get(slot)
        if found is not None:
            plaintext = decrypt_with(found[0], ciphertext, ad)
            del self.skipped[slot]
            self.last_read = (slot, found[0])
            return plaintext
        if header.dh in self.old_dhr:
            raise MessageKeyGone("a message of a finished chain, already taken or expired")
        if header.dh == self.dhr:
            return self._same_chain(header, ciphertext, ad, now)
        return self._new_chain(header, ciphertext, ad, now)

    def _same_chain(self, header: Header, ciphertext: bytes, ad: bytes, now: float) -> bytes:
        if self.ckr is None or self.dhr is None:
            raise RatchetError("no receiving chain for this ratchet key")
        if header.n < self.nr:
            raise MessageKeyGone("message key already used")
        if header.n - self.nr > MAX_SKIP:
            raise TooFarAhead(f"{header.n - self.nr} keys ahead")
        self._room_to_skip(header.n - self.nr)
        ck, skipped = _skip(self.ckr, self.dhr, self.nr, header.n)
        ck, mk = kdf_ck(ck)
        plaintext = decrypt_with(mk, ciphertext, ad)
        self.ckr, self.nr = ck, header.n + 1
        self._remember(skipped, now)
        self.last_read = ((header.dh, header.n), mk)
        return plaintext

    def _new_chain(self, header: Header, ciphertext: bytes, ad: bytes, now: float) -> bytes:
        # The peer has answered our ratchet key with a new one of its own: the DH step.
        if self.dhs is None:
            raise RatchetError("a new ratchet key before we sent ours")
        has_chain = self.ckr is not None and self.dhr is not None
        if header.n > MAX_SKIP or (has_chain and header.pn - self.nr > MAX_SKIP):
            raise TooFarAhead("too many keys to skip")
        self._room_to_skip(header.n + (max(0, header.pn - self.nr) if has_chain else 0))
        skipped: list[tuple[bytes, int, bytes]] = []
        if self.ckr is not None and self.dhr is not None:
            _, skipped = _skip(self.ckr, self.dhr, self.nr, header.pn)
        rk, ck = kdf_rk(self.rk, dh(self.dhs, header.dh))
        ck, more = _skip(ck, header.dh, 0, header.n)
        ck, mk = kdf_ck(ck)
        plaintext = decrypt_with(mk, ciphertext, ad)
        self._step_to(header.dh, rk, ck)
        self.nr = header.n + 1
        self._remember(skipped + more, now)
        self.last_read = ((header.dh, header.n), mk)
        return plaintext

    def _step_to(self, peer_key: bytes, rk: bytes, ckr: bytes) -> None:
        """Take ``peer_key`` as the peer's ratchet key: the receiving half of the DH step.
        Our private key is erased now; the sending half comes with our next message."""
        if self.dhr is not None:
            self.old_dhr = [*self.old_dhr, self.dhr][-MAX_OLD_CHAINS:]
        self.pn, self.ns = self.ns, 0
        self.dhr, self.rk, self.ckr, self.nr = peer_key, rk, ckr, 0
        self.dhs = self.dhs_pub = self.cks = None

    def accepted(self, keys: AcceptKeys) -> None:
        """The caller's side of the accept: take the callee's ephemeral key as its ratchet
        key, so we can send before its first message arrives. A no-op if that message came
        first."""
        if keys.ek == self.dhr or keys.ek in self.old_dhr:
            return
        if self.role != "initiator" or self.ckr is not None or self.dhs is None:
            raise RatchetError("an accept after the call was set up")
        rk, ckr = kdf_rk(self.rk, dh(self.dhs, keys.ek))
        self._step_to(keys.ek, rk, ckr)

    def _room_to_skip(self, count: int) -> None:
        """Refuse, before any derivation, a message whose skipped keys would not fit."""
        if len(self.skipped) + count > MAX_SKIPPED:
            raise TooFarAhead(f"{len(self.skipped)} skipped keys kept already")

    def _remember(self, keys: list[tuple[bytes, int, bytes]], now: float) -> None:
        for peer_key, n, mk in keys:
            self.skipped[(peer_key, n)] = (mk, now)

    def expire(self, now: float) -> int:
        """Erase skipped keys older than ``SKIPPED_TTL``; how many went."""
        old = [slot for slot, (_, at) in self.skipped.items() if now - at > SKIPPED_TTL]
        for slot in old:
            del self.skipped[slot]
        return len(old)

    # -- persistence --

    def to_dict(
        self, unread: dict[tuple[bytes, int], tuple[bytes, float]] | None = None
    ) -> dict[str, Any]:
        """Everything needed to continue after a restart (JSON-ready; secrets as hex).
        ``unread``: keys of messages read and not yet taken, saved as skipped keys so
        that, after a crash, their re-sends read again."""

        def h(value: bytes | None) -> str | None:
            return None if value is None else value.hex()

        skipped = {**self.skipped, **(unread or {})}

        return {
            "v": 1,
            "call": self.call,
            "initiator": self.initiator,
            "responder": self.responder,
            "role": self.role,
            "rk": self.rk.hex(),
            "dhs": h(self.dhs),
            "dhr": h(self.dhr),
            "cks": h(self.cks),
            "ckr": h(self.ckr),
            "ns": self.ns,
            "nr": self.nr,
            "pn": self.pn,
            "skipped": [[k.hex(), n, mk.hex(), at] for (k, n), (mk, at) in skipped.items()],
            "old_dhr": [k.hex() for k in self.old_dhr],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        """A session back from `to_dict`; `ValueError` for anything else."""
        if data.get("v") != 1:
            raise ValueError("unknown ratchet state version")
        s = cls(str(data["call"]), str(data["initiator"]), str(data["responder"]), data["role"])
        s.rk = _key(data["rk"], "rk")
        s.dhs = _opt_key(data["dhs"], "dhs")
        s.dhs_pub = None if s.dhs is None else public_of(s.dhs)
        s.dhr = _opt_key(data["dhr"], "dhr")
        s.cks = _opt_key(data["cks"], "cks")
        s.ckr = _opt_key(data["ckr"], "ckr")
        s.ns = _counter(data["ns"], "ns")
        s.nr = _counter(data["nr"], "nr")
        s.pn = _counter(data["pn"], "pn")
        skipped = data["skipped"]
        if not isinstance(skipped, list) or len(skipped) > MAX_SAVED_SKIPPED:
            raise ValueError("bad skipped keys")
        for entry in skipped:
            if not (isinstance(entry, list) and len(entry) == 4):
                raise ValueError("bad skipped key")
            at = entry[3]
            if isinstance(at, bool) or not isinstance(at, int | float):
                raise ValueError("bad skipped key time")
            s.skipped[(_key(entry[0], "skipped"), _counter(entry[1], "n"))] = (
                _key(entry[2], "skipped"),
                float(at),
            )
        old = data["old_dhr"]
        if not isinstance(old, list) or len(old) > MAX_OLD_CHAINS:
            raise ValueError("bad old ratchet keys")
        s.old_dhr = [_key(k, "old_dhr") for k in old]
        return s


def _skip(
    ck: bytes, peer_key: bytes, start: int, until: int
) -> tuple[bytes, list[tuple[bytes, int, bytes]]]:
    """The chain key at ``until`` and the message keys ``start..until-1`` passed on the way."""
    keys: list[tuple[bytes, int, bytes]] = []
    for n in range(start, until):
        ck, mk = kdf_ck(ck)
        keys.append((peer_key, n, mk))
    return ck, keys


# --- Setting up a call -----------------------------------------------------------------


def initiator_session(
    call: str,
    initiator: str,
    responder: str,
    ephemeral: X25519PrivateKey,
    prekey: bytes | None = None,
) -> tuple[Session, RequestKeys]:
    """The caller's session and what its request carries.

    ``call`` is the 32-hex call id, ``initiator``/``responder`` the two identities (64-hex
    x-only keys). With the callee's signed ``prekey`` (raw X25519 public key from its
    presence) the caller can encrypt at once, the request's own contents included; without
    it, from the accept on.
    """
    s = Session(call, initiator, responder, "initiator")
    s.dhs = ephemeral.private_bytes_raw()
    s.dhs_pub = ephemeral.public_key().public_bytes_raw()
    if prekey is not None:
        _check_key(prekey, "prekey")
        s.dhr = prekey
        s.rk, s.cks = kdf_rk(s.rk, dh(s.dhs, prekey))
    return s, RequestKeys(s.dhs_pub, prekey)


def responder_session(
    call: str,
    initiator: str,
    responder: str,
    request: RequestKeys,
    ephemeral: X25519PrivateKey,
    prekey: X25519PrivateKey | None = None,
) -> tuple[Session, AcceptKeys]:
    """The callee's session and what its accept carries.

    ``prekey`` is our signed prekey that the request names (``request.spk``), still held
    (the daemon keeps each one for the offline window after rotating it); ignored if the
    request names none. Our first ratchet key is ``ephemeral``: we can send at once.
    """
    _check_key(request.ek, "ek")
    s = Session(call, initiator, responder, "responder")
    s.dhr = request.ek
    if request.spk is not None:
        if prekey is None or prekey.public_key().public_bytes_raw() != request.spk:
            raise RatchetError("the request names a prekey we do not hold")
        s.rk, s.ckr = kdf_rk(s.rk, dh(prekey.private_bytes_raw(), request.ek))
    s.dhs = ephemeral.private_bytes_raw()
    s.dhs_pub = ephemeral.public_key().public_bytes_raw()
    s.rk, s.cks = kdf_rk(s.rk, dh(s.dhs, request.ek))
    return s, AcceptKeys(s.dhs_pub)


# --- Validation helpers ----------------------------------------------------------------


def _hexfield(value: object, size: int, name: str) -> str:
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
        raise ValueError(f"{name} must be {2 * size} lowercase hex characters")
    return value


def _key(value: object, name: str) -> bytes:
    return bytes.fromhex(_hexfield(value, KEY_BYTES, name))


def _opt_key(value: object, name: str) -> bytes | None:
    return None if value is None else _key(value, name)


def _check_key(value: bytes, name: str) -> None:
    if not isinstance(value, bytes) or len(value) != KEY_BYTES:
        raise ValueError(f"{name} must be {KEY_BYTES} bytes")


def _counter(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNTER + 1:
        raise ValueError(f"bad counter {name}")
    return value
