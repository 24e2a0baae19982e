"""Every test module carries exactly one layer marker (tests/layers.py)."""

from __future__ import annotations

import ast
import tomllib

from tests.layers import BY_MODULE, LAYERS, TESTS, layer_of


def test_every_test_module_is_in_exactly_one_layer() -> None:
    modules = sorted(TESTS.rglob("test_*.py"))
    assert modules
    placed = {path.relative_to(TESTS).as_posix(): layer_of(path) for path in modules}
    assert set(placed.values()) <= set(LAYERS)
    # No module named here that is gone (a rename would leave it in no layer unnoticed).
    assert set(BY_MODULE) <= set(placed)


def test_no_module_adds_a_layer_marker_of_its_own() -> None:
    """The conftest gives the one marker; a `pytestmark` naming a layer would add a second."""
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text())
        marks = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "mark"
        }
        assert not marks & set(LAYERS), path


def test_the_layer_markers_are_registered() -> None:
    config = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())
    registered = config["tool"]["pytest"]["ini_options"]["markers"]
    assert sorted(line.split(":")[0] for line in registered) == sorted(LAYERS)


def test_the_unit_tests_mirror_the_layers() -> None:
    """tests/unit has a directory per layer and no test module outside them, so where a
    test lives says what it tests (and `pytest tests/unit/protocol` runs one layer)."""
    unit = TESTS / "unit"
    assert not sorted(unit.glob("test_*.py")), "a unit test module outside its layer's folder"
    folders = {path.parent.name for path in unit.rglob("test_*.py")}
    assert folders <= set(LAYERS), folders - set(LAYERS)
