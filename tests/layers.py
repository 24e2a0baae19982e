"""Which layer each test module tests: one pytest marker per layer, so that
``pytest -m protocol`` runs the sans-IO machines' tests alone (tests/conftest.py applies
them; pyproject.toml registers them; tests/unit/test_layers.py holds every module to one).

Directories give the layer where all their modules share one; tests/unit names each
module, its modules testing every layer from the protocol up.
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
    "unit/nostr": "nostr",
}

BY_MODULE = {
    # protocol/: machines, limits, wire
    "unit/test_call_core.py": "protocol",
    "unit/test_frag.py": "protocol",
    "unit/test_group_loops.py": "protocol",
    "unit/test_limits.py": "protocol",
    "unit/test_presence.py": "protocol",
    "unit/test_properties.py": "protocol",
    "unit/test_ratchet.py": "protocol",
    "unit/test_sanitize.py": "protocol",
    "unit/test_wire.py": "protocol",
    # nostr/ against real relays
    "unit/nostr/test_on_relays.py": "e2e",
    # daemon/ and what it stands on (config, identity, store, files)
    "unit/test_atomicfile.py": "daemon",
    "unit/test_chunk_size.py": "daemon",
    "unit/test_config.py": "daemon",
    "unit/test_daemon_imports.py": "daemon",
    "unit/test_daemon_parts.py": "daemon",
    "unit/test_secrecy.py": "daemon",
    "unit/test_files.py": "daemon",
    "unit/test_frag_seam.py": "daemon",
    "unit/test_held_work.py": "daemon",
    "unit/test_identity.py": "daemon",
    "unit/test_inbox_relays_config.py": "daemon",
    "unit/test_mining_lane.py": "daemon",
    "unit/test_relay_health.py": "daemon",
    "unit/test_sdk_speedups.py": "daemon",
    "unit/test_sendpath.py": "daemon",
    "unit/test_size_stall.py": "daemon",
    "unit/test_store.py": "daemon",
    "unit/test_tighten.py": "daemon",
    # the surfaces
    "unit/test_frames.py": "surface",
    "unit/test_registry.py": "surface",
    "unit/test_textout.py": "surface",
    # shape
    "unit/test_layers.py": "shape",
    "unit/test_structure.py": "shape",
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
