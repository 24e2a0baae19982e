"""The shape the code keeps: only the protocol's machines write their own state."""

from __future__ import annotations

import ast
from pathlib import Path

import p2p_comm

SRC = Path(p2p_comm.__file__).parent


def _state_writes(path: Path) -> list[str]:
    """``x.state = ...`` assignments in ``path``, as ``x`` (``self`` inside a class)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "state":
                found.append(ast.unparse(target.value))
    return found


def test_only_the_protocol_machines_write_call_and_group_state() -> None:
    """`protocol/group.py` set `call.state` on sessions and the daemon set `group.state`:
    now a call's state changes only inside `Call`, a group's only inside `Group`."""
    for path in sorted(SRC.rglob("*.py")):
        writes = _state_writes(path)
        relative = path.relative_to(SRC).as_posix()
        if relative == "protocol/group.py":  # a Group writes its own, never a call's
            assert set(writes) <= {"self"}, (relative, writes)
        elif relative != "protocol/call.py":  # the call machine, its constructors included
            assert not writes, (relative, writes)
