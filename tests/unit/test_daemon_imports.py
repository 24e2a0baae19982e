"""What the daemon does not load: every module imported is private memory in every agent's
daemon (issue 20: under 25 MiB per extra agent), so what is rarely needed is imported when
it is."""

import subprocess
import sys

# The NIP-11 fetch's HTTP stack (urllib.request, http.client and the email package: 1.8 MiB)
# and difflib (config's "did you mean", 0.2 MiB).
NOT_AT_START = ("urllib.request", "http.client", "email.parser", "difflib")


def test_the_daemon_imports_no_http_stack_or_difflib() -> None:
    code = (
        "import sys, p2p_comm.daemon.__main__, p2p_comm.sdk_speedups as s; s.apply(); "
        f"print(sorted(m for m in {NOT_AT_START!r} if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"
