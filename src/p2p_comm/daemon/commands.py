"""RPC handlers for the call commands: call, answer, send, sendfile, escalate, end, inbox, ..."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import rpc
from ..protocol.call import ACTIVE, ENDED, INCOMING, RINGING, Call, CallError
from ..protocol.events import Effect
from ..sanitize import clean_label
from .calls import CallService, decode_base64, npub_of
from .owner import OwnerChannels

log = logging.getLogger("p2p.commands")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
MAX_WAIT = 3600.0


def _text(params: dict[str, Any], key: str, required: bool = True) -> str:
    value = params.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise rpc.RpcError("bad_request", f"'{key}' must be a non-empty string.")
    return value


def _call_arg(params: dict[str, Any]) -> str | None:
    value = params.get("call")
    return value if isinstance(value, str) and value else None


class CallCommands:
    """Turns RPC requests into actions on the call service."""

    def __init__(self, service: CallService, owner: OwnerChannels) -> None:
        self.service = service
        self.owner = owner

    def handlers(self) -> dict[str, Handler]:
        return {
            "call": self.call,
            "answer": self.answer,
            "send": self.send,
            "sendfile": self.sendfile,
            "escalate": self.escalate,
            "end": self.end,
            "inbox": self.inbox,
            "wait": self.wait,
            "transcript": self.transcript,
            "history": self.history,
            "contacts": self.contacts,
            "block": self.block,
            "unblock": self.unblock,
        }

    async def _do(self, call: Call, action: Callable[[], list[Effect]]) -> None:
        try:
            effects = action()
        except CallError as exc:
            raise rpc.RpcError("bad_state", str(exc)) from None
        await self.service.act(call, effects)

    async def call(self, params: dict[str, Any]) -> Any:
        return await self.service.start_call(_text(params, "agent"), _text(params, "topic"))

    async def answer(self, params: dict[str, Any]) -> Any:
        decision = params.get("decision")
        if decision not in ("accept", "reject"):
            raise rpc.RpcError("bad_request", "answer with 'accept' or 'reject'.")
        call = self.service.pick(_call_arg(params), (RINGING,), "ringing incoming call", INCOMING)
        now = time.time()
        if decision == "accept":
            await self._do(call, lambda: call.accept(now))
            self.service.record(call, "call_accepted", {})
        else:
            reason = _text(params, "reason", required=False) or "declined"
            self.service.record(call, "call_rejected", {"reason": reason})
            await self._do(call, lambda: call.reject(reason, now))
        return self.service.describe(call)

    async def send(self, params: dict[str, Any]) -> Any:
        accepted_at = time.time()
        text = _text(params, "text")
        call = self.service.pick(_call_arg(params), (ACTIVE,), "active call")
        self.service.record(call, "message", {"text": text})
        await self._do(call, lambda: call.send_text(text, time.time()))
        return {
            "call_id": call.id,
            "bytes": len(text.encode()),
            "accepted_at": accepted_at,
            **self._delivery(call),
        }

    async def sendfile(self, params: dict[str, Any]) -> Any:
        name = _text(params, "name")
        call = self.service.pick(_call_arg(params), (ACTIVE,), "active call")
        limit = self.service.limits.max_file_bytes
        if isinstance(params.get("path"), str):
            data = _read_file(Path(params["path"]), limit)
        else:
            data = decode_base64(_text(params, "data", required=False))
        if len(data) > limit:
            raise rpc.RpcError(
                "too_large", f"the file is {len(data)} bytes, over the limit of {limit}."
            )
        result = await self.service.send_file(call, name, data)
        return {**result, **self._delivery(call)}

    async def escalate(self, params: dict[str, Any]) -> Any:
        text = _text(params, "text")
        call = self.service.pick(_call_arg(params), (ACTIVE,), "active call")
        self.service.record(call, "escalation", {"text": text})
        await self._do(call, lambda: call.escalate(text, time.time()))
        details = {
            "agent": self.service.presence.name,
            "call_id": call.id,
            "peer": self.service.peer_names.get(call.id, ""),
            "peer_npub": npub_of(call.peer),
            "topic": call.topic,
            "text": text,
        }
        outcome = await self.owner.escalate(details)
        self.service.store.add_escalation(outcome["escalation_id"], call.id, text, time.time())
        self.service.store.commit()
        return {"call_id": call.id, "peer_notified": True, **outcome}

    async def end(self, params: dict[str, Any]) -> Any:
        call = self.service.pick(_call_arg(params), (ACTIVE, RINGING), "active or ringing call")
        reason = _text(params, "reason", required=False)
        self.service.record(call, "call_ended", {"reason": reason})
        await self._do(call, lambda: call.end(reason, time.time()))
        markdown, _ = self.service.transcript(call)
        return {
            "call_id": call.id,
            "transcript": markdown,
            "transcript_path": str(self.service.paths.transcripts / f"{call.id}.md"),
        }

    async def inbox(self, params: dict[str, Any]) -> Any:
        return {"events": self.service.take_unread()}

    async def wait(self, params: dict[str, Any]) -> Any:
        timeout = params.get("timeout", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise rpc.RpcError("bad_request", "timeout must be a number of seconds.")
        events = await self.service.wait_unread(min(float(timeout), MAX_WAIT))
        return {"events": events, "timed_out": not events}

    async def transcript(self, params: dict[str, Any]) -> Any:
        states = (ACTIVE, RINGING, ENDED)
        prefix = _call_arg(params)
        if prefix is None:
            ended = sorted(self.service.calls.values(), key=lambda c: c.created_at)
            if not ended:
                raise rpc.RpcError("no_call", "there are no calls yet.")
            call = ended[-1]
        else:
            call = self.service.pick(prefix, states, "call")
        markdown, document = self.service.transcript(call)
        return {"call_id": call.id, "transcript": markdown, **document}

    async def history(self, params: dict[str, Any]) -> Any:
        calls = sorted(self.service.calls.values(), key=lambda c: c.created_at, reverse=True)
        return {"calls": [self.service.describe(c) for c in calls]}

    async def contacts(self, params: dict[str, Any]) -> Any:
        service, store = self.service, self.service.store
        action = params.get("action")
        if action in ("add", "remove"):
            pubkey, known_name = service.resolve(_text(params, "agent"))
            if action == "add":
                name = _text(params, "name", required=False) or known_name
                store.add_contact(pubkey, clean_label(name, 64), time.time())
                service.contacts.add(pubkey)
            else:
                if not store.remove_contact(pubkey):
                    raise rpc.RpcError("not_found", "that agent is not in your contacts.")
                service.contacts.discard(pubkey)
            store.commit()
        elif action != "list":
            raise rpc.RpcError("bad_request", "contacts takes add, remove or list.")
        listed = [
            {"name": name, "npub": npub_of(pk), "pubkey": pk} for pk, name in store.contacts()
        ]
        return {"contacts": listed, "call_policy": service.config.call_policy}

    async def block(self, params: dict[str, Any]) -> Any:
        pubkey, name = self.service.resolve(_text(params, "agent"))
        self.service.store.block(pubkey, time.time())
        self.service.store.commit()
        self.service.blocked.add(pubkey)
        return {"blocked": npub_of(pubkey), "name": name}

    async def unblock(self, params: dict[str, Any]) -> Any:
        pubkey, name = self.service.resolve(_text(params, "agent"))
        removed = self.service.store.unblock(pubkey)
        self.service.store.commit()
        self.service.blocked.discard(pubkey)
        if not removed:
            raise rpc.RpcError("not_found", "that agent was not blocked.")
        return {"unblocked": npub_of(pubkey), "name": name}

    def _delivery(self, call: Call) -> dict[str, Any]:
        return {"delivery": self.service.store.delivery_counts(call.id)}


def _read_file(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise rpc.RpcError("too_large", f"{path} is {size} bytes, over the limit of {limit}.")
        return path.read_bytes()
    except OSError as exc:
        raise rpc.RpcError("bad_request", f"cannot read {path}: {exc.strerror}.") from None
