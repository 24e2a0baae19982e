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
    # The one module whose job is patching another project's code: nostr-sdk's generated
    # bindings, where the speed-ups replace private functions (each patch checks the
    # shape it expects first, and leaves bindings of another shape alone).
    patches_third_party = {"sdk_speedups.py"}
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).as_posix() in patches_third_party:
            continue
        found = _private_reaches(path)
        if found:
            reaches[path.relative_to(SRC).as_posix()] = found
    assert reaches == {}


# Attributes that connect one part to another: given at construction, never set later.
WIRING = ("on_", "sink", "hooks", "waker")


def _set_later(path: Path) -> list[str]:
    """Attributes ``path`` sets on another object: ``self.part.attr = ...``, or a wiring
    attribute (`WIRING`) of anything not ``self``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                if not isinstance(element, ast.Attribute):
                    continue
                owner = element.value
                on_self = isinstance(owner, ast.Name) and owner.id == "self"
                deep = isinstance(owner, ast.Attribute) and ast.unparse(owner).startswith("self.")
                wiring = element.attr.startswith(WIRING) and not on_self
                if deep or wiring:
                    found.append(f"{node.lineno}: {ast.unparse(element)}")
    return found


def test_parts_are_connected_at_construction_only() -> None:
    """app.py set `inbox.waker`, `calls.hooks`, `inbound.sink`, `outbound.on_undeliverable`
    ... after making the parts, and `Inbound` set its pool's `on_waste`: now each part gets
    its collaborators and callbacks through its constructor (daemon/builder.py)."""
    found = {}
    for path in sorted((SRC / "daemon").rglob("*.py")):
        if later := _set_later(path):
            found[path.name] = later
    assert found == {}


def test_only_the_builder_makes_the_daemons_parts() -> None:
    """Every part of `Parts` is made in builder.py and nowhere else in the package; the
    test seam (tests/unit/daemon/seam.py) builds through it too."""
    from p2p_comm.daemon.builder import Parts

    given = {"HomePaths", "Config", "Identity", "Store"}  # opened by the process, passed in
    part_types = {str(kind) for kind in Parts.__annotations__.values()} - given
    made_elsewhere = []
    # The daemon's modules only: protocol/call.py has an `Inbound` of its own (a file).
    for path in sorted((SRC / "daemon").rglob("*.py")):
        if path.name == "builder.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = (
                node.func.id
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                else ""
            )
            if name in part_types:
                made_elsewhere.append(f"{path.name}:{node.lineno} {name}")
    assert made_elsewhere == []
    seam = (Path(__file__).parents[1] / "daemon" / "seam.py").read_text()
    assert "build(" in seam


# The daemon's layers, lowest first: each imports only from its own layer and those below.
# The modules at the root of daemon/ (builder, app, process, __main__) are the top.
DAEMON_LAYERS = ["base", "relays", "notify", "calls", "agent", ""]


def _daemon_modules() -> dict[str, Path]:
    """Every daemon module by dotted name under p2p_comm.daemon ("relays.inbound", "app")."""
    root = SRC / "daemon"
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _daemon_imports(name: str, path: Path) -> set[str]:
    """The daemon modules ``name`` imports (packages count as their ``__init__``), leaving
    out imports made only for type checking (``if TYPE_CHECKING:``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["p2p_comm", "daemon", *package]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            if target.startswith("p2p_comm.daemon."):
                found.add(target.removeprefix("p2p_comm.daemon."))
    modules = _daemon_modules()
    return {target for target in found if target in modules and target != name}


def _layer(name: str) -> int:
    first = name.split(".")[0]
    return DAEMON_LAYERS.index(first if first in DAEMON_LAYERS else "")


def test_daemon_layers_import_only_downward() -> None:
    """base < relays < notify < calls < agent < the root (builder, app, process): a module
    imports from its own layer or lower ones only (issue 19)."""
    modules = _daemon_modules()
    assert {name.split(".")[0] for name in modules if "." in name} == set(DAEMON_LAYERS[:-1])
    upward = [
        f"{name} -> {target}"
        for name, path in modules.items()
        for target in sorted(_daemon_imports(name, path))
        if "." in target and _layer(target) > _layer(name)
    ]
    assert upward == []


def test_daemon_modules_import_no_cycle() -> None:
    """No import cycle among the daemon's modules (type-checking imports left out)."""
    modules = _daemon_modules()
    graph = {name: _daemon_imports(name, path) for name, path in modules.items()}
    done: set[str] = set()
    cycles: list[str] = []

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            cycles.append(" -> ".join([*stack[stack.index(name) :], name]))
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*stack, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []


def test_no_daemon_module_is_over_about_400_lines() -> None:
    """Each daemon module is readable in one sitting (issue 19: "no daemon module over ~400
    lines")."""
    long = {
        str(path.relative_to(SRC)): lines
        for path in (SRC / "daemon").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 420
    }
    assert long == {}


def test_a_command_names_its_call_once_and_handlers_are_not_wrapped() -> None:
    """`GroupCommands.wrap` took the 1:1 handlers and wrapped them (`partial`, then
    `getattr(self, f"_group_{name}")`): the group layer resolved `--call`, and the 1:1
    handler resolved it again. Now `--call` is matched in one place (`calls/targets.py`),
    and every handler is a plain method given the group or call it acts on."""
    matchers, wrappers = [], []
    for path in sorted((SRC / "daemon").rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            text = ast.unparse(node) if isinstance(node, ast.Call) else ""
            if ".startswith(prefix" in text and relative != "daemon/calls/targets.py":
                matchers.append(f"{relative}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "functools":
                wrappers += [f"{relative}: {a.name}" for a in node.names if a.name == "partial"]
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and any(isinstance(arg, ast.JoinedStr) for arg in node.args)
            ):
                wrappers.append(f"{relative}:{node.lineno}")
    assert matchers == []
    assert wrappers == []
