import json
import os
import subprocess
from pathlib import Path

from p2p_comm.harness import p2p_command
from tests.schema_check import check


def _daemon_homes() -> set[str]:
    """Working directory of every running daemon (a daemon runs in its home)."""
    found = subprocess.run(["pgrep", "-f", "p2p_comm.daemon"], capture_output=True, text=True)
    homes = set()
    for pid in found.stdout.split():
        try:
            homes.add(os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)"))
        except OSError:
            continue
    return homes


def test_demo_runs_and_leaves_no_process() -> None:
    proc = subprocess.run(
        [*p2p_command(), "demo", "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = check("demo", json.loads(proc.stdout))
    steps = [s["step"] for s in result["steps"]]
    assert "alice: p2p list" in steps and "bob: p2p list" in steps
    assert steps[-1].startswith("daemons stopped")
    details = "\n".join(s["detail"] for s in result["steps"])
    for shown in (
        "[call_request]",
        "[call_accepted]",
        "[file]",
        "[message]",
        "[escalation]",
        "[call_ended]",
        "# Call ",
    ):
        assert shown in details, shown
    homes = {
        s["detail"].split()[1] for s in result["steps"] if s["step"].endswith("identity created")
    }
    assert len(homes) == 2
    assert not homes & _daemon_homes()
    assert not any(Path(home).exists() for home in homes)
