"""The one place the daemon's parts are made and connected (`build`).

Every part gets what it uses through its constructor; nothing is set on a part once it is
made. Where a lower part tells a higher one (a relay's events go up to inbound and
presence, a message no relay takes goes up to the agent's inbox, a changed call to the
presence announcement), it is given a callback here, at construction, that names a part
built further down: the callbacks run only once the daemon runs, when every part exists.

Tests build the same way, passing the parts they fake (`pool`, `presence`) as overrides
(tests/unit/daemon/seam.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nostr_sdk as ns

from .. import clock
from ..config import Config
from ..identity import Identity
from ..nostr import kinds
from ..paths import HomePaths
from ..protocol.call import ACTIVE, Call
from ..protocol.events import AgentEvent
from ..protocol.limits import InboundGate, InboundLimits
from ..protocol.presence import PRESENCE_KIND
from ..store import Store
from .agent.advice import Advice
from .calls.actions import CallActions
from .calls.calls import CallService
from .calls.groups import GroupService
from .calls.targets import Targets
from .notify.inbox import AgentInbox, agent_event
from .notify.loopwatch import LoopWatch
from .notify.owner import OwnerChannels, owner_pubkey
from .relays.directory import Directory
from .relays.inbound import Inbound
from .relays.nostr_io import RelayPool
from .relays.outbound import Outbound
from .relays.prekeys import Prekeys
from .relays.presence_service import PresenceService
from .relays.relay_events import InboundEvent

log = logging.getLogger("p2p.daemon")


@dataclass(frozen=True)
class Parts:
    """Every part of one agent's daemon, made and connected by `build`."""

    paths: HomePaths
    config: Config
    identity: Identity
    store: Store
    pool: RelayPool
    presence: PresenceService
    directory: Directory
    inbox: AgentInbox
    gate: InboundGate
    outbound: Outbound
    owner: OwnerChannels
    loops: LoopWatch
    calls: CallService
    groups: GroupService
    targets: Targets
    inbound: Inbound
    actions: CallActions
    advice: Advice


def build(
    paths: HomePaths,
    config: Config,
    identity: Identity,
    store: Store,
    *,
    pool: RelayPool | None = None,
    presence: PresenceService | None = None,
) -> Parts:
    """Make every part over ``store`` and connect them; ``pool`` and ``presence`` replace
    the real relay connections and presence service (tests)."""

    async def route(event: InboundEvent) -> None:
        route_event(event, inbound, parts.presence, calls)

    if pool is None:
        pool = RelayPool(
            config.relays,
            route,
            identity.keys,
            config.effective_inbox_relays,
            on_reconnect=lambda: inbound.schedule_catch_up(),
            on_waste=lambda url, weight: inbound.waste.wasted(url, weight),
        )
    prekeys = Prekeys(store)
    if presence is None:
        presence = PresenceService(pool, identity, config, store, prekeys)
    inbox = AgentInbox(store, config.wake, config.hook_timeout, config.keep_transcripts)
    gate = InboundGate(
        InboundLimits(
            call_requests_per_peer_per_minute=config.call_requests_per_peer_per_minute,
            max_ringing=config.max_ringing,
            max_open_calls=config.max_open_calls,
            bytes_per_peer_per_minute=config.bytes_per_peer_per_minute,
            inbound_events_per_second=config.inbound_events_per_second,
            relay_mute_seconds=config.relay_mute_seconds,
        )
    )
    outbound = Outbound(
        config,
        identity,
        pool,
        presence,
        store,
        on_undeliverable=lambda call, seq, reason: undeliverable(calls, call, seq, reason),
        prekeys=prekeys,
    )
    owner = OwnerChannels(paths, config, identity, pool, presence, store, inbox)
    loops = LoopWatch(config, store, inbox, owner, presence.name)

    def group_layer(service: CallService) -> GroupService:
        return GroupService(service, loops, identity.public_hex, presence.name)

    calls = CallService(
        paths,
        config,
        store,
        outbound,
        inbox,
        Directory(presence),
        gate,
        owner_pubkey(config),
        me=(presence.name, identity.npub),
        on_change=lambda: calls_changed(calls, parts, outbound),
        hooks=group_layer,
    )
    groups = calls.hooks
    assert isinstance(groups, GroupService)
    inbound = Inbound(
        identity.keys, identity.public_hex, pool, store, gate, calls.intake, config.call_lanes
    )
    parts = Parts(
        paths=paths,
        config=config,
        identity=identity,
        store=store,
        pool=pool,
        presence=presence,
        directory=calls.directory,
        inbox=inbox,
        gate=gate,
        outbound=outbound,
        owner=owner,
        loops=loops,
        calls=calls,
        groups=groups,
        targets=Targets(calls, groups),
        inbound=inbound,
        actions=CallActions(calls),
        advice=Advice(paths, pool, store),
    )
    return parts


def undeliverable(calls: CallService, call: Call, seq: int, reason: str) -> None:
    """A message no relay will take: an event for the agent, not an eternal `queued`."""
    name, verified = calls.peer_label(call)
    npub = ns.PublicKey.parse(call.peer).to_bech32()
    fields = {"ref_seq": seq, "reason": reason}
    now = clock.now()
    try:
        with calls.store.transaction():
            kind = AgentEvent.DELIVERY_FAILED
            event = agent_event(kind, call.id, npub, name, now, fields, verified)
            calls.inbox.emit(event, now)
    except Exception as exc:
        log.warning("cannot record a delivery failure: %s", exc)


def route_event(
    event: InboundEvent, inbound: Inbound, presence: PresenceService, calls: CallService
) -> None:
    """Where an event from a relay goes. The wraps of our gift-wrap subscription go to
    inbound; other gift wraps are a query's (a catch-up page), which nostr-sdk also tells
    of when it had not seen them: the query takes them (sent to the gate as well, each
    shed one scheduled another catch-up, whose page did the same: an idle daemon spent
    40 % of a core). Presence and inbox lists go to presence (a peer announcing itself
    after a silence has the calls re-send what waited for it)."""
    if event.wrap_sub:
        inbound.submit(event)
        return
    seen = event.kind != kinds.GIFT_WRAP and presence.handle(event)
    if seen and event.kind == PRESENCE_KIND:
        calls.peer_seen(event.pubkey, clock.now())


def calls_changed(calls: CallService, parts: Parts, outbound: Outbound) -> None:
    """After a commit that changed calls: our presence, and the lane keys we expect."""
    presence_changed(calls, parts.presence, outbound)
    parts.inbound.lanes.touch()


def presence_changed(calls: CallService, presence: PresenceService, outbound: Outbound) -> None:
    """Announce ourselves busy while in an active call, available otherwise."""
    busy = any(c.state == ACTIVE for c in calls.calls.values())
    status = "busy" if busy else "available"
    if status != presence.status:
        outbound.run([presence.announce(status)])
