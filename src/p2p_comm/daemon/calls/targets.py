"""What a command is about: a 1:1 call or a group, resolved once.

The agent sees groups and 1:1 calls as one list of calls; a group's pairwise sessions are
hidden behind it. Every command that names a call (or implies the only one that fits)
resolves it here, once, to a `Target`; the command then acts on that object. The listings
(`status`, `history`, `list`) read the same visible set, so they never disagree with what
a command would pick.
"""

from __future__ import annotations

from typing import Any

from ...protocol.call import ENDED, OUTGOING, Call
from ...protocol.group import Group
from ..base.errors import CommandError
from ..relays.directory import npub_of
from .calls import CallService
from .groups import GroupService

Target = Group | Call


class Targets:
    """Resolves ``--call`` (or its absence) to the one group or 1:1 call it means."""

    def __init__(self, service: CallService, groups: GroupService) -> None:
        self.service = service
        self.groups = groups

    def visible(self) -> list[tuple[str, str, Target]]:
        """(id, state, target) of what the agent sees as calls."""
        seen: list[tuple[str, str, Target]] = [
            (c.id, str(c.state), c)
            for c in self.service.calls.values()
            if not self.groups.hidden(c)
        ]
        seen += [(g.id, self.groups.user_state(g), g) for g in self.groups.groups.values()]
        return seen

    def resolve(
        self, prefix: Any, states: tuple[str, ...], what: str, incoming: bool = False
    ) -> Target:
        """The call named by ``prefix``, else the only visible one in ``states`` (``incoming``:
        not one this agent placed). One clear error for none or several."""
        visible = self.visible()
        if isinstance(prefix, str) and prefix:
            matches = [t for cid, _, t in visible if cid.startswith(prefix.lower())]
            if not matches:
                raise CommandError("no_call", f"no call matches '{prefix}'.")
            if len(matches) > 1:
                listed = ", ".join(t.id[:12] for t in matches)
                raise CommandError("ambiguous_call", f"'{prefix}' matches several calls: {listed}.")
            return matches[0]
        candidates = [
            t
            for _, state, t in visible
            if state in states
            and not (incoming and isinstance(t, Call) and t.direction == OUTGOING)
        ]
        if not candidates:
            raise CommandError("no_call", f"there is no {what}.")
        if len(candidates) > 1:
            listed = ", ".join(f"{t.id[:8]} ({self._label(t)})" for t in candidates)
            raise CommandError(
                "ambiguous_call", f"several calls qualify; pick one with --call: {listed}."
            )
        return candidates[0]

    def _label(self, target: Target) -> str:
        if isinstance(target, Group):
            return "group"
        return self.service.peer_names.get(target.id, "")

    def describe(self, target: Target) -> dict[str, Any]:
        if isinstance(target, Group):
            return self.groups.describe(target)
        return self.service.records.describe(target, self.service.peer_names.get(target.id, ""))

    def newest(self) -> Target:
        """The most recently started visible call (``transcript`` with no ``--call``)."""
        visible = [t for _, _, t in self.visible()]
        if not visible:
            raise CommandError("no_call", "there are no calls yet.")
        return max(visible, key=lambda t: t.created_at)

    def history(self, limit: int | None) -> list[dict[str, Any]]:
        """Every visible call, newest first, at most ``limit`` of them."""
        targets = sorted((t for _, _, t in self.visible()), key=lambda t: -t.created_at)
        return [self.describe(t) for t in targets[:limit]]

    def open_calls(self) -> list[dict[str, Any]]:
        """The visible calls not ended, described (for `status`)."""
        return [self.describe(t) for _, state, t in self.visible() if state != ENDED]

    def in_call_with_me(self) -> dict[str, list[str]]:
        """Pubkey -> ids of the open calls it is in with this agent (for `list`)."""
        found: dict[str, list[str]] = {}
        for _, state, target in self.visible():
            if state == ENDED:
                continue
            if isinstance(target, Group):
                for member in target.confirmed():
                    found.setdefault(member.pubkey, []).append(target.id)
            else:
                found.setdefault(target.peer, []).append(target.id)
        return found

    def peers(self, target: Target) -> list[tuple[str, str]]:
        """(npub, name) of everyone a message to ``target`` reaches."""
        if isinstance(target, Group):
            return self.groups.names(target)
        return [(npub_of(target.peer), self.service.peer_names.get(target.id, ""))]
