"""Does nostr-sdk release the GIL while a wrap is opened? ``python -m bench.gil [N] [BYTES]``

N wraps of a BYTES-long message, opened in one thread and then split over two, three times
each; milliseconds per wrap and the speed-up. Three ways: ours (`nip59.unwrap`, what the
daemon runs), the SDK's `UnwrappedGift.from_gift_wrap`, and the outer NIP-44 decryption
alone. The bindings call Rust through ctypes, which lets go of the GIL for each call, so
the speed-up says how much of each way is Rust rather than Python glue. On a shared 2-core
machine it also says whether the second core was free: read several runs.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nostr_sdk as ns

from p2p_comm import sdk_speedups
from p2p_comm.nostr import nip59


def main() -> None:
    sdk_speedups.apply()
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    alice, bob = ns.Keys.generate(), ns.Keys.generate()
    me, to = alice.public_key().to_hex(), bob.public_key().to_hex()
    now = int(time.time())
    wraps = [
        nip59.wrap(alice, to, nip59.make_rumor(me, 14, f"{i} " + "x" * size, now), now)
        for i in range(count)
    ]

    def ours(batch: list[Any]) -> None:
        for wrap in batch:
            nip59.unwrap(bob, wrap, verified=True)

    def sdk(batch: list[Any]) -> None:
        for wrap in batch:
            ns.UnwrappedGift.from_gift_wrap(bob, wrap)

    def nip44_only(batch: list[Any]) -> None:
        for wrap in batch:
            ns.nip44_decrypt(bob.secret_key(), wrap.author(), wrap.content())

    def per_wrap(way: Callable[[list[Any]], None], threads: int) -> float:
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(way, [wraps[i::threads] for i in range(threads)]))
        return (time.perf_counter() - start) / count * 1e3

    for way in (ours, sdk, nip44_only):
        one = statistics.median(per_wrap(way, 1) for _ in range(3))
        two = statistics.median(per_wrap(way, 2) for _ in range(3))
        print(
            f"{way.__name__:10} {size} B: 1 thread {one:.3f} ms/wrap, "
            f"2 threads {two:.3f} ms/wrap, speed-up {one / two:.2f}x"
        )


if __name__ == "__main__":
    main()
