from __future__ import annotations

import asyncio

from bot.pacing import WorkspacePacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fifty_runs_in_one_workspace_stay_under_the_chat_update_tier() -> None:
    clock = Clock()
    pacer = WorkspacePacer(clock=clock)
    edits: list[float] = []
    # Fifty runs each ask for an edit every 5 seconds, for ten minutes.
    for tick in range(0, 600 * 10):  # 0.1 s steps
        clock.now = 1000.0 + tick / 10
        if tick % 50 == 0:
            edits += [clock.now for _ in range(50) if pacer.try_acquire("T1")]
    worst = max(sum(1 for t in edits if start <= t < start + 60) for start in edits)
    assert worst <= 50
    assert len(edits) >= 40 * 9  # and the workspace still gets close to its allowance


def test_workspaces_are_paced_separately() -> None:
    clock = Clock()
    pacer = WorkspacePacer(per_minute=6, burst=1, clock=clock)
    assert pacer.try_acquire("T1")
    assert not pacer.try_acquire("T1")
    assert pacer.try_acquire("T2")
    clock.now += 10
    assert pacer.try_acquire("T1")


async def test_acquire_waits_for_room_but_not_forever() -> None:
    pacer = WorkspacePacer(per_minute=600, burst=1)
    assert await pacer.acquire("T1", max_wait=1)
    assert await pacer.acquire("T1", max_wait=1)  # refills at 10 per second
    slow = WorkspacePacer(per_minute=1, burst=1)
    assert await slow.acquire("T1", max_wait=0)
    assert not await slow.acquire("T1", max_wait=0.05)


async def test_the_run_longest_without_an_edit_is_served_first() -> None:
    pacer = WorkspacePacer(per_minute=600, burst=1)  # one edit every 0.1 s
    assert await pacer.acquire("T1", max_wait=0)  # the bucket is empty now
    served: list[str] = []

    async def run(name: str, idle: float) -> None:
        if await pacer.acquire("T1", max_wait=5, idle=idle):
            served.append(name)

    await asyncio.gather(run("edited 1 s ago", 1), run("5 s ago", 5), run("3 s ago", 3))
    assert served == ["5 s ago", "3 s ago", "edited 1 s ago"]


async def test_a_run_does_not_take_room_ahead_of_one_waiting_longer() -> None:
    clock = Clock()
    pacer = WorkspacePacer(per_minute=600, burst=1, clock=clock)
    assert await pacer.acquire("T1", max_wait=0)  # the bucket is empty now
    waiting = asyncio.create_task(pacer.acquire("T1", max_wait=5, idle=30))
    await asyncio.sleep(0)  # it is in line, looking again in 0.1 s
    clock.now += 10  # room again
    # A run edited a second ago asks without waiting: the longer-idle one is ahead of it.
    assert not await pacer.acquire("T1", max_wait=0, idle=1)
    assert await asyncio.wait_for(waiting, 5)


async def test_a_run_cancelled_as_the_one_ahead_leaves_stays_cancelled() -> None:
    # A run's live progress is cancelled when the run ends. If it was waiting behind another
    # run just as that one left, the cancellation must still end it: swallowed (as Python
    # 3.11's asyncio.wait_for can), the run waited for its progress forever, without a report.
    for steps in range(6):  # the cancellation lands at each moment of the hand-over
        pacer = WorkspacePacer(per_minute=1, burst=1)
        assert await pacer.acquire("T1", max_wait=0)  # the bucket is empty now
        ahead = asyncio.create_task(pacer.acquire("T1", max_wait=30, idle=60))
        await asyncio.sleep(0)
        behind = asyncio.create_task(pacer.acquire("T1", max_wait=30, idle=1))
        await asyncio.sleep(0.01)
        line = pacer._queues["T1"]  # to make the hand-over happen at a chosen moment
        waiting = next(w for _, _, w in line if w is not line[0][2])
        waiting.ahead_left.set()  # as when the one ahead leaves
        for _ in range(steps):
            await asyncio.sleep(0)
        behind.cancel()
        done, _ = await asyncio.wait([behind], timeout=5)
        ahead.cancel()
        await asyncio.gather(ahead, return_exceptions=True)
        assert done and behind.cancelled(), f"cancellation lost after {steps} steps"
