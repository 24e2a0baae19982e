"""Issue 22: what forward secrecy costs per message, beside the scheme before it, in one run.

Both sides' whole per-message path, in this process, without relays or disk: the sender's
rumor, its encryption and gift wrap; the receiver's unwrap, the seal's signature check and
decryption. With forward secrecy the sender also ratchet-encrypts the rumor and both sides
serialise their ratchet state (what the daemon writes with the message); without it the
seal is NIP-44 to the receiver's identity, as before. Wrap bytes are the JSON of the kind
1059 event a relay stores.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import nostr_sdk as ns
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2p_comm.nostr import kinds, nip59
from p2p_comm.protocol import ratchet
from p2p_comm.protocol.wire import FILE_CHUNK_BYTES, WireMessage

CALL_ID = "0123456789abcdef0123456789abcdef"


def _messages(size: str, count: int) -> list[str]:
    if size == "text":
        body = {"text": "x" * 100, "part": 1, "parts": 1}
        return [WireMessage("message", CALL_ID, n, n, body).encode() for n in range(1, count + 1)]
    data = bytes(range(256)) * (FILE_CHUNK_BYTES // 256)
    return [
        WireMessage(
            "file",
            CALL_ID,
            n,
            n,
            {
                "fid": "ab" * 16,
                "name": "data.bin",
                "size": len(data) * 100,
                "sha256": "cd" * 32,
                "index": n - 1,
                "count": 100,
                "data": data,
            },
        ).encode()
        for n in range(1, count + 1)
    ]


def _classic(sender: ns.Keys, receiver: ns.Keys, contents: list[str]) -> tuple[float, int]:
    me, to = sender.public_key().to_hex(), receiver.public_key().to_hex()
    size = 0
    started = time.process_time()
    for content in contents:
        rumor = nip59.make_rumor(me, kinds.CALL, content, 1_800_000_000)
        wrap = nip59.wrap(sender, to, rumor, 1_800_000_000)
        size += len(wrap.as_json())
        gift = nip59.open_seal(receiver, nip59.open_wrap(receiver, wrap, verified=True))
        assert gift.content == content
    return (time.process_time() - started) / len(contents), size // len(contents)


def _ratcheted(sender: ns.Keys, receiver: ns.Keys, contents: list[str]) -> tuple[float, int]:
    me, to = sender.public_key().to_hex(), receiver.public_key().to_hex()
    ours, request = ratchet.initiator_session(CALL_ID, me, to, X25519PrivateKey.generate())
    theirs, accept = ratchet.responder_session(
        CALL_ID, me, to, request, X25519PrivateKey.generate()
    )
    ours.accepted(accept)
    opener: nip59.Opener = lambda sealed: theirs.decrypt(  # noqa: E731
        base64.b64decode(sealed.content), now=1_800_000_000
    ).decode()
    size = 0
    started = time.process_time()
    for content in contents:
        rumor = nip59.make_rumor(me, kinds.CALL, content, 1_800_000_000)
        sealed = base64.b64encode(ours.encrypt(rumor.to_json().encode())).decode()
        json.dumps(ours.to_dict())  # the sender's state, saved with its outbox row
        wrap = nip59.wrap_ratchet(sender, to, CALL_ID, sealed, 1_800_000_000, 1_800_000_000)
        size += len(wrap.as_json())
        gift = nip59.open_seal(receiver, nip59.open_wrap(receiver, wrap, verified=True), opener)
        json.dumps(theirs.to_dict())  # the receiver's, saved with the delivery
        assert gift.content == content
    return (time.process_time() - started) / len(contents), size // len(contents)


def figures(add: Callable[[str, str, float, float], None], smoke: bool) -> None:
    """``add(name, unit, with forward secrecy, without)`` for CPU and bytes per message."""
    sender, receiver = ns.Keys.generate(), ns.Keys.generate()
    for size in ("text", "file chunk"):
        contents = _messages(size, 20 if smoke else 2000 if size == "text" else 100)
        _classic(sender, receiver, contents[:5])  # warm both paths (caches, imports)
        _ratcheted(sender, receiver, contents[:5])
        # Interleaved halves, so drift on a shared machine falls on both alike.
        half = len(contents) // 2
        runs = [
            _classic(sender, receiver, contents[:half]),
            _ratcheted(sender, receiver, contents[:half]),
            _ratcheted(sender, receiver, contents[half:]),
            _classic(sender, receiver, contents[half:]),
        ]
        classic_cpu = (runs[0][0] + runs[3][0]) / 2
        fs_cpu = (runs[1][0] + runs[2][0]) / 2
        label = "100 B text" if size == "text" else f"{FILE_CHUNK_BYTES // 1024} KiB file chunk"
        add(f"CPU per {label}, both sides, forward secrecy", "us", fs_cpu * 1e6, classic_cpu * 1e6)
        add(f"wrap bytes, {label}, forward secrecy", "B", runs[1][1], runs[0][1])
