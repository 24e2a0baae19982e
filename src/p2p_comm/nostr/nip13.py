"""NIP-13 proof of work: the difficulty of an id, and mining an event to a target.

Relays that demand PoW (NIP-11 ``min_pow_difficulty``, or an ``OK false "pow: ..."``) get it
for the few events we publish under our own key: presence and the kind-10050 inbox list.
Mining is the SDK's (``UnsignedEvent.mine``): it adds a ``["nonce", n, target]`` tag, which
commits to the target as NIP-13 asks, and keeps the other fields.

Cost grows as 2**target, about a million hashes a second on one core. Measured on a shared
2-core machine (mean of 30 runs at 16 bits, 8 at 20; single runs vary several-fold):
16 bits 0.07 s on one thread, 0.10 s on all cores; 20 bits 1.1 s and 0.7 s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import nostr_sdk as ns

_HEX_ID = re.compile(r"[0-9a-fA-F]{64}")

MAX_DIFFICULTY = 255
"""The SDK takes the target as one byte; an id has 256 bits."""


def difficulty(event_id_hex: str) -> int:
    """Leading zero bits of a hex event id (``ValueError`` if it is not 64 hex digits)."""
    # A pattern, not int(..., 16) alone: that also takes "0x", "_" and surrounding spaces.
    if not _HEX_ID.fullmatch(event_id_hex):
        raise ValueError("an event id is 64 hex digits")
    return 256 - int(event_id_hex, 16).bit_length()


def committed_target(tags: Iterable[Iterable[str]]) -> int | None:
    """The target difficulty a ``nonce`` tag commits to, if one does."""
    for tag in tags:
        fields = list(tag)
        if len(fields) >= 3 and fields[0] == "nonce" and fields[2].isdigit():
            return int(fields[2])
    return None


def mine(
    keys: ns.Keys, unsigned: ns.UnsignedEvent, target: int, parallel: bool = False
) -> ns.Event:
    """``unsigned`` with a nonce giving at least ``target`` bits, signed by ``keys``.

    Blocking: run it in a thread from async code. ``parallel`` uses every core, which pays
    off only for targets of about 18 bits and more (it never finishes under ~0.1 s).
    """
    if not 0 <= target <= MAX_DIFFICULTY:
        raise ValueError(f"PoW target {target} is outside 0..{MAX_DIFFICULTY}")
    if target == 0:
        signed: ns.Event = unsigned.sign(keys)
        return signed
    adapter = ns.MultiThreadPow() if parallel else ns.SingleThreadPow()
    mined: ns.Event = unsigned.mine(adapter, target).sign(keys)
    return mined
