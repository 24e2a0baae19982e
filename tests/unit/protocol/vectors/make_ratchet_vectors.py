"""Writes ``ratchet.json``: golden vectors for the ratchet of docs/PROTOCOL.md 3.12.

Every value is deterministic (fixed private keys, the nonce derived from the message key),
so running this again writes the same file; test_ratchet.py checks that it does.

    cd tests/unit/protocol/vectors
    ../../../../.venv/bin/python make_ratchet_vectors.py > ratchet.json

Intermediate values (root steps, chain keys, message keys, AEAD key and nonce) are derived
here straight from the primitives, following the document, not through the module; the
messages are then made by the module's sessions and must match byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2p_comm.protocol import ratchet

CALL = "0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0


def secret(label: str) -> bytes:
    # Fixed, reproducible test keys: never used anywhere but these vectors.
    return hashlib.sha256(f"p2p-comm ratchet test vector {label}".encode()).digest()


def pub(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def x25519(private: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).exchange(
        X25519PublicKey.from_public_bytes(public)
    )


# Identities: the x-only secp256k1 keys of two agents; only their bytes matter here.
INITIATOR = hashlib.sha256(b"p2p-comm ratchet test identity initiator").hexdigest()
RESPONDER = hashlib.sha256(b"p2p-comm ratchet test identity responder").hexdigest()

# A conversation: (sender, number of messages) per turn; the speaker changes every turn.
TURNS = [("responder", 1), ("initiator", 2), ("responder", 3), ("initiator", 1)]
PREKEY_TURNS = [("initiator", 1), ("responder", 1), ("initiator", 2), ("responder", 2)]


def schedule(prekey: bool) -> dict[str, Any]:
    """One session, derived straight from the document's definitions."""
    label = b"p2p-comm/ratchet/v1"
    ad = label + bytes.fromhex(CALL) + bytes.fromhex(INITIATOR) + bytes.fromhex(RESPONDER)
    rk = hkdf(b"\xff" * 32, b"\x00" * 32, label + b"/init" + ad[len(label) :], 32)
    tag = "prekey" if prekey else "ephemeral"
    ek_a, ek_b, spk = secret(f"{tag} initiator ek"), secret(f"{tag} responder ek"), secret("spk")
    out: dict[str, Any] = {
        "name": f"set-up with {'a signed prekey' if prekey else 'ephemeral keys only'}",
        "call": CALL,
        "initiator": INITIATOR,
        "responder": RESPONDER,
        "initiator_ek": ek_a.hex(),
        "responder_ek": ek_b.hex(),
        "responder_spk": spk.hex() if prekey else None,
        "request": {"ek": pub(ek_a).hex(), **({"spk": pub(spk).hex()} if prekey else {})},
        "accept": {"ek": pub(ek_b).hex()},
        "ad": ad.hex(),
        "initial_root": rk.hex(),
        "turns": [],
    }
    # Each side's ratchet key and the peer key it last saw; the first turn's keys are the
    # ephemeral ones, later turns use fresh keys ("next_key").
    current = {"initiator": ek_a, "responder": ek_b}
    peer_of = {"initiator": pub(spk) if prekey else None, "responder": pub(ek_a)}
    sent_last = {"initiator": 0, "responder": 0}
    turns = PREKEY_TURNS if prekey else TURNS
    for index, (sender, count) in enumerate(turns):
        other = "responder" if sender == "initiator" else "initiator"
        # The ephemeral keys are the first sending ratchet keys, but for a caller without a
        # prekey: its ek only receives, and it sends first under a fresh key.
        first_of_sender = all(s != sender for s, _ in turns[:index])
        use_ek = first_of_sender and (sender == "responder" or prekey)
        key = current[sender] if use_ek else secret(f"{tag} {sender} turn {index}")
        peer = peer_of[sender]
        assert peer is not None
        dh_out = x25519(key, peer)
        rk_in = rk
        okm = hkdf(dh_out, rk_in, label + b"/root", 64)
        rk, ck = okm[:32], okm[32:]
        turn: dict[str, Any] = {
            "from": sender,
            "ratchet_private": key.hex(),
            "ratchet_public": pub(key).hex(),
            "next_key": None if use_ek else key.hex(),
            "peer_public": peer.hex(),
            "dh_out": dh_out.hex(),
            "root_in": rk_in.hex(),
            "root_out": rk.hex(),
            "chain_key": ck.hex(),
            "messages": [],
        }
        pn = sent_last[sender]
        for n in range(count):
            next_ck = hmac.digest(ck, b"\x02", "sha256")
            mk = hmac.digest(ck, b"\x01", "sha256")
            okm = hkdf(mk, b"\x00" * 32, label + b"/message", 44)
            key_, nonce = okm[:32], okm[32:]
            header = b"\x01" + pub(key) + struct.pack(">II", pn, n)
            extra = f"seq={index}.{n}".encode()
            plaintext = f"{sender} says {n + 1} of {count} in turn {index}".encode()
            body = ChaCha20Poly1305(key_).encrypt(nonce, plaintext, ad + header + extra)
            turn["messages"].append(
                {
                    "chain_key": ck.hex(),
                    "message_key": mk.hex(),
                    "next_chain_key": next_ck.hex(),
                    "aead_key": key_.hex(),
                    "nonce": nonce.hex(),
                    "header": header.hex(),
                    "extra_ad": extra.hex(),
                    "plaintext": plaintext.decode(),
                    "message": (header + body).hex(),
                }
            )
            ck = next_ck
        sent_last[sender] = count
        current[sender] = key
        peer_of[other] = pub(key)
        out["turns"].append(turn)
    return out


def run_module(session: dict[str, Any]) -> None:
    """Plays the session with the module and checks every message matches."""
    k = X25519PrivateKey.from_private_bytes
    spk = session["responder_spk"]
    prekey_pub = pub(bytes.fromhex(spk)) if spk else None
    a, req = ratchet.initiator_session(
        CALL, INITIATOR, RESPONDER, k(bytes.fromhex(session["initiator_ek"])), prekey_pub
    )
    assert req.to_dict() == session["request"]
    sides: dict[str, ratchet.Session] = {"initiator": a}

    def side(name: str) -> ratchet.Session:
        # The callee sets up when it accepts, or on the request's own message.
        if name not in sides:
            b, acc = ratchet.responder_session(
                CALL,
                INITIATOR,
                RESPONDER,
                req,
                k(bytes.fromhex(session["responder_ek"])),
                k(bytes.fromhex(spk)) if spk else None,
            )
            assert acc.to_dict() == session["accept"]
            sides[name] = b
        return sides[name]

    for turn in session["turns"]:
        other = "responder" if turn["from"] == "initiator" else "initiator"
        for message in turn["messages"]:
            nk = turn["next_key"]
            made = side(turn["from"]).encrypt(
                message["plaintext"].encode(),
                bytes.fromhex(message["extra_ad"]),
                next_key=k(bytes.fromhex(nk)) if nk else None,
            )
            assert made.hex() == message["message"], (turn["from"], message["plaintext"])
            got = side(other).decrypt(made, bytes.fromhex(message["extra_ad"]), now=NOW)
            assert got.decode() == message["plaintext"]


def primitives() -> dict[str, Any]:
    rk, dh_out, ck = secret("kdf_rk rk"), secret("kdf_rk dh"), secret("kdf_ck ck")
    okm = hkdf(dh_out, rk, b"p2p-comm/ratchet/v1/root", 64)
    mk = hmac.digest(ck, b"\x01", "sha256")
    msg = hkdf(mk, b"\x00" * 32, b"p2p-comm/ratchet/v1/message", 44)
    ad, plaintext = b"associated data", b"hello, forward secrecy"
    a, b = secret("x25519 a"), secret("x25519 b")
    return {
        "x25519": {
            "a_private": a.hex(),
            "a_public": pub(a).hex(),
            "b_private": b.hex(),
            "b_public": pub(b).hex(),
            "shared": x25519(a, pub(b)).hex(),
        },
        "kdf_rk": {
            "rk": rk.hex(),
            "dh_out": dh_out.hex(),
            "root_key": okm[:32].hex(),
            "chain_key": okm[32:].hex(),
        },
        "kdf_ck": {
            "ck": ck.hex(),
            "message_key": mk.hex(),
            "next_chain_key": hmac.digest(ck, b"\x02", "sha256").hex(),
        },
        "encrypt": {
            "message_key": mk.hex(),
            "aead_key": msg[:32].hex(),
            "nonce": msg[32:].hex(),
            "ad": ad.hex(),
            "plaintext": plaintext.hex(),
            "ciphertext": ChaCha20Poly1305(msg[:32]).encrypt(msg[32:], plaintext, ad).hex(),
        },
    }


def build() -> dict[str, Any]:
    sessions = [schedule(prekey=False), schedule(prekey=True)]
    for session in sessions:
        run_module(session)
    return {
        "about": "Double Ratchet vectors for p2p-comm (docs/PROTOCOL.md 3.12), written by "
        "make_ratchet_vectors.py. Bytes as lowercase hex; plaintexts as UTF-8 text.",
        "primitives": primitives(),
        "sessions": sessions,
    }


if __name__ == "__main__":
    print(json.dumps(build(), indent=1))
