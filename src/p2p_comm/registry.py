"""Every command an agent can give the daemon, described once.

The MCP tools (their names, input schemas and output schemas) are built from this table;
the Python `Client`/`AsyncClient` methods and the ``p2p`` command line are held to it by
tests (tests/unit/surface/test_registry.py): every command and every parameter is reachable all
three ways, under the names below. The daemon's request keys are ``Param.key``; MCP and
Python use ``Param.name`` (``call_id`` for the call, ``base64`` for file content).

Commands that run in the CLI's own process (``daemon``, ``skill``, ``relay``, ``mcp``,
``demo``) manage this machine, not a conversation, and are the command line's alone.

Kept free of imports: the CLI may load it.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class Param:
    """One parameter: ``key`` in the daemon request, ``name`` in MCP and Python, ``cli``
    on the command line (``--flag``, or an upper-case positional)."""

    key: str
    type: str  # a JSON Schema type: string, integer, number, boolean
    help: str
    cli: str
    required: bool = False
    enum: tuple[str, ...] = ()
    minimum: float | None = None
    alias: str = ""  # the MCP/Python name when it is not ``key``

    @property
    def name(self) -> str:
        return self.alias or self.key

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "description": self.help}
        if self.enum:
            out["enum"] = list(self.enum)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        return out


@dataclass(frozen=True)
class Command:
    """One command: its daemon method (also the CLI word and the result schema's name)."""

    name: str
    summary: str
    params: tuple[Param, ...] = ()
    read_only: bool = False
    tool: str = ""  # the MCP tool name when it is not ``name``

    @property
    def tool_name(self) -> str:
        return self.tool or self.name

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {p.name: p.schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }


CALL = Param(
    "call",
    "string",
    "call id or unambiguous prefix (implied with one call)",
    "--call",
    alias="call_id",
)
PEEK = Param("peek", "boolean", "show without marking them read", "--peek")
AFTER = Param(
    "after",
    "integer",
    "the `cursor` of the last result you received: only later events are returned, and"
    " (through MCP) the events up to it are marked read",
    "--after",
    minimum=0,
)
MAX = Param("max", "integer", "at most this many events; the rest stay unread", "--max", minimum=1)
AGENT = Param("agent", "string", "npub, hex key or unique online name", "AGENT", required=True)

COMMANDS: tuple[Command, ...] = (
    Command("status", "Identity, relays, active and ringing calls, unread counts.", read_only=True),
    Command("whoami", "Own name, npub, hex key and relays.", read_only=True),
    Command(
        "doctor",
        "Probe each relay with a message to ourselves: a verdict per relay.",
        read_only=True,
    ),
    Command(
        "list",
        "Agents online now: name, npub, capabilities, status.",
        (Param("capability", "string", "only agents announcing this capability", "--capability"),),
        read_only=True,
        tool="list_agents",
    ),
    Command(
        "call",
        "Ring an agent (npub, hex key, or a name unique among online agents) about a topic.",
        (AGENT, Param("topic", "string", "what the call is about", "TOPIC", required=True)),
    ),
    Command(
        "answer",
        "Accept or reject a ringing incoming call.",
        (
            Param("decision", "string", "accept or reject", "DECISION", True, ("accept", "reject")),
            Param("reason", "string", "why, when rejecting", "REASON"),
            CALL,
        ),
    ),
    Command(
        "send",
        "Send a message in the active call.",
        (
            Param("text", "string", "the message", "MESSAGE", required=True),
            Param("force", "boolean", "send although a runaway loop is suspected", "--force"),
            CALL,
        ),
    ),
    Command(
        "invite",
        "Add an agent to the active call: it becomes a group call.",
        (
            AGENT,
            Param(
                "anyone_may_invite",
                "boolean",
                "when the call becomes a group: every participant may invite",
                "--anyone-may-invite",
            ),
            CALL,
        ),
    ),
    Command(
        "sendfile",
        "Send a file in the active call: a local path, or the content as base64 with a name.",
        (
            Param("path", "string", "a regular file here, not one of the agent's own", "--path"),
            Param("name", "string", "file name for the peer (default: the path's)", "NAME"),
            Param("data", "string", "the file content, base64-encoded", "BASE64", alias="base64"),
            CALL,
        ),
        tool="send_file",
    ),
    Command(
        "escalate",
        "Tell the peer and the human owner that a human decision is needed.",
        (Param("text", "string", "what the human should know", "MESSAGE", required=True), CALL),
    ),
    Command(
        "end",
        "End the call; returns its transcript.",
        (
            Param("reason", "string", "optional closing note for the peer", "REASON"),
            Param("all", "boolean", "end a group call for everyone (its starter)", "--all"),
            CALL,
        ),
    ),
    Command(
        "inbox",
        "Unread events (messages, files, call requests, answers, escalations, call ends).",
        (PEEK, AFTER, MAX, CALL),
    ),
    Command(
        "wait",
        "Block until at least one unread event arrives (or timeout seconds pass), then return"
        " the events like inbox.",
        (
            Param(
                "timeout", "number", "seconds (default 30, at most 3600)", "--timeout", minimum=0
            ),
            PEEK,
            AFTER,
            MAX,
            CALL,
        ),
    ),
    Command(
        "transcript",
        "A call's transcript (default: the latest call).",
        (CALL,),
        read_only=True,
    ),
    Command(
        "history",
        "Past and current calls, newest first.",
        (Param("limit", "integer", "only the N newest calls", "--limit", minimum=1),),
        read_only=True,
    ),
    Command(
        "contacts",
        "Manage the contact list used by call_policy = contacts.",
        (
            Param(
                "action", "string", "add, remove or list", "ACTION", True, ("add", "remove", "list")
            ),
            Param("agent", "string", "npub, hex key or online name (add, remove)", "AGENT"),
            Param("name", "string", "label to keep for this contact", "--name"),
        ),
    ),
    Command("block", "Drop everything from an agent.", (AGENT,)),
    Command("unblock", "Undo a block.", (AGENT,)),
)

BY_NAME = {command.name: command for command in COMMANDS}
BY_TOOL = {command.tool_name: command for command in COMMANDS}
