"""Where a home's files live. Pure path arithmetic.

The CLI's hot path uses `locations` instead: importing pathlib costs it milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

from .locations import home_str, socket_path


def home_dir() -> Path:
    """The agent's home: ``P2P_HOME`` or ``~/.openclaw``."""
    return Path(home_str())


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
        return Path(socket_path(os.fspath(self.home)))


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) if missing; an existing directory is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
