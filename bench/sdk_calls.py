"""What one call into nostr-sdk costs in Python, with the bindings as generated and with
`p2p_comm.sdk_speedups` applied (speed-up 3 is about every call): a process each, since
the speed-ups patch the bindings for good.

    python -m bench.sdk_calls [--patched]   prints {read: microseconds per call} as JSON
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

READS = {
    "a wrap's author as hex": lambda event: event.author().to_hex(),
    "a wrap's content": lambda event: event.content(),
    "a wrap's kind": lambda event: event.kind().as_u16(),
}


def _per_call(read: Callable[[Any], Any], events: list[Any]) -> float:
    """Microseconds per read, the best of five passes over ``events``."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for event in events:
            read(event)
        best = min(best, time.perf_counter() - start)
    return best / len(events) * 1e6


def measure(patched: bool, count: int = 3000) -> dict[str, float]:
    """Each read of READS over ``count`` gift wraps, in microseconds per read."""
    import nostr_sdk as ns

    if patched:
        from p2p_comm import sdk_speedups

        sdk_speedups.apply()
    keys, receiver = ns.Keys.generate(), ns.Keys.generate().public_key()
    rumor = ns.EventBuilder(ns.Kind(25714), "x" * 600).finalize_unsigned(keys.public_key())
    wrap = ns.nip59_make_gift_wrap(keys, receiver, rumor)
    events = [ns.Event.from_json(wrap.as_json()) for _ in range(count)]
    return {name: _per_call(read, events) for name, read in READS.items()}


def both(smoke: bool) -> list[tuple[str, float, float]]:
    """(read, microseconds patched, microseconds as generated), each in a new process."""
    found = []
    for patched in (True, False):
        command = [sys.executable, "-m", "bench.sdk_calls", *(["--patched"] if patched else [])]
        if smoke:
            command.append("--smoke")
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        found.append(json.loads(output))
    return [(name, found[0][name], found[1][name]) for name in READS]


if __name__ == "__main__":
    print(json.dumps(measure("--patched" in sys.argv, 300 if "--smoke" in sys.argv else 3000)))
