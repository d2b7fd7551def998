from __future__ import annotations

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
