"""RPC handlers for the commands that name a call: resolved once, then handed on.

`--call` (or the only call that fits) is resolved by `Targets` to a group or a 1:1 call,
once; the group goes to `GroupCommands`, the 1:1 call to `CallCommands`. Loop protection
(refusing `send` while a loop is suspected, watching what this agent says) sits here, the
same for both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ... import clock
from ...protocol.call import ACTIVE, ENDED, RINGING
from ...protocol.group import Group
from ..base.errors import CommandError
from ..calls.targets import Target, Targets
from ..notify.loopwatch import LoopWatch
from .commands import CallCommands, OutgoingFile
from .group_commands import GroupCommands

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class TargetCommands:
    """answer, send, sendfile, escalate, end, invite, transcript and history."""

    def __init__(
        self, targets: Targets, calls: CallCommands, groups: GroupCommands, loops: LoopWatch
    ) -> None:
        self.targets = targets
        self.calls = calls
        self.groups = groups
        self.loops = loops
        self.me = groups.groups.me

    def handlers(self) -> dict[str, Handler]:
        return {
            "answer": self.answer,
            "send": self.send,
            "sendfile": self.sendfile,
            "escalate": self.escalate,
            "end": self.end,
            "invite": self.invite,
            "transcript": self.transcript,
            "history": self.history,
        }

    def _active(self, params: dict[str, Any]) -> Target:
        return self.targets.resolve(params.get("call"), (ACTIVE,), "active call")

    async def answer(self, params: dict[str, Any]) -> Any:
        if params.get("decision") not in ("accept", "reject"):
            raise CommandError("bad_request", "answer with 'accept' or 'reject'.")
        target = self.targets.resolve(
            params.get("call"), (RINGING,), "ringing incoming call", incoming=True
        )
        if isinstance(target, Group):
            return await self.groups.answer(target, params)
        return await self.calls.answer(target, params)

    async def send(self, params: dict[str, Any]) -> Any:
        target = self._active(params)
        self.loops.check_send(target.id, bool(params.get("force")))
        if isinstance(target, Group):
            result = await self.groups.send(target, params)
        else:
            result = await self.calls.send(target, params)
        with self.calls.service.store.transaction():
            self.loops.observe(
                target.id,
                self.me,
                params["text"],
                target.topic,
                self.targets.peers(target),
                clock.now(),
            )
        return result

    async def sendfile(self, params: dict[str, Any]) -> Any:
        target = self._active(params)
        file = await OutgoingFile.read(params, self.calls.service)
        if isinstance(target, Group):
            return await self.groups.sendfile(target, file)
        return await self.calls.sendfile(target, file)

    async def escalate(self, params: dict[str, Any]) -> Any:
        target = self._active(params)
        if isinstance(target, Group):
            return await self.groups.escalate(target, params)
        return await self.calls.escalate(target, params)

    async def end(self, params: dict[str, Any]) -> Any:
        states, what = (ACTIVE, RINGING), "active or ringing call"
        target = self.targets.resolve(params.get("call"), states, what)
        if isinstance(target, Group):
            return await self.groups.end(target, params)
        return await self.calls.end(target, params)

    async def invite(self, params: dict[str, Any]) -> Any:
        return await self.groups.invite(self._active(params), params)

    async def transcript(self, params: dict[str, Any]) -> Any:
        prefix = params.get("call")
        if isinstance(prefix, str) and prefix:
            target = self.targets.resolve(prefix, (ACTIVE, RINGING, ENDED), "call")
        else:
            target = self.targets.newest()
        if isinstance(target, Group):
            return self.groups.transcript(target)
        return self.calls.transcript(target)

    async def history(self, params: dict[str, Any]) -> Any:
        limit = params.get("limit")
        whole = isinstance(limit, int) and not isinstance(limit, bool)
        if limit is not None and not (whole and limit >= 1):
            raise CommandError("bad_request", "'limit' must be a whole number, 1 or more.")
        return {"calls": self.targets.history(limit)}
