"""Concurrent writers on both engines never lose an update: a save based on a stale read is
refused (StaleConversation) with nothing of it written, and every ledger row lands. On
PostgreSQL the writers are also separate OS processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Final

import pytest

from bot.conversation import Conversation, StaleConversation, State
from storage import Storage
from storage.tables import usage as usage_table
from tests.storage.conftest import count, is_sqlite
from tests.storage.data import KEY, conversation, usage

ROOT: Final = Path(__file__).resolve().parents[2]
MAX_ATTEMPTS: Final = 1_000  # a bound on retries; every lost race means another writer won


async def bump(storage: Storage, kind: str = "clarify") -> tuple[Conversation, int]:
    """Read, count one more in the report, save with one usage row; retry when stale.
    Returns the saved conversation and how many attempts were stale."""
    for stale in range(MAX_ATTEMPTS):
        current = await storage.conversations.get(KEY)
        assert current is not None
        assert current.report is not None
        bumped = current.to(State.AWAITING_CLARIFICATION, report=str(int(current.report) + 1))
        try:
            saved = await storage.conversations.save(bumped, [usage(kind=kind)])
        except StaleConversation:
            continue
        return saved, stale
    raise AssertionError(f"no save in {MAX_ATTEMPTS} attempts")


async def test_two_writers_of_one_read_exactly_one_wins(storage: Storage) -> None:
    created = await storage.conversations.create(conversation(report="0"))
    assert created is not None
    read_a, read_b = await asyncio.gather(
        storage.conversations.get(KEY), storage.conversations.get(KEY)
    )
    assert read_a == read_b == created
    assert read_a is not None
    assert read_b is not None

    outcomes = await asyncio.wait_for(
        asyncio.gather(
            storage.conversations.save(
                read_a.to(State.QUEUED, report="A"), [usage(request_id="A")]
            ),
            storage.conversations.save(
                read_b.to(State.FAILED, report="B"), [usage(request_id="B")]
            ),
            return_exceptions=True,
        ),
        timeout=30,
    )
    winners = [o for o in outcomes if isinstance(o, Conversation)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1, outcomes
    assert len(losers) == 1, outcomes
    assert isinstance(losers[0], StaleConversation)
    [winner] = winners
    assert winner.version == 2
    assert await storage.conversations.get(KEY) == winner
    # Only the winner's usage was written, with it.
    assert [u.request_id for u in await storage.ledger.records("T1")] == [winner.report]


async def test_many_writers_retrying_lose_no_update(storage: Storage) -> None:
    assert await storage.conversations.create(conversation(report="0")) is not None
    writers = 20
    results = await asyncio.wait_for(
        asyncio.gather(*(bump(storage) for _ in range(writers))), timeout=60
    )
    final = await storage.conversations.get(KEY)
    assert final is not None
    assert final.report == str(writers)
    assert final.version == 1 + writers
    assert sorted(saved.version for saved, _ in results) == list(range(2, writers + 2))
    # A stale attempt writes no usage: one row per successful save, however many retries.
    assert await count(storage, usage_table) == writers


async def test_50_concurrent_ledger_records_all_land(storage: Storage) -> None:
    await asyncio.wait_for(
        asyncio.gather(
            *(
                storage.ledger.record([usage(request_id=f"req-{i}", input_tokens=i)])
                for i in range(50)
            )
        ),
        timeout=60,
    )
    assert await count(storage, usage_table) == 50
    stored = await storage.ledger.records("T1")
    assert sorted(u.request_id for u in stored) == sorted(f"req-{i}" for i in range(50))
    assert await storage.ledger.tokens("T1") == sum(range(50)) + 50 * 50


CHILD: Final = """
import asyncio, json, sys
from decimal import Decimal
from bot.conversation import StaleConversation, State
from storage import Storage
from tests.storage.data import KEY, usage

async def main(url: str, name: str, rows: int) -> None:
    storage = await Storage.open(url)
    try:
        print("ready", flush=True)
        if sys.stdin.readline() != "go\\n":  # the parent starts both writers at once
            raise SystemExit("not started")
        saves = stale = 0
        for i in range(rows):
            await storage.ledger.record(
                [usage(kind="answer", user_id=name, request_id=f"{name}-{i}",
                       cost_usd=Decimal("0.001"))]
            )
            for _ in range(1000):
                current = await storage.conversations.get(KEY)
                bumped = current.to(
                    State.AWAITING_CLARIFICATION, report=str(int(current.report) + 1)
                )
                try:
                    await storage.conversations.save(
                        bumped, [usage(kind="clarify", user_id=name, request_id=f"{name}-s{i}")]
                    )
                except StaleConversation:
                    stale += 1
                    continue
                saves += 1
                break
            else:
                raise SystemExit("no save in 1000 attempts")
        print(json.dumps({"saves": saves, "stale": stale}), flush=True)
    finally:
        await storage.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_two_processes_lose_no_row_and_no_update(storage: Storage, url: str) -> None:
    if is_sqlite(url):
        pytest.skip("SQLite serves one process; only PostgreSQL has writers in several")
    rows = 200
    assert await storage.conversations.create(conversation(report="0")) is not None
    processes: list[asyncio.subprocess.Process] = []
    try:
        for name in ("P1", "P2"):
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    CHILD,
                    url,
                    name,
                    str(rows),
                    cwd=ROOT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            )
        for process in processes:
            assert process.stdout is not None
            ready = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            if ready != b"ready\n":
                assert process.stderr is not None
                errors = await asyncio.wait_for(process.stderr.read(), timeout=10)
                pytest.fail(f"child did not start: {ready!r} {errors.decode()}")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        outputs = await asyncio.wait_for(
            asyncio.gather(*(p.communicate() for p in processes)), timeout=90
        )
    finally:
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.wait_for(process.wait(), timeout=10)

    results = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
        results.append(json.loads(out))
    saves = sum(r["saves"] for r in results)
    assert [r["saves"] for r in results] == [rows, rows]

    answers = await count(storage, usage_table, usage_table.c.kind == "answer")
    assert answers == 2 * rows
    for name in ("P1", "P2"):
        mine = usage_table.c.user_id == name
        assert await count(storage, usage_table, mine, usage_table.c.kind == "answer") == rows
    final = await storage.conversations.get(KEY)
    assert final is not None
    # The create made version 1; every successful save added one, and no save was lost.
    assert final.version == 1 + saves
    assert final.report == str(saves)
    # A stale attempt wrote no usage: exactly one row per successful save.
    assert await count(storage, usage_table, usage_table.c.kind == "clarify") == saves
