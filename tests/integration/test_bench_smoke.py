"""The benchmark suite runs end to end at tiny sizes (its numbers are not checked here)."""

import json
import subprocess
import sys
from pathlib import Path


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(out.read_text())["figures"]
    assert len(figures) == 20  # 13, and 7 for public-relay policies (bench/relays.py)
    assert all(f["median"] is not None for f in figures)
    assert "| figure" in proc.stdout and "cold start" in proc.stdout
