"""Which layer each test module tests: one pytest marker per layer, so that
``pytest -m protocol`` runs the sans-IO machines' tests alone (tests/conftest.py applies
them; pyproject.toml registers them; tests/unit/shape/test_layers.py holds every module to one).

The tests mirror the layout: tests/unit has a directory per layer, and a module's
directory gives its layer; BY_MODULE names the few exceptions.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).parent

LAYERS = {
    "protocol": "the sans-IO machines and wire formats (src/p2p_comm/protocol/)",
    "nostr": "the Nostr NIPs (src/p2p_comm/nostr/)",
    "daemon": "the daemon's parts, in process, without relays (src/p2p_comm/daemon/)",
    "surface": "what agents read and call: registry, CLI, MCP, text rendering",
    "e2e": "real daemons, relays and processes (tests/integration/)",
    "shape": "the shape of the code and of the tests",
}

# Directories under tests/ whose every module tests one layer (deepest match wins).
BY_DIRECTORY = {
    "integration": "e2e",
    "unit/protocol": "protocol",
    "unit/nostr": "nostr",
    "unit/daemon": "daemon",
    "unit/surface": "surface",
    "unit/shape": "shape",
}

# Modules whose layer is not their directory's.
BY_MODULE = {
    "unit/nostr/test_on_relays.py": "e2e",  # nostr/ against real relays
}


def layer_of(path: Path) -> str:
    """The layer of the test module at ``path`` (KeyError: a module no one placed)."""
    relative = path.resolve().relative_to(TESTS).as_posix()
    if relative in BY_MODULE:
        return BY_MODULE[relative]
    folders = [d for d in BY_DIRECTORY if relative.startswith(d + "/")]
    if not folders:
        raise KeyError(f"{relative}: in no layer (tests/layers.py)")
    return BY_DIRECTORY[max(folders, key=len)]
