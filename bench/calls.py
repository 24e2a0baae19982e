"""Message latency as the agent sees it, and file transfer time, through the real CLI.

python -m bench.calls [--messages 50] [--file-mib 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from p2p_comm.harness import Agent, RelayProcess, p2p_command, wait_until


def _blocked_waiter(agent: Agent) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*p2p_command(), "wait", "--timeout", "30", "--json"],
        env=agent.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: agent.json("status")["calls"]["waiting_clients"] == 1, 10, "wait to block")
    return proc


def message_latency(alice: Agent, bob: Agent, count: int) -> list[float]:
    """Seconds from `p2p send` returning to the peer's blocked `p2p wait` returning."""
    samples = []
    for index in range(count):
        waiter = _blocked_waiter(bob)
        alice.run("send", f"ping {index}")
        sent = time.perf_counter()
        waiter.wait(30)
        samples.append(time.perf_counter() - sent)
        assert waiter.stdout is not None and f"ping {index}" in waiter.stdout.read()
        waiter.stdout.close()
    return samples


def file_transfer(alice: Agent, bob: Agent, size: int) -> float:
    """Seconds from `p2p sendfile` starting to the verified file event at the peer."""
    with tempfile.NamedTemporaryFile(dir="/tmp") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        waiter = _blocked_waiter(bob)
        start = time.perf_counter()
        alice.run("sendfile", "big.bin", "--path", handle.name, timeout=600)
        while True:
            assert waiter.stdout is not None
            if '"type": "file"' in waiter.stdout.read():
                break
            waiter = subprocess.Popen(
                [*p2p_command(), "wait", "--timeout", "60", "--json"],
                env=bob.env,
                stdout=subprocess.PIPE,
                text=True,
            )
        waiter.wait(60)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--file-mib", type=float, default=5)
    args = parser.parse_args()
    relay = RelayProcess().start()
    alice, bob = Agent("alice", [relay.url]), Agent("bob", [relay.url])
    try:
        for agent in (alice, bob):
            agent.run("daemon", "start")
        wait_until(lambda: "bob" in alice.online_names(), 20, "discovery")
        call_id = alice.json("call", "bob", "bench")["id"]
        wait_until(lambda: bob.json("status")["calls"]["ringing_in"], 20, "ring")
        bob.json("answer", "accept")
        wait_until(lambda: alice.json("status")["calls"]["active"], 20, "accept")
        bob.json("inbox")
        samples = message_latency(alice, bob, args.messages)
        size = int(args.file_mib * 1024 * 1024)
        seconds = file_transfer(alice, bob, size)
        median = statistics.median(samples) * 1000
        p95 = sorted(samples)[int(len(samples) * 0.95) - 1] * 1000
        print(f"call {call_id[:8]}")
        print(
            f"message latency, send returned -> peer wait returned, n={len(samples)}:"
            f" median {median:.1f} ms, p95 {p95:.1f} ms"
        )
        print(
            f"file {args.file_mib} MiB, sendfile start -> verified at peer: {seconds:.2f} s"
            f" ({size / seconds / 1048576:.2f} MiB/s)"
        )
    finally:
        for agent in (alice, bob):
            agent.cleanup()
        relay.stop()


if __name__ == "__main__":
    main()
