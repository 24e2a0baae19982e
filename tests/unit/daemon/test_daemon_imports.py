"""What the daemon does not load: every module imported is private memory in every agent's
daemon (issue 20: under 25 MiB per extra agent), so what is rarely needed is imported when
it is."""

import logging
import subprocess
import sys
from pathlib import Path

from p2p_comm.daemon.process import RotatingLog

# The NIP-11 fetch's HTTP stack (urllib.request, http.client and the email package: 1.8 MiB)
# difflib (config's "did you mean", 0.2 MiB), logging.handlers (with pickle, 0.4 MiB), and
# the ratchet's `cryptography` primitives (about 7 MiB; loaded by the first ratchet call).
NOT_AT_START = (
    "cryptography.hazmat.primitives.ciphers.aead",
    "cryptography.hazmat.primitives.asymmetric.x25519",
    "urllib.request",
    "http.client",
    "email.parser",
    "difflib",
    "logging.handlers",
    "pickle",
)


def test_the_daemon_imports_no_http_stack_difflib_or_logging_handlers() -> None:
    code = (
        "import sys, p2p_comm.daemon.__main__, p2p_comm.sdk_speedups as s; s.apply(); "
        f"print(sorted(m for m in {NOT_AT_START!r} if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"


def test_the_daemon_log_rotates_like_rotating_file_handler(tmp_path: Path) -> None:
    log = tmp_path / "p2p-daemon.log"
    handler = RotatingLog(log, max_bytes=1000, backups=3)
    logger = logging.getLogger("test.rotating")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for number in range(200):
            logger.warning("line %03d %s", number, "x" * 40)
    finally:
        logger.removeHandler(handler)
        handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{log.name}{suffix}" for suffix in ("", ".1", ".2", ".3")]
    assert all(p.stat().st_size < 1000 for p in tmp_path.iterdir())
    assert log.read_text().splitlines()[-1].startswith("line 199")
    first_kept = (tmp_path / f"{log.name}.3").read_text().splitlines()[0]
    newer = (tmp_path / f"{log.name}.1").read_text().splitlines()[0]
    assert first_kept < newer  # oldest in .3, newest in the log itself
