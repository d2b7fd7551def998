"""The research queue and budget reservations, fleet wide (both engines)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from bot.conversation import ConversationKey, State
from bot.records import UsageRecord
from storage import Storage
from tests.storage.data import conversation, usage


async def queue(storage: Storage, n: int, *, team: str = "T1", user: str = "U1") -> None:
    for i in range(n):
        key = ConversationKey(team, "C1", f"17000000{i:02d}.000100")
        draft = conversation(key, user_id=user, state=State.AWAITING_CLARIFICATION)
        created = await storage.conversations.create(draft.to(State.QUEUED, queued_at=float(i)))
        assert created is not None


async def test_admission_takes_the_oldest_first_within_the_caps(storage: Storage) -> None:
    await queue(storage, 5)
    now = time.time()
    first = await storage.conversations.admit("P1", user_cap=2, workspace_cap=10, now=now)
    assert [c.key.thread_ts for c in first] == ["1700000000.000100", "1700000001.000100"]
    assert all(c.state is State.RESEARCHING and c.owner == "P1" for c in first)
    assert await storage.conversations.admit("P1", user_cap=2, workspace_cap=10, now=now) == []
    waiting = await storage.conversations.get(ConversationKey("T1", "C1", "1700000004.000100"))
    assert waiting is not None and await storage.conversations.queue_position(waiting) == 3


async def test_two_processes_admitting_at_once_stay_within_the_cap(url: str) -> None:
    a, b = await Storage.open(url), await Storage.open(url)
    try:
        await queue(a, 8)
        now = time.time()
        results = await asyncio.gather(
            *(
                s.conversations.admit(name, user_cap=3, workspace_cap=10, now=now)
                for s, name in ((a, "PA"), (b, "PB"), (a, "PA"), (b, "PB"))
            )
        )
        admitted = [c.key for batch in results for c in batch]
        assert len(admitted) == len(set(admitted)) == 3
        assert len(await a.conversations.in_state(State.RESEARCHING)) == 3
    finally:
        await a.close()
        await b.close()


async def test_a_throttled_conversation_waits_until_its_time(storage: Storage) -> None:
    key = ConversationKey("T1", "C1", "1.000001")
    draft = conversation(key).to(State.QUEUED, queued_at=1.0, not_before=time.time() + 60)
    await storage.conversations.create(draft)
    assert (
        await storage.conversations.admit("P", user_cap=5, workspace_cap=5, now=time.time()) == []
    )
    later = time.time() + 61
    [admitted] = await storage.conversations.admit("P", user_cap=5, workspace_cap=5, now=later)
    assert admitted.key == key


async def test_reservations_hold_the_budget_until_usage_is_recorded(storage: Storage) -> None:
    draft = usage(input_tokens=0, output_tokens=0, cost_usd=None)
    first = await storage.inflight.reserve(
        "P", replace_call(draft, "c1"), 1500, limit=2000, since=0.0
    )
    assert first is True
    # Room left (2000 - 1500): one more call may start and hold its estimate.
    assert await storage.inflight.reserve("P", replace_call(draft, "c2"), 1500, limit=2000, since=0)
    # Now 3000 are held against 2000: refused, nothing written.
    assert not await storage.inflight.reserve(
        "P", replace_call(draft, "c3"), 1500, limit=2000, since=0
    )
    # Another workspace is not affected; no budget means no refusal.
    other = replace_call(usage("T2", input_tokens=0, output_tokens=0), "c4")
    assert await storage.inflight.reserve("P", other, 1500, limit=2000, since=0)
    assert await storage.inflight.reserve(
        "P", replace_call(draft, "c5"), 10**9, limit=None, since=0
    )
    # Recording a call's real usage ends its reservation in the same transaction.
    await storage.ledger.record([replace_call(usage(input_tokens=100, output_tokens=50), "c1")])
    await storage.ledger.record([replace_call(usage(input_tokens=100, output_tokens=50), "c2")])
    await storage.ledger.record([replace_call(usage(input_tokens=10, output_tokens=5), "c5")])
    assert await storage.inflight.reserve("P", replace_call(draft, "c6"), 1500, limit=2000, since=0)


def replace_call(record: UsageRecord, call_id: str) -> UsageRecord:
    return replace(record, call_id=call_id)


async def test_the_edit_pacing_of_a_workspace_is_shared_by_every_process(url: str) -> None:
    a, b = await Storage.open(url), await Storage.open(url)
    try:
        now = time.time()
        takes = await asyncio.gather(
            *(
                s.pacing.take("T1", rate=0.0, burst=5.0, now=now)
                for s in (a, b) * 6  # twelve edits from two processes at once
            )
        )
        assert sum(takes) == 5  # the burst, fleet wide
        assert await a.pacing.take("T2", rate=0.0, burst=5.0, now=now)  # per workspace
        # A second later at one edit per second, there is room for one more.
        assert await b.pacing.take("T1", rate=1.0, burst=5.0, now=now + 1.0)
        assert not await a.pacing.take("T1", rate=1.0, burst=5.0, now=now + 1.0)
    finally:
        await a.close()
        await b.close()
