"""builder.route_event: where an event from a relay goes."""

from __future__ import annotations

from typing import Any

from p2p_comm.daemon.builder import route_event
from p2p_comm.daemon.relays.relay_events import InboundEvent
from p2p_comm.protocol.presence import PRESENCE_KIND


class _Kind:
    def __init__(self, kind: int) -> None:
        self.kind = kind

    def as_u16(self) -> int:
        return self.kind


class _Key:
    def to_hex(self) -> str:
        return "ab" * 32


class _Event:
    """Just what routing may read of an SDK event."""

    def __init__(self, kind: int) -> None:
        self._kind = kind

    def kind(self) -> _Kind:
        return _Kind(self._kind)

    def author(self) -> _Key:
        return _Key()


class _Recorder:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def submit(self, event: InboundEvent) -> None:
        self.got.append(event)

    def handle(self, event: InboundEvent) -> bool:
        self.got.append(event)
        return True

    def peer_seen(self, pubkey: str, now: float) -> None:
        self.got.append(pubkey)


def _route(event: InboundEvent) -> tuple[list[Any], list[Any], list[Any]]:
    inbound, presence, calls = _Recorder(), _Recorder(), _Recorder()
    route_event(event, inbound, presence, calls)  # type: ignore[arg-type]
    return inbound.got, presence.got, calls.got


def test_only_our_wrap_subscriptions_events_go_to_inbound() -> None:
    ours = InboundEvent(_Event(1059), "ws://r", wrap_sub=True)
    assert _route(ours) == ([ours], [], [])
    # A query's gift wraps (a catch-up page), which nostr-sdk also tells of: the query
    # takes them. Sent to the gate too, each shed one scheduled another catch-up.
    assert _route(InboundEvent(_Event(1059), "ws://r")) == ([], [], [])


def test_presence_goes_to_presence_and_a_peers_announcement_to_the_calls() -> None:
    announcement = InboundEvent(_Event(PRESENCE_KIND), "ws://r")
    assert _route(announcement) == ([], [announcement], ["ab" * 32])
    inbox_list = InboundEvent(_Event(10050), "ws://r")
    assert _route(inbox_list) == ([], [inbox_list], [])
