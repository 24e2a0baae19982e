"""Call lanes in the daemon (protocol/lane.py): the one-time keys of the wraps we send in
a call, and the keys we expect on the wraps of the calls we placed or answered.

A wrap we expect skips the inbound gate's shedding and is opened before the others: under
a flood from fresh keys, a real peer's message is taken as it comes, not after a re-send.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import nostr_sdk as ns

from ...protocol import lane
from ...store import Store

PERIOD_KEY = "lane_period"  # the last period whose lane keys we signed with
REFRESH = 1.0  # seconds between two looks at which calls we expect lane wraps on


def _public_hex(secret: bytes) -> str:
    return str(ns.Keys(ns.SecretKey.from_bytes(secret)).public_key().to_hex())


class Shared:
    """`lane.shared_x` with each peer, remembered (one ECDH per peer, not per wrap)."""

    def __init__(self, keys: Any) -> None:
        self._secret = bytes.fromhex(keys.secret_key().to_hex())
        self._known: dict[str, bytes] = {}

    def __call__(self, peer: str) -> bytes:
        found = self._known.get(peer)
        if found is None:
            if len(self._known) >= 4096:
                self._known.clear()
            found = self._known[peer] = lane.shared_x(self._secret, peer)
        return found


class LaneKeys:
    """The one-time keys of our wraps: a lane key for a call's wrap when there is one."""

    def __init__(self, store: Store, keys: Any, now: float, on: bool = True) -> None:
        self.on = on  # `call_lanes`: off, every wrap gets a fresh key
        self.store = store
        self.me = str(keys.public_key().to_hex())
        self.shared = Shared(keys)
        # A period we signed lane keys in before a restart gets none now: its indices
        # would start at 0 again, and two of our wraps would share a key.
        last = store.get(PERIOD_KEY)
        before = lane.period_of(now) - 1
        self._recorded = max(int(last), before) if last.isdigit() else before
        self.counter = lane.LaneCounter(self._recorded)

    def key_for(self, call_id: str, peer: str, now: float) -> Any:
        """nostr-sdk Keys for our next wrap to ``peer`` in ``call_id``, or None (a fresh
        key, then)."""
        taken = self.counter.take(call_id, now) if self.on else None
        if taken is None:
            return None
        period, index = taken
        secret = lane.lane_secret(self.shared(peer), call_id, self.me, period, index)
        if secret is None:
            return None
        if period > self._recorded:
            self.store.put(PERIOD_KEY, str(period))
            self._recorded = period
        return ns.Keys(ns.SecretKey.from_bytes(secret))


class LaneWatch:
    """The lane keys we expect, from the peers of our calls (``calls``: (call id, peer)
    of each call we placed or answered and that has not ended)."""

    def __init__(self, keys: Any, calls: Callable[[], list[tuple[str, str]]]) -> None:
        self.calls = calls
        self.shared = Shared(keys)
        self.recognised = 0  # wraps known by their key, for `status`
        # pubkey -> (call, peer, period, index) of every key we expect now
        self._expected: dict[str, tuple[str, str, int, int]] = {}
        # (call, peer, period) -> indices computed so far (0 .. that - 1)
        self._made: dict[tuple[str, str, int], int] = {}
        self._looked = float("-inf")

    def expects(self, pubkey: str) -> bool:
        """Whether ``pubkey`` is a lane key we expect: taken (each is used once), and the
        keys after it made ready. Cheap when we expect nothing (no call)."""
        found = self._expected.pop(pubkey, None)
        if found is None:
            return False
        call, peer, period, index = found
        self.recognised += 1
        self._extend((call, peer, period), index + 1 + lane.WINDOW)
        return True

    @property
    def idle(self) -> bool:
        return not self._expected

    def touch(self) -> None:
        """Our calls changed (one was answered, placed or ended): look again at the next
        wrap, not up to REFRESH seconds later (a peer's first messages follow at once)."""
        self._looked = float("-inf")

    def refresh(self, now: float) -> None:
        """Follow our calls and the clock, at most every REFRESH seconds: keys for new
        calls and periods made, those of ended calls and past periods dropped."""
        tick = time.monotonic()
        if tick - self._looked < REFRESH:
            return
        self._looked = tick
        current = lane.period_of(now)
        periods = range(current - lane.SKEW, current + lane.SKEW + 1)
        wanted = {(call, peer, period) for call, peer in self.calls() for period in periods}
        gone = set(self._made) - wanted
        if gone:
            for key in gone:
                del self._made[key]
            self._expected = {k: v for k, v in self._expected.items() if v[:3] in self._made}
        for key in wanted - set(self._made):
            self._made[key] = 0
            self._extend(key, lane.WINDOW)

    def _extend(self, key: tuple[str, str, int], upto: int) -> None:
        """Make the expected keys of ``key`` up to index ``upto`` (at most PER_MINUTE)."""
        made = self._made.get(key)
        if made is None:
            return  # a call that ended, or a period past
        call, peer, period = key
        shared = self.shared(peer)
        for index in range(made, min(upto, lane.PER_MINUTE)):
            secret = lane.lane_secret(shared, call, peer, period, index)
            if secret is not None:
                self._expected[_public_hex(secret)] = (call, peer, period, index)
        self._made[key] = max(made, min(upto, lane.PER_MINUTE))
