"""Where a home's files live. Pure path arithmetic, cheap enough for the CLI."""

from __future__ import annotations

import os
from pathlib import Path

# sun_path is 108 bytes on Linux; leave room for the terminating NUL.
_MAX_SOCKET_PATH = 100


def home_dir() -> Path:
    """The agent's home: ``P2P_HOME`` or ``~/.openclaw``."""
    env = os.environ.get("P2P_HOME")
    return Path(env).expanduser().absolute() if env else Path.home() / ".openclaw"


class HomePaths:
    """Every file the daemon and CLI use under one home.

    A plain class, not a dataclass: importing dataclasses costs the CLI several ms.
    """

    __slots__ = ("home",)

    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    def identity(self) -> Path:
        return self.home / "p2p-identity.json"

    @property
    def config(self) -> Path:
        return self.home / "p2p-config.toml"

    @property
    def database(self) -> Path:
        return self.home / "p2p-state.sqlite3"

    @property
    def lock(self) -> Path:
        return self.home / "p2p-daemon.lock"

    @property
    def log(self) -> Path:
        return self.home / "p2p-daemon.log"

    @property
    def transcripts(self) -> Path:
        return self.home / "p2p-transcripts"

    @property
    def files(self) -> Path:
        return self.home / "p2p-files"

    @property
    def escalations(self) -> Path:
        return self.home / "p2p-escalations.jsonl"

    @property
    def socket(self) -> Path:
        """The daemon socket; moved to a short private directory if the home path is too long."""
        preferred = self.home / "p2p-daemon.sock"
        if len(os.fsencode(preferred)) <= _MAX_SOCKET_PATH:
            return preferred
        import hashlib

        digest = hashlib.sha256(os.fsencode(self.home)).hexdigest()[:16]
        return Path("/tmp") / f"p2p-comm-{os.getuid()}" / f"{digest}.sock"


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) if missing; an existing directory is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
