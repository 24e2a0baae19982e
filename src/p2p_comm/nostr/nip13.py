"""NIP-13 proof of work: the difficulty of an id, and mining an event to a target.

Relays that demand PoW (NIP-11 ``min_pow_difficulty``, or an ``OK false "pow: ..."``) get it
for the few events we publish under our own key: presence and the kind-10050 inbox list.
Mining is the SDK's (``UnsignedEvent.mine``): it adds a ``["nonce", n, target]`` tag, which
commits to the target as NIP-13 asks, and keeps the other fields.

Cost grows as 2**target: measured on this 2-core machine, single thread, about 0.1 s at
16 bits and 1.5 s at 20 (mean of many runs; any single run varies widely).
"""

from __future__ import annotations

from collections.abc import Iterable

import nostr_sdk as ns

MAX_DIFFICULTY = 255
"""The SDK takes the target as one byte; an id has 256 bits."""


def difficulty(event_id_hex: str) -> int:
    """Leading zero bits of a hex event id (``ValueError`` if it is not 64 hex digits)."""
    if len(event_id_hex) != 64:
        raise ValueError("an event id is 64 hex digits")
    value = int(event_id_hex, 16)  # ValueError for non-hex
    return 256 - value.bit_length()


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
    off only for targets above about 18 bits (thread start-up costs ~0.1 s).
    """
    if not 0 <= target <= MAX_DIFFICULTY:
        raise ValueError(f"PoW target {target} is outside 0..{MAX_DIFFICULTY}")
    if target == 0:
        signed: ns.Event = unsigned.sign(keys)
        return signed
    adapter = ns.MultiThreadPow() if parallel else ns.SingleThreadPow()
    mined: ns.Event = unsigned.mine(adapter, target).sign(keys)
    return mined
