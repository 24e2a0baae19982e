"""RPC handlers for the call commands: call, answer, send, sendfile, escalate, end, inbox, ..."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ... import clock
from ...codes import MAX_WAIT
from ...protocol.call import Call
from ...sanitize import clean_label
from ...schema import bare_esc_id, peer
from ...store import Store
from ..base.errors import CommandError
from ..calls.actions import CallActions
from ..notify.inbox import AgentInbox
from ..notify.owner import OwnerChannels
from ..relays.directory import npub_of
from .progress import report_progress
from .sendpath import read_for_sending

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def text_param(params: dict[str, Any], key: str, required: bool = True) -> str:
    """The string parameter ``key`` of a request (required: present and not blank)."""
    value = params.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise CommandError("bad_request", f"'{key}' must be a non-empty string.")
    return value


def _call_arg(params: dict[str, Any]) -> str | None:
    value = params.get("call")
    return value if isinstance(value, str) and value else None


def _after(params: dict[str, Any]) -> int:
    value = params.get("after") or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CommandError("bad_request", "'after' must be a non-negative event id.")
    return value


def _max(params: dict[str, Any]) -> int | None:
    value = params.get("max")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CommandError("bad_request", "'max' must be a whole number of events, at least 1.")
    return value


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CommandError("bad_request", "the file content is not valid base64.") from None


def _cursor(events: list[dict[str, Any]], params: dict[str, Any]) -> int:
    """The highest event id handed over (else the `after` asked with): what a client passes
    back as `after` to say it has them (the MCP server then marks them read)."""
    return max((int(e["event_id"]) for e in events), default=_after(params))


@dataclass(frozen=True)
class OutgoingFile:
    """What one `sendfile` sends, to one call or to every session of a group: read and
    checked once, queued durably, then handed to the relays."""

    name: str
    data: bytes
    digest: str
    id: str

    @classmethod
    async def read(cls, params: dict[str, Any], service: Any) -> OutgoingFile:
        """From ``path`` (read off the event loop, regular files only, never the home's
        secrets) or base64 ``data``; one clear error for one over the size limit."""
        name = text_param(params, "name")
        limit = service.limits.max_file_bytes
        if isinstance(params.get("path"), str):
            data = await read_for_sending(params["path"], limit, service.files.paths)
        else:
            data = decode_base64(text_param(params, "data", required=False))
        if len(data) > limit:
            raise CommandError(
                "too_large", f"the file is {len(data)} bytes, over the limit of {limit}."
            )
        return cls(name, data, hashlib.sha256(data).hexdigest(), secrets.token_hex(16))

    @property
    def record(self) -> tuple[str, dict[str, Any]]:
        return ("file", {"file_name": self.name, "bytes": len(self.data), "sha256": self.digest})

    def send(self, call: Call, now: float, chunk: int) -> list[Any]:
        return call.send_file(self.id, self.name, self.data, self.digest, now, chunk)

    async def queued(self, call_id: str, work: list[Awaitable[None]]) -> dict[str, Any]:
        """Say it is durable, then publish: a client that loses the daemon after the
        progress line knows the file will still go out (the outbox survives a restart)
        and must not send it again."""
        result = {
            "call_id": call_id,
            "file_name": self.name,
            "bytes": len(self.data),
            "sha256": self.digest,
        }
        report_progress({"queued": True, **result, "total": len(work)})
        await hand_to_relays(work)
        return result


class CallCommands:
    """Turns RPC requests into actions on the call service."""

    def __init__(
        self, actions: CallActions, inbox: AgentInbox, owner: OwnerChannels, my_name: str
    ) -> None:
        self.actions = actions
        self.service = actions.service
        self.inbox = inbox
        self.owner = owner
        self.my_name = my_name

    def handlers(self) -> dict[str, Handler]:
        """The commands that name no call (those that do go through `TargetCommands`)."""
        return {
            "call": self.call,
            "inbox": self.inbox_events,
            "wait": self.wait,
            "ack": self.ack,
            "contacts": self.contacts,
            "block": self.block,
            "unblock": self.unblock,
        }

    def _describe(self, call: Call) -> dict[str, Any]:
        return self.service.records.describe(call, self.service.peer_names.get(call.id, ""))

    async def call(self, params: dict[str, Any]) -> Any:
        agent, topic = text_param(params, "agent"), text_param(params, "topic")
        call, work = self.actions.start_call(agent, topic, self.my_name)
        self.service.publish(work)
        return self._describe(call)

    # On one resolved 1:1 call ---------------------------------------------------------

    async def answer(self, call: Call, params: dict[str, Any]) -> Any:
        if params["decision"] == "accept":
            work = self.actions.act(call, call.accept, ("call_accepted", {}))
        else:
            reason = text_param(params, "reason", required=False) or "declined"
            work = self.actions.act(
                call, lambda now: call.reject(reason, now), ("call_rejected", {"reason": reason})
            )
        self.service.publish(work)
        return self._describe(call)

    async def send(self, call: Call, params: dict[str, Any]) -> Any:
        accepted_at = clock.now()
        text = text_param(params, "text")
        work = self.actions.act(
            call,
            lambda now: call.send_text(text, now, self.service.outbound.text_part_bytes(call)),
            ("message", {"text": text}),
        )
        self.service.publish(work)
        # The counts are the whole call's, not this message's: named so (`call_delivery`).
        return {
            "call_id": call.id,
            "bytes": len(text.encode()),
            "accepted_at": accepted_at,
            "call_delivery": self.service.outbound.delivery(call),
        }

    async def sendfile(self, call: Call, file: OutgoingFile) -> Any:
        chunk = self.service.outbound.chunk_bytes(call)
        work = self.actions.act(call, lambda now: file.send(call, now, chunk), file.record)
        result = await file.queued(call.id, work)
        delivery = self.service.outbound.delivery(call)
        return {**result, "chunks": len(work), "call_delivery": delivery}

    async def escalate(self, call: Call, params: dict[str, Any]) -> Any:
        text = text_param(params, "text")
        work = self.actions.act(
            call, lambda now: call.escalate(text, now), ("escalation", {"text": text})
        )
        self.service.publish(work)
        peer_name = self.service.peer_names.get(call.id, "")
        store = self.service.store
        peers = (peer_name, npub_of(call.peer))
        return await tell_owner(self.owner, store, self.my_name, call.id, peers, call.topic, text)

    async def end(self, call: Call, params: dict[str, Any]) -> Any:
        reason = text_param(params, "reason", required=False)
        work = self.actions.act(
            call, lambda now: call.end(reason, now), ("call_ended", {"reason": reason})
        )
        self.service.publish(work)
        # The same document as `transcript`: an agent that ends a call has the record.
        return self.transcript(call)

    def transcript(self, call: Call) -> dict[str, Any]:
        markdown, document = self.service.records.transcript(
            call, self.service.peer_names.get(call.id, "")
        )
        return {"call_id": call.id, "transcript": markdown, **document}

    # Naming no call -------------------------------------------------------------------

    async def inbox_events(self, params: dict[str, Any]) -> Any:
        """Unread events; nothing is consumed until the client sends `ack`."""
        events = self.inbox.unread(_call_arg(params), _after(params), _max(params))
        return {"events": events, "cursor": _cursor(events, params)}

    async def wait(self, params: dict[str, Any]) -> Any:
        timeout = params.get("timeout", 30)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise CommandError("bad_request", "timeout must be a finite number of seconds.")
        events = await self.inbox.wait(
            min(float(timeout), MAX_WAIT), _call_arg(params), _after(params), _max(params)
        )
        return {"events": events, "timed_out": not events, "cursor": _cursor(events, params)}

    async def ack(self, params: dict[str, Any]) -> Any:
        ids = params.get("event_ids")
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise CommandError("bad_request", "'event_ids' must be a list of event ids.")
        return {"acknowledged": self.inbox.ack(ids)}

    async def contacts(self, params: dict[str, Any]) -> Any:
        service, store = self.service, self.service.store
        action = params.get("action")
        if action in ("add", "remove"):
            pubkey, known_name = service.directory.resolve(text_param(params, "agent"), clock.now())
            with store.transaction():
                if action == "add":
                    name = text_param(params, "name", required=False) or known_name
                    store.add_contact(pubkey, clean_label(name, 64), clock.now())
                elif not store.remove_contact(pubkey):
                    raise CommandError("not_found", "that agent is not in your contacts.")
            if action == "add":
                service.contacts.add(pubkey)
            else:
                service.contacts.discard(pubkey)
        elif action != "list":
            raise CommandError("bad_request", "contacts takes add, remove or list.")
        listed = [
            {"name": name, "npub": npub_of(pk), "pubkey": pk} for pk, name in store.contacts()
        ]
        return {"contacts": listed, "call_policy": service.config.call_policy}

    async def block(self, params: dict[str, Any]) -> Any:
        pubkey, name = self.service.directory.resolve(text_param(params, "agent"), clock.now())
        ended = self.actions.block(pubkey)
        return {"peer": peer(npub_of(pubkey), name), "blocked": True, "ended_call_ids": ended}

    async def unblock(self, params: dict[str, Any]) -> Any:
        pubkey, name = self.service.directory.resolve(text_param(params, "agent"), clock.now())
        with self.service.store.transaction():
            removed = self.service.store.unblock(pubkey)
        self.service.blocked.discard(pubkey)
        if not removed:
            raise CommandError("not_found", "that agent was not blocked.")
        return {"peer": peer(npub_of(pubkey), name), "blocked": False}


async def hand_to_relays(work: list[Awaitable[None]]) -> None:
    """Publish and wait, reporting progress for long transfers. The publications are
    tasks of their own: a client that goes away does not stop them."""
    tasks = [asyncio.ensure_future(item) for item in work]
    _RUNNING.update(tasks)
    for task in tasks:
        task.add_done_callback(_RUNNING.discard)
    for done, finished in enumerate(asyncio.as_completed(tasks), 1):
        await finished
        if len(tasks) >= 8:
            report_progress({"done": done, "total": len(tasks)})


_RUNNING: set[asyncio.Future[None]] = set()


async def tell_owner(
    owner: OwnerChannels,
    store: Store,
    my_name: str,
    call_id: str,
    peers: tuple[str, str],
    topic: str,
    text: str,
) -> dict[str, Any]:
    """After the peer(s) were told: the owner channels, and the escalation remembered for the
    owner's reply. ``peers`` is (names, npubs) as the owner reads them. The `escalate` result."""
    peer, peer_npub = peers
    details = {
        "agent": my_name,
        "call_id": call_id,
        "peer": peer,
        "peer_npub": peer_npub,
        "topic": topic,
        "text": text,
    }
    outcome = await owner.escalate(details)
    with store.transaction():
        store.add_escalation(bare_esc_id(outcome["escalation_id"]), call_id, text, clock.now())
    return {"call_id": call_id, "peer_notified": True, **outcome}
