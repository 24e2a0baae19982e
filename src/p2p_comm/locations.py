"""The home and the daemon socket as plain strings: all the CLI needs on its hot path."""

from __future__ import annotations

import os

# sun_path is 108 bytes on Linux; leave room for the terminating NUL.
_MAX_SOCKET_PATH = 100


EMPTY_HOME = (
    "P2P_HOME is set but empty; unset it to use ~/.openclaw, or set it to the agent's home"
    " directory."
)


class HomeError(ValueError):
    """``P2P_HOME`` names no home (it is set but empty); the message says what to do."""


def home_str() -> str:
    """The agent's home as an absolute path: ``P2P_HOME`` or ``~/.openclaw``. An empty
    ``P2P_HOME`` is a mistake (a variable meant to hold a path), never the default home."""
    env = os.environ.get("P2P_HOME")
    if env is not None:
        if not env.strip():
            raise HomeError(EMPTY_HOME)
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), ".openclaw")


def socket_path(home: str) -> str:
    """The daemon socket; moved to a short private directory if the home path is too long."""
    preferred = os.path.join(home, "p2p-daemon.sock")
    if len(os.fsencode(preferred)) <= _MAX_SOCKET_PATH:
        return preferred
    import hashlib

    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:16]
    return os.path.join("/tmp", f"p2p-comm-{os.getuid()}", f"{digest}.sock")
