"""storage/ledger.py: the usage ledger and its sums, exact to the nano-dollar, on both engines;
and what the budget and the usage report make of them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.budget import BudgetGuard, month_start, next_month_start
from bot.records import Totals, UsageRecord
from bot.usage_report import UsageReporter
from storage import Storage
from storage.ledger import SqlUsageLedger
from storage.tables import usage as usage_table
from tests.storage.conftest import count
from tests.storage.data import usage

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
    cost: Decimal | None = None,
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
    record("UANA", "qwen-deep-research", 1000, 5000, at=APRIL_30, cost=Decimal("0.125")),
    record("UANA", "qwen-deep-research", 900, 4000, at=MAY_1, cost=Decimal("0.1")),
    record("UBEN", "qwen-deep-research", 100, 200, at=MAY_20, cost=Decimal("0.005")),
    record("UBEN", "qwen-plus", 10, 300, at=MAY_20, reasoning=250),
    record("UCAT", "qwen-plus", 20, 30, at=MAY_20, reasoning=0),
    record("UOTHER", "qwen-plus", 99_999, 99_999, at=MAY_20, team="T2"),
]


@pytest.fixture
async def ledger(storage: Storage) -> AsyncIterator[SqlUsageLedger]:
    await storage.ledger.record(LEDGER)
    yield storage.ledger


# --------------------------------------------------------------------------- rows


async def test_usage_records_round_trip_and_are_per_team(storage: Storage) -> None:
    mine = [
        usage("T1", input_tokens=1, created_at=1000.0),
        usage("T1", cost_usd=None, created_at=2.0),
        usage("T1", cost_usd=Decimal("0.000000001"), created_at=3.0, request_id="req-2"),
        usage("T1", cost_usd=Decimal("12345.678901234"), created_at=4.0),
    ]
    theirs = [usage("T2", input_tokens=9, created_at=1000.0)]
    await storage.ledger.record(mine + theirs)
    assert await storage.ledger.records("T1") == mine
    assert await storage.ledger.records("T2") == theirs
    assert await storage.ledger.records("T3") == []
    costs = [u.cost_usd for u in await storage.ledger.records("T1")]
    assert all(c is None or isinstance(c, Decimal) for c in costs)


async def test_usage_record_without_time_gets_the_current_time(storage: Storage) -> None:
    before = time.time()
    await storage.ledger.record([usage(created_at=0.0)])
    [stored] = await storage.ledger.records("T1")
    assert before <= stored.created_at <= time.time()


async def test_recording_nothing_writes_nothing(storage: Storage) -> None:
    await storage.ledger.record([])
    assert await count(storage, usage_table) == 0


# --------------------------------------------------------------------------- sums


async def test_usage_by_model_sums_match_the_records(storage: Storage) -> None:
    records = [
        usage(
            model="qwen-deep-research", input_tokens=100, output_tokens=40, cost_usd=Decimal("0.25")
        ),
        usage(
            model="qwen-deep-research", input_tokens=300, output_tokens=60, cost_usd=Decimal("0.5")
        ),
        usage(
            model="qwen-plus", input_tokens=7, output_tokens=3, reasoning_tokens=2, cost_usd=None
        ),
        usage("T2", model="qwen-plus", input_tokens=1000, output_tokens=1000),
    ]
    await storage.ledger.record(records)
    totals = {t.name: t for t in await storage.ledger.by_model("T1")}
    research = totals["qwen-deep-research"]
    assert (research.calls, research.input_tokens, research.output_tokens) == (2, 400, 100)
    assert research.cost_usd == Decimal("0.75")
    assert isinstance(research.cost_usd, Decimal)
    plus = totals["qwen-plus"]
    assert (plus.calls, plus.input_tokens, plus.output_tokens, plus.reasoning_tokens) == (
        1,
        7,
        3,
        2,
    )
    assert plus.cost_usd is None  # no known price: no invented cost
    assert plus.unpriced_calls == 1


async def test_usage_by_model_since_filters_by_time(storage: Storage) -> None:
    await storage.ledger.record(
        [
            usage(input_tokens=1, created_at=1000.0),
            usage(input_tokens=10, created_at=2000.0),
            usage(input_tokens=100, created_at=3000.0),
        ]
    )
    [recent] = await storage.ledger.by_model("T1", since=2000.0)
    assert (recent.calls, recent.input_tokens) == (2, 110)
    assert await storage.ledger.by_model("T1", since=3000.5) == []


async def test_usage_by_model_of_an_unknown_team_is_empty(storage: Storage) -> None:
    await storage.ledger.record([usage("T1")])
    assert await storage.ledger.by_model("T2") == []


async def test_by_model_all_time_and_since(ledger: SqlUsageLedger) -> None:
    assert await ledger.by_model("T1") == [
        Totals("qwen-deep-research", 3, 2000, 9200, 0, Decimal("0.23"), 0),
        Totals("qwen-plus", 2, 30, 330, 250, None, 2),
    ]
    assert await ledger.by_model("T1", since=MAY_1) == [
        Totals("qwen-deep-research", 2, 1000, 4200, 0, Decimal("0.105"), 0),
        Totals("qwen-plus", 2, 30, 330, 250, None, 2),
    ]
    assert await ledger.by_model("T3") == []


async def test_top_users_most_tokens_first(ledger: SqlUsageLedger) -> None:
    top = await ledger.top_users("T1")
    assert [(u.name, u.tokens) for u in top] == [("UANA", 10_900), ("UBEN", 610), ("UCAT", 50)]
    assert top[0].cost_usd == Decimal("0.225")
    # UBEN's qwen-plus call has no price: the cost covers the priced call and says so.
    assert top[1].cost_usd == Decimal("0.005")
    assert top[1].unpriced_calls == 1
    assert top[2].cost_usd is None
    assert [u.name for u in await ledger.top_users("T1", since=MAY_1, limit=2)] == [
        "UANA",
        "UBEN",
    ]


async def test_tokens_since_counts_input_and_output(ledger: SqlUsageLedger) -> None:
    assert await ledger.tokens("T1", since=MAY_1) == 900 + 4000 + 100 + 200 + 10 + 300 + 20 + 30
    assert await ledger.tokens("T1") == 11_560
    assert await ledger.tokens("T9") == 0


async def test_money_is_exact_over_100_000_rows(storage: Storage) -> None:
    """0.1 has no exact float: summed as floats, 100,000 of them miss 10,000."""
    assert sum([0.1] * 100_000) != 10_000  # the drift the ledger must not have
    dime = Decimal("0.1")
    rows = [
        usage(
            model=("qwen-plus", "qwen-max")[i % 2],
            user_id=f"U{i % 4}",
            input_tokens=1,
            output_tokens=1,
            cost_usd=dime,
            created_at=1000.0,
        )
        for i in range(100_000)
    ]
    await storage.ledger.record(rows)
    assert await count(storage, usage_table) == 100_000

    by_model = await storage.ledger.by_model("T1")
    assert [(t.name, t.calls, t.cost_usd) for t in by_model] == [
        ("qwen-max", 50_000, Decimal("5000")),
        ("qwen-plus", 50_000, Decimal("5000")),
    ]
    users = await storage.ledger.top_users("T1", limit=10)
    assert sorted((t.name, t.calls, t.cost_usd) for t in users) == [
        (f"U{i}", 25_000, Decimal("2500")) for i in range(4)
    ]
    for totals in (by_model, users):
        costs = [t.cost_usd for t in totals]
        assert all(isinstance(c, Decimal) for c in costs)
        assert sum(c for c in costs if c is not None) == Decimal("10000")
    reporter = UsageReporter(
        storage.ledger, BudgetGuard(storage.ledger, None), clock=lambda: MAY_20
    )
    report = await reporter.workspace("T1")
    assert report.all_time.total.cost_usd == Decimal("10000")
    assert report.all_time.total.calls == 100_000


# --------------------------------------------------------------------------- budget and report


async def test_month_boundaries_are_utc() -> None:
    assert month_start(MAY_20).timestamp() == MAY_1
    assert next_month_start(MAY_20) == datetime(2026, 6, 1, tzinfo=UTC)
    december = datetime(2026, 12, 31, 23, 0, tzinfo=UTC).timestamp()
    assert next_month_start(december) == datetime(2027, 1, 1, tzinfo=UTC)
    assert month_start(APRIL_30) == datetime(2026, 4, 1, tzinfo=UTC)


async def test_budget_refuses_once_the_month_reaches_it(ledger: SqlUsageLedger) -> None:
    may_tokens = await ledger.tokens("T1", since=MAY_1)
    at_limit = BudgetGuard(ledger, may_tokens, clock=lambda: MAY_20)
    refused = await at_limit.refusal("T1")
    assert refused is not None
    refusal = str(refused)  # as English reads it
    assert f"{may_tokens:,} of its {may_tokens:,} tokens for May 2026" in refusal
    assert "1 June 2026 at 00:00 UTC" in refusal
    assert await BudgetGuard(ledger, may_tokens + 1, clock=lambda: MAY_20).refusal("T1") is None
    assert await BudgetGuard(ledger, None, clock=lambda: MAY_20).refusal("T1") is None
    # Last month's usage does not count in a new month.
    june = datetime(2026, 6, 2, tzinfo=UTC).timestamp()
    assert await BudgetGuard(ledger, 1, clock=lambda: june).refusal("T1") is None


async def test_report_periods(ledger: SqlUsageLedger) -> None:
    budget = BudgetGuard(ledger, 100_000, clock=lambda: MAY_20)
    report = await UsageReporter(ledger, budget, clock=lambda: MAY_20).workspace("T1")
    assert str(report.month.label) == "This month (May 2026)"
    assert report.month.total.tokens == await ledger.tokens("T1", since=MAY_1)
    assert report.all_time.total.tokens == await ledger.tokens("T1")
    assert report.all_time.total.cost_usd == Decimal("0.23")
    assert report.month.total.cost_usd == Decimal("0.105")
    assert report.all_time.total.unpriced_calls == 2
    assert report.budget is not None
    assert report.budget.used == report.month.total.tokens
