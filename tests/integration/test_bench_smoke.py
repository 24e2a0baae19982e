"""The benchmark suite runs end to end at tiny sizes (its numbers are not checked here)."""

import json
import subprocess
import sys
from pathlib import Path


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=100)  # inside the suite's 120 s per test
    finally:
        if proc.poll() is None:
            proc.terminate()  # the bench stops its relay and agents on SIGTERM
            proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    figures = json.loads(out.read_text())["figures"]
    names = " | ".join(f["name"] for f in figures)
    for expected in (
        "p2p status wall time",
        "message latency daemon to daemon",
        "catch-up of",
        "with 80 unacknowledged",
        "database bytes per message",
        "p2p history on a home",
        "private memory (USS)",
        "cold start",
        "group of 2",
        "refusals per accepted event",
        "KiB relay",
        "from nostr-sdk",
    ):
        assert expected in names, f"no figure named like {expected!r}"
    assert all(f["median"] is not None for f in figures)
    assert "| figure" in stdout and "cold start" in stdout
