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


def _own_names(tree: ast.Module) -> set[str]:
    """The private names a module defines itself: functions, classes, class attributes,
    and attributes its methods set on ``self``/``cls``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in ("self", "cls") and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if name.startswith("_")}


def _private_reaches(path: Path) -> list[str]:
    """Where ``path`` touches another module's private members: ``x._name`` (``x`` not
    ``self``/``cls``) for a ``_name`` it does not define itself, and ``from .m import _name``."""
    tree = ast.parse(path.read_text())
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            base = node.value
            is_self = isinstance(base, ast.Name) and base.id in ("self", "cls")
            private = name.startswith("_") and not name.startswith("__")
            if private and not is_self and name not in own:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and (node.level or "p2p_comm" in (node.module or "")):
            private = [a.name for a in node.names if a.name[0] == "_" and a.name[:2] != "__"]
            found += [f"{node.lineno}: import {name}" for name in private]
    return found


def test_no_module_reaches_into_another_parts_private_members() -> None:
    """The calls service's `_apply` was called from the group layer six times, and
    `group_commands` imported private helpers of `commands`: each part now offers what
    others need as public API (`CallService.apply`, `register`, ...)."""
    reaches = {}
    for path in sorted(SRC.rglob("*.py")):
        found = _private_reaches(path)
        if found:
            reaches[path.relative_to(SRC).as_posix()] = found
    assert reaches == {}
