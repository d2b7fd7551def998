"""SQLite writers take turns in this process, acknowledgements first (no database needed)."""

from __future__ import annotations

import asyncio

from storage.database import WriterTurns


async def test_urgent_writers_go_before_the_others_waiting() -> None:
    turns = WriterTurns()
    order: list[str] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def writer(name: str, *, urgent: bool, hold: bool = False) -> None:
        async with turns.turn(urgent=urgent):
            order.append(name)
            if hold:
                holding.set()
                await release.wait()

    first = asyncio.create_task(writer("run 1", urgent=False, hold=True))
    await holding.wait()
    waiting = [
        asyncio.create_task(writer("run 2", urgent=False)),
        asyncio.create_task(writer("run 3", urgent=False)),
        asyncio.create_task(writer("ack", urgent=True)),
    ]
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(asyncio.gather(first, *waiting), 5)
    assert order == ["run 1", "ack", "run 2", "run 3"]


async def test_a_writer_cancelled_while_waiting_does_not_keep_the_turn() -> None:
    turns = WriterTurns()
    release = asyncio.Event()
    done: list[str] = []

    async def holder() -> None:
        async with turns.turn(urgent=False):
            await release.wait()

    async def writer(name: str) -> None:
        async with turns.turn(urgent=False):
            done.append(name)

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(writer("cancelled"))
    later = asyncio.create_task(writer("later"))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(held, later), 5)
    assert done == ["later"]
    async with asyncio.timeout(1), turns.turn(urgent=True):
        pass  # free again
