"""Validating documents against the JSON Schema files shipped in the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    folder = resources.files("p2p_comm").joinpath("schema")
    return {
        entry.name.removesuffix(".json"): json.loads(entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    }


@cache
def _registry() -> Registry:  # type: ignore[type-arg]
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in _schemas().values()
    )


def schema_names() -> set[str]:
    return set(_schemas())


def problems(name: str, document: Any) -> list[str]:
    """What is wrong with ``document`` as schema file ``name``.json (empty: valid)."""
    validator = Draft202012Validator(_schemas()[name], registry=_registry())
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def check(name: str, document: Any) -> Any:
    """``document`` if valid as ``name``; otherwise an assertion naming every problem."""
    found = problems(name, document)
    assert not found, f"{name}: {found}\n{json.dumps(document)[:2000]}"
    return document
