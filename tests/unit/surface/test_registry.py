"""The registry is the one description of the command surface: the command line, the MCP
tools and the Python client are held to it here, parameter by parameter."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from p2p_comm import Client
from p2p_comm.daemon.agent.argv import plan
from p2p_comm.mcp_server import _input_error, output_schema
from p2p_comm.registry import BY_NAME, COMMANDS, Command, Param

# Python takes a file's content as bytes or base64 under `data` (MCP: `base64`, a string).
PYTHON_NAMES = {"base64": "data"}
PYTHON_METHODS = {"list": "list_agents", "sendfile": "send_file"}


def _sample(param: Param) -> Any:
    if param.enum:
        return param.enum[-1]
    return {"string": f"x-{param.key}", "integer": 3, "number": 2.5, "boolean": True}[param.type]


def _argv(command: Command, params: tuple[Param, ...]) -> list[str]:
    """A command line giving every one of ``params`` (positionals in the registry's order)."""
    words = [command.name]
    for param in params:
        value = _sample(param)
        if param.cli.startswith("--"):
            words += [param.cli] if param.type == "boolean" else [param.cli, str(value)]
        else:
            words.append(str(value))
    return words


def _cli_cases() -> list[tuple[str, tuple[Param, ...]]]:
    cases = []
    for command in COMMANDS:
        params = command.params
        if command.name == "sendfile":  # a path, or a name and the content: not both
            cases.append((command.name, tuple(p for p in params if p.key != "data")))
            cases.append((command.name, tuple(p for p in params if p.key != "path")))
        else:
            cases.append((command.name, params))
    return cases


@pytest.mark.parametrize(("name", "params"), _cli_cases())
def test_every_parameter_is_reachable_from_the_command_line(
    name: str, params: tuple[Param, ...]
) -> None:
    command = BY_NAME[name]
    request = plan([w.encode() for w in _argv(command, params)], "/tmp")
    assert request.method == name
    for param in params:
        value = request.params.get(param.key)
        if param.key == "path":
            value = value and value.removeprefix("/tmp/")
        assert value == _sample(param), (param.key, request.params)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_parameter_is_reachable_from_python(command: Command) -> None:
    method = getattr(Client, PYTHON_METHODS.get(command.name, command.name))
    accepted = set(inspect.signature(method).parameters)
    for param in command.params:
        assert PYTHON_NAMES.get(param.name, param.name) in accepted, (command.name, param.name)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_tool_has_a_strict_input_and_a_bundled_output_schema(command: Command) -> None:
    schema = command.input_schema()
    assert schema["additionalProperties"] is False
    Draft202012Validator.check_schema(schema)
    bundled = output_schema(command.name)
    Draft202012Validator.check_schema(bundled)
    # Every reference resolves inside the document: a client fetches nothing.
    error = {"ok": True, "schema": "p2p-comm/2"}
    list(Draft202012Validator(bundled).iter_errors(error))
    # The host's SDK validates every result: no keyword that makes it walk each subschema
    # twice (`unevaluatedProperties` made `status` through MCP 3.2 ms, 2.1 ms without it).
    assert "unevaluatedProperties" not in json.dumps(bundled)


def test_output_schemas_hold_real_results() -> None:
    history = {"ok": True, "schema": "p2p-comm/2", "calls": []}
    assert not list(Draft202012Validator(output_schema("history")).iter_errors(history))
    wrong = {"ok": True, "schema": "p2p-comm/2", "calls": "none"}
    assert list(Draft202012Validator(output_schema("history")).iter_errors(wrong))


def test_undeclared_and_mistyped_arguments_are_tool_errors() -> None:
    assert _input_error(BY_NAME["send"], {"text": "hi"}) is None
    unknown = _input_error(BY_NAME["send"], {"text": "hi", "bogus": 1})
    assert unknown is not None and "'bogus'" in unknown and "it takes: text, force" in unknown
    mistyped = _input_error(BY_NAME["history"], {"limit": "1"})
    assert mistyped is not None and "limit" in mistyped
    assert _input_error(BY_NAME["call"], {"agent": "bob"}) is not None, "topic is required"


def test_every_command_has_a_row_in_readmes_table() -> None:
    """README's command table names every command (the daemon refuses to start without a
    handler for each: daemon/app.py)."""
    from pathlib import Path

    import p2p_comm

    readme = (Path(p2p_comm.__file__).parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `p2p ")]
    for command in COMMANDS:
        named = [
            row for row in rows if f"`p2p {command.name} " in row or f"`p2p {command.name}`" in row
        ]
        assert named, f"README's command table lacks {command.name}"


def test_loop_advice_is_said_for_python() -> None:
    """`loop_suspected` told every agent to run `p2p send --force`; a Python agent could not
    (Client.send took no force)."""
    from p2p_comm.client import for_python

    result = {"events": [{"type": "loop_suspected", "call_id": "abcdef123456", "how_to_lift": "x"}]}
    for_python(result)
    assert result["events"][0]["how_to_lift"] == 'send(text, call_id="abcdef12", force=True)'
    assert "force" in inspect.signature(Client.send).parameters
