"""The machine interface's one schema: its version, and the shapes every producer shares.

Every ``--json`` document (and the MCP tools' structured content) carries
``"schema": SCHEMA``; the JSON Schema files beside this module (draft 2020-12) describe each
command's result, each event type and the error document. The rules, which README's
"Machine interface" section states for users:

- a call is named by ``call_id``, never ``id``;
- another agent that something is about is a ``peer`` object ``{"npub", "name"}``; an entry
  that *is* an agent (``whoami``, ``list`` rows, contacts) keeps ``npub``/``name`` at its
  top level;
- times are Unix seconds as numbers, named ``*_at`` (an event's own time is ``at``);
  durations end in ``_s``;
- sizes in bytes are ``bytes``; a file's name is ``file_name``;
- escalation ids read ``esc:`` and six hex digits.

Kept free of imports: the CLI loads it on every ``--json`` run.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import`: the CLI pays for every import

if TYPE_CHECKING:
    from typing import Any

SCHEMA = "p2p-comm/2"
ESC_PREFIX = "esc:"


def peer(npub: str, name: str, verified: bool = True) -> dict[str, Any]:
    """The one shape of a reference to another agent; with ``name_verified: false`` when the
    name is only what the peer claimed in its call request (it never announced one)."""
    who: dict[str, Any] = {"npub": npub, "name": name}
    if not verified:
        who["name_verified"] = False
    return who


def esc_id(escalation_id: str | None) -> str | None:
    """An escalation id as shown everywhere: ``esc:`` and six hex digits (None stays None)."""
    if not escalation_id:
        return None
    if escalation_id.startswith(ESC_PREFIX):
        return escalation_id
    return ESC_PREFIX + escalation_id


def bare_esc_id(escalation_id: str) -> str:
    """The six hex digits the store keys escalations by."""
    return escalation_id.removeprefix(ESC_PREFIX)


def document(result: dict[str, Any]) -> dict[str, Any]:
    """A successful result as the ``--json`` document: ``ok`` and ``schema`` first."""
    return {"ok": True, "schema": SCHEMA, **result}


def error_document(code: str, message: str) -> dict[str, Any]:
    """A failure as the ``--json`` document."""
    return {"ok": False, "schema": SCHEMA, "error": {"code": code, "message": message}}


# Transcript entries and unread events written by earlier versions (schema 1) are read back
# in today's shape, so a reader never meets two dialects.
_FILE_KEYS = {"name": "file_name", "size": "bytes"}


def upgrade_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored transcript entry in the current shape."""
    if entry.get("type") in ("file", "refused"):
        for old, new in _FILE_KEYS.items():
            if old in entry and new not in entry:
                entry[new] = entry.pop(old)
    if "from_npub" in entry:
        entry["peer"] = peer(entry.pop("from_npub"), entry.pop("from_name", ""))
    if entry.get("type") == "invited" and "npub" in entry:
        entry["peer"] = peer(entry.pop("npub"), entry.pop("name", ""))
    return entry


def upgrade_event(event: dict[str, Any]) -> dict[str, Any]:
    """A stored agent event in the current shape."""
    if "peer" in event:
        return event
    npub, name = event.pop("npub", ""), event.pop("peer_name", "")
    if event.get("type") in ("file", "refused"):
        for old, new in _FILE_KEYS.items():
            if old in event:
                event[new] = event.pop(old)
    else:
        event.pop("name", None)
    event.pop("caller_name", None)
    event["peer"] = peer(npub, name) if npub or name else None
    if "ts" in event:
        event["at"] = event.pop("ts")
    if event.get("type") == "owner_reply":
        event["escalation_id"] = esc_id(event.get("escalation_id"))
    return event
