"""The mining lane of outbound.py: one at a time, receipts first, re-sends last."""

from __future__ import annotations

import asyncio

from p2p_comm.daemon.relays.mining_lane import FIRST_SEND, RECEIPT, RETRANSMIT, Lane


def test_turns_go_by_priority_then_arrival() -> None:
    async def scenario() -> list[str]:
        lane, order = Lane(), []
        first_in = asyncio.Event()
        release = asyncio.Event()

        async def job(name: str, priority: int, hold: asyncio.Event | None = None) -> None:
            async with lane.turn(priority):
                order.append(name)
                if hold is not None:
                    first_in.set()
                    await hold.wait()

        holder = asyncio.create_task(job("holder", RETRANSMIT, release))
        await first_in.wait()
        names = [("resend", RETRANSMIT), ("send-1", FIRST_SEND), ("receipt", RECEIPT)]
        waiting = [asyncio.create_task(job(n, p)) for n, p in names]
        waiting.append(asyncio.create_task(job("send-2", FIRST_SEND)))
        await asyncio.sleep(0)  # all queued behind the holder
        release.set()
        await asyncio.gather(holder, *waiting)
        return order

    assert asyncio.run(scenario()) == ["holder", "receipt", "send-1", "send-2", "resend"]


def test_a_cancelled_waiter_does_not_block_the_lane() -> None:
    async def scenario() -> list[str]:
        lane, order = Lane(), []
        release = asyncio.Event()

        async def job(name: str, hold: asyncio.Event | None = None) -> None:
            async with lane.turn(FIRST_SEND):
                order.append(name)
                if hold is not None:
                    await hold.wait()

        holder = asyncio.create_task(job("holder", release))
        await asyncio.sleep(0)
        gone = asyncio.create_task(job("gone"))
        after = asyncio.create_task(job("after"))
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, after), 5)
        # and the lane is free again
        await asyncio.wait_for(job("last"), 5)
        return order

    assert asyncio.run(scenario()) == ["holder", "after", "last"]
