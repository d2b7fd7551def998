"""The usage ledger: one row per model call, and the sums the usage report and budgets need.

Cost sums cover priced calls only; the unpriced calls are counted too, so the display can say
that a model's cost is a lower bound (a price added to PRICING_FILE later) instead of hiding it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.records import Totals, UsageRecord
from storage.database import Database, insert_for
from storage.tables import from_nanos, inflight_usage, to_nanos, usage


def tokens_since(team_id: str, since: float) -> Select[Any]:
    """Input plus output tokens of the workspace's calls since `since` (budgets count these)."""
    return select(func.coalesce(func.sum(usage.c.input_tokens + usage.c.output_tokens), 0)).where(
        usage.c.team_id == team_id, usage.c.created_at >= since
    )


def usage_values(u: UsageRecord, now: float) -> dict[str, Any]:
    return {
        "team_id": u.team_id,
        "user_id": u.user_id,
        "channel_id": u.channel_id,
        "thread_ts": u.thread_ts,
        "model": u.model,
        "kind": u.kind,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "request_id": u.request_id,
        "cost_nanousd": to_nanos(u.cost_usd),
        "created_at": u.created_at or now,
        "call_id": u.call_id or None,
    }


def record_from_row(row: RowMapping) -> UsageRecord:
    return UsageRecord(
        team_id=row["team_id"],
        user_id=row["user_id"],
        channel_id=row["channel_id"],
        thread_ts=row["thread_ts"],
        model=row["model"],
        kind=row["kind"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        reasoning_tokens=row["reasoning_tokens"],
        request_id=row["request_id"],
        cost_usd=from_nanos(row["cost_nanousd"]),
        created_at=row.get("created_at") or 0.0,
        call_id=row.get("call_id") or "",
    )


async def insert_usage(conn: AsyncConnection, records: Sequence[UsageRecord]) -> None:
    """Add the rows inside the caller's transaction. A call already in the ledger (its call_id)
    is not added again, and its in-flight figures are dropped: they are now recorded."""
    if not records:
        return
    now = time.time()
    upsert = insert_for(conn.dialect.name)
    await conn.execute(
        upsert(usage).on_conflict_do_nothing(), [usage_values(u, now) for u in records]
    )
    call_ids = [u.call_id for u in records if u.call_id]
    if call_ids:
        await conn.execute(delete(inflight_usage).where(inflight_usage.c.call_id.in_(call_ids)))


class SqlUsageLedger:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, records: Sequence[UsageRecord]) -> None:
        async with self._db.write() as conn:
            await insert_usage(conn, records)

    async def records(self, team_id: str) -> list[UsageRecord]:
        query = select(usage).where(usage.c.team_id == team_id).order_by(usage.c.id)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [record_from_row(row) for row in rows]

    async def by_model(self, team_id: str, since: float = 0.0) -> list[Totals]:
        return await self._grouped(usage.c.model, team_id, since, order=(usage.c.model,))

    async def top_users(self, team_id: str, since: float = 0.0, limit: int = 5) -> list[Totals]:
        tokens = func.sum(usage.c.input_tokens) + func.sum(usage.c.output_tokens)
        return await self._grouped(
            usage.c.user_id, team_id, since, order=(tokens.desc(), usage.c.user_id), limit=limit
        )

    async def tokens(self, team_id: str, since: float = 0.0) -> int:
        query = tokens_since(team_id, since)
        async with self._db.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def _grouped(
        self,
        column: ColumnElement[Any],
        team_id: str,
        since: float,
        *,
        order: tuple[Any, ...],
        limit: int | None = None,
    ) -> list[Totals]:
        query = (
            select(
                column,
                func.count(),
                func.coalesce(func.sum(usage.c.input_tokens), 0),
                func.coalesce(func.sum(usage.c.output_tokens), 0),
                func.coalesce(func.sum(usage.c.reasoning_tokens), 0),
                func.sum(usage.c.cost_nanousd),
                func.count() - func.count(usage.c.cost_nanousd),
            )
            .where(usage.c.team_id == team_id, usage.c.created_at >= since)
            .group_by(column)
            .order_by(*order)
            .limit(limit)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Totals(
                name=row[0],
                calls=int(row[1]),
                input_tokens=int(row[2]),
                output_tokens=int(row[3]),
                reasoning_tokens=int(row[4]),
                cost_usd=from_nanos(row[5]),
                unpriced_calls=int(row[6]),
            )
            for row in rows
        ]
