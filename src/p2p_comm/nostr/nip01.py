"""NIP-01 event ids and event JSON, assembled in Python around the SDK's signature.

Why not the SDK's ``EventBuilder``: every call into the Rust bindings costs 10-40 us of
marshalling, and an event built that way takes a dozen of them (kind, timestamp, builder,
tags, finalize, sign, and a clone and a free for each object). A gift wrap is three events
deep and we build one per message and per receipt, so that marshalling was most of the
daemon's CPU per message. Here the id is the SHA-256 of NIP-01's serialisation
(``hashlib``), the signature is the SDK's BIP-340 Schnorr signature of that id
(``Keys.sign_schnorr``), and a relay, the SDK or any client checks both as usual.

The serialisation is ``[0, pubkey, created_at, kind, tags, content]`` as compact UTF-8 JSON
with JSON's own escaping, which is what rust-nostr (serde_json) and the NIP produce:
tests/unit/nostr/test_nip01.py compares it with the SDK's ``EventId.compute`` on arbitrary
text, including control characters, quotes and non-BMP characters.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import nostr_sdk as ns

Tags = Sequence[Sequence[str]]

_HEX64 = re.compile(r"[0-9a-f]{64}")


def compact(value: Any) -> str:
    """``value`` as compact JSON, UTF-8 characters as they are (NIP-01's form)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def serialize(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> bytes:
    """The exact bytes NIP-01 hashes for an event's id.

    ``UnicodeEncodeError`` for a string no event can hold (a lone surrogate)."""
    return compact([0, pubkey, created_at, kind, [list(tag) for tag in tags], content]).encode()


def event_id(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> str:
    """The event's id: lowercase hex SHA-256 of its NIP-01 serialisation."""
    return hashlib.sha256(serialize(pubkey, created_at, kind, tags, content)).hexdigest()


def signed_json(
    keys: ns.Keys, pubkey: str, created_at: int, kind: int, tags: Tags, content: str
) -> str:
    """An event signed by ``keys`` (whose public key is ``pubkey``, hex) as JSON."""
    digest = hashlib.sha256(serialize(pubkey, created_at, kind, tags, content)).digest()
    signature: str = keys.sign_schnorr(digest)
    return compact(
        {
            "id": digest.hex(),
            "pubkey": pubkey,
            "created_at": created_at,
            "kind": kind,
            "tags": [list(tag) for tag in tags],
            "content": content,
            "sig": signature,
        }
    )


def parse_unsigned(text: str) -> dict[str, Any]:
    """A rumor's fields from its JSON, checked for shape and id; ``ValueError`` otherwise.

    The id may be absent (NIP-59 rumors should carry it, some clients omit it); present, it
    must be the one the fields hash to. The result always has the computed ``id``."""
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(event, dict):
        raise ValueError("not an event object")
    pubkey, created_at, kind = event.get("pubkey"), event.get("created_at"), event.get("kind")
    tags, content = event.get("tags", []), event.get("content")
    if not isinstance(pubkey, str) or not _HEX64.fullmatch(pubkey):
        raise ValueError("bad pubkey")
    if type(created_at) is not int or not 0 <= created_at < 2**63:
        raise ValueError("bad created_at")
    if type(kind) is not int or not 0 <= kind <= 65535:
        raise ValueError("bad kind")
    if not isinstance(content, str):
        raise ValueError("bad content")
    if not isinstance(tags, list) or not all(
        isinstance(tag, list) and all(isinstance(item, str) for item in tag) for tag in tags
    ):
        raise ValueError("bad tags")
    try:
        computed = event_id(pubkey, created_at, kind, tags, content)
    except UnicodeEncodeError:
        raise ValueError("text that no event can hold") from None
    claimed = event.get("id")
    if claimed is not None and (not isinstance(claimed, str) or claimed.lower() != computed):
        raise ValueError("id does not match the content")
    return {
        "id": computed,
        "pubkey": pubkey,
        "created_at": created_at,
        "kind": kind,
        "tags": tags,
        "content": content,
    }
