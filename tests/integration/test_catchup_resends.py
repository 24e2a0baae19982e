"""Issue 20: a peer catching up a backlog is not buried under re-sends.

While the peer's receipts advance, it is draining what it missed from the relay: a re-send
is a fresh wrap it must open in full, and only slows it down. Re-sends wait until receipts
stall. And the peer takes every message of a backlog larger than its reorder window (4,096)
from the relay itself: the relay replays the backlog to its new subscription newest first,
and what came too far ahead is fetched again by a catch-up, in order, instead of waiting
for re-sends. Real daemons and relay; the sender's own count of re-sends.

5,000 messages: 1,646 re-sends before; 841 with the hold alone (and 38 s for the test, the
last 900 messages coming 128 at a time, one window per stall); 128 with both (10.6 s).
"""

from __future__ import annotations

import pytest

from p2p_comm import rpc
from p2p_comm.harness import wait_until
from tests.conftest import AgentFactory
from tests.integration.calls_helpers import connect
from tests.integration.test_delivery import start_pair, unread_messages

BACKLOG = 5_000


def _resends(agent) -> int:  # type: ignore[no-untyped-def]
    return int(agent.json("status")["calls"]["stats"]["retransmits"])


def _unacked(agent) -> int:  # type: ignore[no-untyped-def]
    return sum(int(call["unacked"]) for call in agent.json("status")["calls"]["active"])


@pytest.mark.timeout(180)
def test_a_peer_catching_up_gets_few_resends(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = start_pair(relay.url, make_agent)
    connect(alice, bob)
    bob.run("daemon", "stop")
    for index in range(BACKLOG):
        rpc.request(alice.paths.socket, "send", {"text": f"backlog {index}"}, timeout=30)
    # Away long enough for the oldest to have been re-sent twice, as after any real outage.
    wait_until(lambda: _resends(alice) >= 2 * 128, 60, "two rounds of re-sends")
    before = _resends(alice)
    bob.run("daemon", "start")
    wait_until(lambda: unread_messages(bob) >= BACKLOG, 120, "bob to catch up")
    wait_until(lambda: _unacked(alice) == 0, 60, "every receipt at alice")
    resent = _resends(alice) - before
    assert unread_messages(bob) == BACKLOG
    # Before: about one re-send per message (each came into the window of the oldest
    # unreceipted long overdue, and was re-sent at once, while bob was fetching it). Now at
    # most a window's worth, due before bob's first receipt.
    assert resent <= BACKLOG // 20, f"{resent} re-sends while bob caught up {BACKLOG}"
