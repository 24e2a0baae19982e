"""The floor under the flood figures: a bare nostr-sdk reader, nothing else.

``python -m bench.sdk_floor URL RECEIVER_HEX COUNT``: subscribes to the gift wraps for
RECEIVER_HEX at URL the way the daemon's reader does (the same channel size, subscription
checks and nap when flooded), prints ``ready``, reads COUNT new events (or stops after 10 s
without one) doing nothing with them, and prints the CPU seconds it spent reading. What
the daemon spends beyond this is ours to cut; this much is nostr-sdk's (its thread: the
socket, the JSON, each wrap's signature; ours: two notifications per event).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta

import nostr_sdk as ns

from p2p_comm import sdk_speedups
from p2p_comm.daemon.relays.flood import NAP, FloodMeter
from p2p_comm.daemon.relays.nostr_io import NOTIFICATION_BUFFER


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def _read(url: str, receiver: str, count: int) -> float:
    client = ns.ClientBuilder().notification_channel_size(NOTIFICATION_BUFFER).build()
    options = ns.RelayOptions().verify_subscriptions(True)
    await client.add_relay(ns.RelayUrl.parse(url), opts=options)
    stream = client.notifications()
    await client.connect(and_wait=timedelta(seconds=5))
    since = ns.Timestamp.from_secs(int(time.time()) - 5)
    wraps = ns.Filter().kind(ns.Kind(1059)).pubkey(ns.PublicKey.parse(receiver)).since(since)
    await client.subscribe(ns.ReqTarget.auto([wraps]))
    print("ready", flush=True)
    meter, seen, started = FloodMeter(), [0], _cpu()

    async def watchdog() -> None:  # no event for 10 s: stop reading
        last = -1
        while last != seen[0]:
            last = seen[0]
            await asyncio.sleep(10)
        await client.shutdown()

    guard = asyncio.create_task(watchdog())
    while seen[0] < count:
        waits = sdk_speedups.waits()
        note = await stream.next()
        if note is None or note.is_shutdown():
            break
        if meter.flooded(time.monotonic()) and sdk_speedups.waits() != waits:
            await asyncio.sleep(NAP)
        if note.is_new_event():
            seen[0] += 1
    spent = _cpu() - started
    guard.cancel()
    await client.shutdown()
    return spent


def main() -> None:
    sdk_speedups.apply()
    url, receiver, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(f"{asyncio.run(_read(url, receiver, count)):.3f}", flush=True)


if __name__ == "__main__":
    main()
