"""Usage written at once (a call's first figures) is written in groups: calls that start
together share one statement instead of queueing one transaction each (issue 13)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select

from bot.config import database_url as driver_url
from bot.metering import UsageMeter
from bot.qwen.events import Usage
from bot.records import UsageRecord
from storage import Storage
from storage.tables import inflight_usage


async def test_first_figures_of_calls_starting_together_are_written_together(
    tmp_path: Path,
) -> None:
    storage = await Storage.open(driver_url(f"sqlite:///{tmp_path / 'bot.sqlite3'}"))
    flushes: list[int] = []
    all_written = asyncio.Event()
    write = storage.inflight.flush

    async def counted(owner: str, records: Sequence[UsageRecord]) -> None:
        flushes.append(len(records))
        await write(owner, records)
        if sum(flushes) >= 50:
            all_written.set()

    try:
        storage.inflight.flush = counted  # type: ignore[method-assign]
        meter = UsageMeter(inflight=storage.inflight, owner="p1")
        calls = []
        for i in range(50):
            draft = UsageRecord("T1", "U1", f"C{i}", "1.0", "qwen-deep-research", "research", 0, 0)
            call = await meter.open(draft, lambda _usage: None)
            assert call is not None
            calls.append(call)
        for i, call in enumerate(calls):
            call.see(Usage(1000 + i, 1, 0, f"req-{i}"))
        await asyncio.wait_for(all_written.wait(), 10)
        async with storage.database.read() as conn:
            written = (
                await conn.execute(
                    select(func.count(), func.sum(inflight_usage.c.input_tokens)).select_from(
                        inflight_usage
                    )
                )
            ).one()
    finally:
        await storage.close()
    assert tuple(written) == (50, sum(1000 + i for i in range(50)))
    assert len(flushes) <= 3, flushes  # the first call alone, then the others together
