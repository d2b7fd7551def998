"""Usage queries on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.budget import BudgetGuard, month_start, next_month_start
from bot.usage_report import UsageReporter
from bot.conversation import UsageRecord
from storage.sqlite import Store
from bot.records import Totals

MAY_1 = datetime(2026, 5, 1, tzinfo=UTC).timestamp()
MAY_20 = datetime(2026, 5, 20, 12, 30, tzinfo=UTC).timestamp()
APRIL_30 = datetime(2026, 4, 30, 23, 59, 59, tzinfo=UTC).timestamp()


def record(
    user: str,
    model: str,
    tokens_in: int,
    tokens_out: int,
    *,
    at: float,
    cost: float | None = None,
    reasoning: int = 0,
    team: str = "T1",
) -> UsageRecord:
    return UsageRecord(
        team_id=team,
        user_id=user,
        channel_id="C1",
        thread_ts="",
        model=model,
        kind="answer",
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        reasoning_tokens=reasoning,
        cost_usd=cost,
        created_at=at,
    )


LEDGER = [
    record("UANA", "qwen-deep-research", 1000, 5000, at=APRIL_30, cost=0.125),
    record("UANA", "qwen-deep-research", 900, 4000, at=MAY_1, cost=0.1),
    record("UBEN", "qwen-deep-research", 100, 200, at=MAY_20, cost=0.005),
    record("UBEN", "qwen-plus", 10, 300, at=MAY_20, reasoning=250),
    record("UCAT", "qwen-plus", 20, 30, at=MAY_20, reasoning=0),
    record("UOTHER", "qwen-plus", 99_999, 99_999, at=MAY_20, team="T2"),
]


@pytest.fixture
async def queries(tmp_path: Path) -> AsyncIterator[UsageQueries]:
    store = await Store.open(tmp_path / "usage.sqlite3")
    try:
        await store.record_usage(LEDGER)
        yield UsageQueries(store)
    finally:
        await store.close()


async def test_by_model_all_time_and_since(queries: UsageQueries) -> None:
    assert await queries.by_model("T1") == [
        Totals("qwen-deep-research", 3, 2000, 9200, 0, pytest.approx(0.23), 0),
        Totals("qwen-plus", 2, 30, 330, 250, None, 2),
    ]
    assert await queries.by_model("T1", since=MAY_1) == [
        Totals("qwen-deep-research", 2, 1000, 4200, 0, pytest.approx(0.105), 0),
        Totals("qwen-plus", 2, 30, 330, 250, None, 2),
    ]
    assert await queries.by_model("T3") == []


async def test_top_users_most_tokens_first(queries: UsageQueries) -> None:
    top = await queries.top_users("T1")
    assert [(u.name, u.tokens) for u in top] == [("UANA", 10_900), ("UBEN", 610), ("UCAT", 50)]
    # UBEN's qwen-plus call has no price: the cost covers the priced call and says so.
    assert top[1].cost_usd == pytest.approx(0.005) and top[1].unpriced_calls == 1
    assert [u.name for u in await queries.top_users("T1", since=MAY_1, limit=2)] == [
        "UANA",
        "UBEN",
    ]


async def test_tokens_since_counts_input_and_output(queries: UsageQueries) -> None:
    assert await queries.tokens("T1", since=MAY_1) == 900 + 4000 + 100 + 200 + 10 + 300 + 20 + 30
    assert await queries.tokens("T1") == 11_560
    assert await queries.tokens("T9") == 0


async def test_month_boundaries_are_utc() -> None:
    assert month_start(MAY_20).timestamp() == MAY_1
    assert next_month_start(MAY_20) == datetime(2026, 6, 1, tzinfo=UTC)
    december = datetime(2026, 12, 31, 23, 0, tzinfo=UTC).timestamp()
    assert next_month_start(december) == datetime(2027, 1, 1, tzinfo=UTC)
    assert month_start(APRIL_30) == datetime(2026, 4, 1, tzinfo=UTC)


async def test_budget_refuses_once_the_month_reaches_it(queries: UsageQueries) -> None:
    may_tokens = await queries.tokens("T1", since=MAY_1)
    at_limit = BudgetGuard(queries, may_tokens, clock=lambda: MAY_20)
    refusal = await at_limit.refusal("T1")
    assert refusal is not None
    assert f"{may_tokens:,} of its {may_tokens:,} tokens for May 2026" in refusal
    assert "1 June 2026 at 00:00 UTC" in refusal
    assert await BudgetGuard(queries, may_tokens + 1, clock=lambda: MAY_20).refusal("T1") is None
    assert await BudgetGuard(queries, None, clock=lambda: MAY_20).refusal("T1") is None
    # Last month's usage does not count in a new month.
    june = datetime(2026, 6, 2, tzinfo=UTC).timestamp()
    assert await BudgetGuard(queries, 1, clock=lambda: june).refusal("T1") is None


async def test_report_periods(queries: UsageQueries) -> None:
    budget = BudgetGuard(queries, 100_000, clock=lambda: MAY_20)
    usage = await UsageReporter(queries, budget, clock=lambda: MAY_20).workspace("T1")
    assert usage.month.label == "This month (May 2026)"
    assert usage.month.total.tokens == await queries.tokens("T1", since=MAY_1)
    assert usage.all_time.total.tokens == await queries.tokens("T1")
    assert usage.all_time.total.cost_usd == pytest.approx(0.23)
    assert usage.all_time.total.unpriced_calls == 2
    assert usage.budget is not None and usage.budget.used == usage.month.total.tokens
