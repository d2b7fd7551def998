"""Read-only questions about the usage ledger: totals by model and by user, tokens since a time.

Cost sums cover priced calls only; the unpriced calls are counted too, so the display can say
that a model's cost is a lower bound (a price added to PRICING_FILE later) instead of hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from storage.sqlite import Store

_SUMS: Final = (
    "COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
    "COALESCE(SUM(reasoning_tokens), 0), SUM(cost_usd), COUNT(*) - COUNT(cost_usd)"
)


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over a group of ledger rows. Reasoning tokens are part of the output tokens."""

    name: str  # the model or the user id the rows share
    calls: int
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: float | None  # over the priced calls; None when none had a price
    unpriced_calls: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class UsageQueries:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def by_model(self, team_id: str, since: float = 0.0) -> list[Totals]:
        return await self._grouped("model", team_id, since, order="model", limit=None)

    async def top_users(self, team_id: str, since: float = 0.0, limit: int = 5) -> list[Totals]:
        """The users with the most tokens, most first."""
        order = "SUM(input_tokens) + SUM(output_tokens) DESC, user_id"
        return await self._grouped("user_id", team_id, since, order=order, limit=limit)

    async def tokens(self, team_id: str, since: float = 0.0) -> int:
        """Input plus output tokens of every call since `since`."""
        async with self._store.connection.execute(
            "SELECT COALESCE(SUM(input_tokens + output_tokens), 0) FROM usage "
            "WHERE team_id = ? AND created_at >= ?",
            (team_id, since),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def _grouped(
        self, column: str, team_id: str, since: float, *, order: str, limit: int | None
    ) -> list[Totals]:
        sql = (
            f"SELECT {column}, {_SUMS} FROM usage WHERE team_id = ? AND created_at >= ? "
            f"GROUP BY {column} ORDER BY {order}"
        )
        params: tuple[object, ...] = (team_id, since)
        if limit is not None:
            sql += " LIMIT ?"
            params = (*params, limit)
        async with self._store.connection.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [Totals(*tuple(r)) for r in rows]
