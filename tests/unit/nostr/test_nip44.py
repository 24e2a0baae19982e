"""The official NIP-44 v2 test vectors run through nostr-sdk's nip44 functions.

``vectors/nip44.vectors.json`` is the file published with the NIP-44 spec
(github.com/paulmillr/nip44, commit 671a1f04), unchanged: its SHA-256 is the one the spec
prints. The SDK exposes only encrypt/decrypt by key pair (no conversation key, no fixed
nonce), so we check what can be checked through that surface:

- decryption of every official payload made from a key pair (``encrypt_decrypt``);
- the padding scheme, read off the length of payloads the SDK makes (``calc_padded_len``);
- refusal of the invalid keys, plaintext lengths and malformed payloads. Vectors that need
  a raw conversation key (``get_conversation_key``, ``get_message_keys``, long messages,
  and the bad-MAC/bad-padding payloads, whose MAC is valid only under that key) cannot be
  fed to this API and are not run.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import pytest

FILE = Path(__file__).parent / "vectors" / "nip44.vectors.json"
SPEC_SHA256 = "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040"
V2 = json.loads(FILE.read_text())["v2"]


def _pub(secret_hex: str) -> ns.PublicKey:
    return ns.Keys.parse(secret_hex).public_key()


def test_vector_file_is_the_published_one() -> None:
    assert hashlib.sha256(FILE.read_bytes()).hexdigest() == SPEC_SHA256


@pytest.mark.parametrize(
    "vector", V2["valid"]["encrypt_decrypt"], ids=lambda v: v["plaintext"][:12]
)
def test_official_payloads_decrypt_both_ways(vector: dict[str, Any]) -> None:
    sec1, sec2 = ns.SecretKey.parse(vector["sec1"]), ns.SecretKey.parse(vector["sec2"])
    assert ns.nip44_decrypt(sec2, _pub(vector["sec1"]), vector["payload"]) == vector["plaintext"]
    # The conversation key is symmetric: the author can read its own payload.
    assert ns.nip44_decrypt(sec1, _pub(vector["sec2"]), vector["payload"]) == vector["plaintext"]


@pytest.mark.parametrize(
    "vector", V2["valid"]["encrypt_decrypt"][:3], ids=lambda v: v["plaintext"][:12]
)
def test_sdk_payloads_are_v2_and_fresh(vector: dict[str, Any]) -> None:
    sec1 = ns.SecretKey.parse(vector["sec1"])
    first = ns.nip44_encrypt(sec1, _pub(vector["sec2"]), vector["plaintext"], ns.Nip44Version.V2)
    second = ns.nip44_encrypt(sec1, _pub(vector["sec2"]), vector["plaintext"], ns.Nip44Version.V2)
    assert base64.b64decode(first)[0] == 2
    assert first != second  # a random nonce each time
    sec2 = ns.SecretKey.parse(vector["sec2"])
    assert ns.nip44_decrypt(sec2, _pub(vector["sec1"]), first) == vector["plaintext"]


# 65536 is in the padding table but over the plaintext cap (an invalid-length vector).
@pytest.mark.parametrize(
    ("length", "padded"), [pair for pair in V2["valid"]["calc_padded_len"] if pair[0] <= 65535]
)
def test_padding_matches_the_spec(length: int, padded: int) -> None:
    vector = V2["valid"]["encrypt_decrypt"][0]
    payload = ns.nip44_encrypt(
        ns.SecretKey.parse(vector["sec1"]), _pub(vector["sec2"]), "x" * length, ns.Nip44Version.V2
    )
    # version (1) + nonce (32) + [u16 length + padded plaintext] + MAC (32)
    assert len(base64.b64decode(payload)) == 1 + 32 + 2 + padded + 32


@pytest.mark.parametrize("length", V2["invalid"]["encrypt_msg_lengths"])
def test_plaintext_lengths_outside_the_spec_are_refused(length: int) -> None:
    vector = V2["valid"]["encrypt_decrypt"][0]
    with pytest.raises(Exception, match=r"empty|too long"):
        ns.nip44_encrypt(
            ns.SecretKey.parse(vector["sec1"]),
            _pub(vector["sec2"]),
            "x" * length,
            ns.Nip44Version.V2,
        )


@pytest.mark.parametrize("vector", V2["invalid"]["get_conversation_key"], ids=lambda v: v["note"])
def test_invalid_keys_are_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"secret key|public key"):
        secret = ns.SecretKey.parse(vector["sec1"])
        public = ns.PublicKey.parse(vector["pub2"])
        ns.nip44_encrypt(secret, public, "x", ns.Nip44Version.V2)


_FORMAT_ERRORS = [
    vector
    for vector in V2["invalid"]["decrypt"]
    if not vector["note"].startswith(("invalid MAC", "invalid padding"))
]


@pytest.mark.parametrize("vector", _FORMAT_ERRORS, ids=lambda v: v["note"])
def test_malformed_payloads_are_refused_before_any_key_is_used(vector: dict[str, Any]) -> None:
    keys = ns.Keys.parse("01" * 32)
    with pytest.raises(Exception) as caught:
        ns.nip44_decrypt(keys.secret_key(), keys.public_key(), vector["payload"])
    # Refused by the format check, not by the MAC (which any wrong key would fail).
    assert "hmac" not in str(caught.value).lower()
