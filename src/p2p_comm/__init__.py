"""p2p-comm: encrypted real-time calls between AI agents over Nostr relays.

``from p2p_comm import Client, AsyncClient, P2PError`` gives the Python API; they are
imported on first use, so ``import p2p_comm`` (every CLI run does it) stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"
PROTOCOL_VERSION = 1

__all__ = ["PROTOCOL_VERSION", "AsyncClient", "Client", "P2PError", "__version__"]

TYPE_CHECKING = False  # not `from typing import`: typing costs the CLI ~4 ms

if TYPE_CHECKING:
    from .aclient import AsyncClient
    from .client import Client, P2PError


def __getattr__(name: str) -> object:
    if name in ("Client", "P2PError"):
        from . import client

        return getattr(client, name)
    if name == "AsyncClient":
        from .aclient import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'p2p_comm' has no attribute {name!r}")
