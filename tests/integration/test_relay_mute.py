"""Muting a flooding relay, on the real SDK against real relays: the relay is let go for the
mute and read again after it, with a catch-up; the last inbox relay we read is never muted.

The first version called the SDK's `Relay.disconnect()` and `connect()` with `await`; they
are plain calls in nostr-sdk 0.45, so the disconnect happened, the `await` raised, and the
relay was never connected again by the mute (only, seconds later, by the watchdog)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nostr_sdk as ns

from p2p_comm.daemon.nostr_io import RelayPool
from p2p_comm.harness import RelayProcess


async def _states(pool: RelayPool) -> dict[str, str]:
    return {state["url"]: state["state"] for state in await pool.states()}


async def _true(value: bool) -> bool:
    return value


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_muted_relay_is_let_go_then_read_again() -> None:
    good, noisy = RelayProcess().start(), RelayProcess().start()

    async def scenario() -> None:
        # The SDK calls back into the loop it was last given: an earlier test's, closed.
        ns.uniffi_set_event_loop(asyncio.get_running_loop())

        async def handler(event: Any) -> None:
            return None

        pool = RelayPool((good.url, noisy.url), handler)
        reconnected: list[float] = []
        pool.on_reconnect = lambda: reconnected.append(time.monotonic())
        await pool.start()
        try:

            async def both_up() -> bool:
                return set((await _states(pool)).values()) == {"connected"}

            await _until(both_up, 10)
            assert pool.mute(noisy.url, 4)
            assert pool.muted(noisy.url)
            assert not pool.mute(good.url, 4), "the last inbox relay we read stays"
            assert not pool.mute(noisy.url, 4), "already muted"

            async def let_go() -> bool:
                return (await _states(pool))[noisy.url] != "connected"

            await _until(let_go, 4)
            assert (await _states(pool))[good.url] == "connected"
            assert not reconnected
            # Read again when the mute ends (before the watchdog's first round at 10 s),
            # and a catch-up is asked for.
            await _until(lambda: _true(bool(reconnected)), 8)
            await _until(both_up, 8)
            assert not pool.muted(noisy.url)
        finally:
            await pool.stop()

    try:
        asyncio.run(scenario())
    finally:
        good.stop()
        noisy.stop()
