"""A workspace's usage as people see it: this month and all time, by model and top users."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from bot.budget import BudgetGuard, BudgetStatus, month_start
from bot.i18n import N_, Month, Text, say
from bot.ports import UsageLedger
from bot.records import Totals

TOP_USERS: Final = 5


@dataclass(frozen=True, slots=True)
class Period:
    label: Text
    by_model: tuple[Totals, ...]
    top_users: tuple[Totals, ...]

    @property
    def total(self) -> Totals:
        return total_of(self.by_model)


@dataclass(frozen=True, slots=True)
class WorkspaceUsage:
    month: Period
    all_time: Period
    budget: BudgetStatus | None


def total_of(rows: Sequence[Totals], name: str = "total") -> Totals:
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    cost = sum(costs, Decimal(0)) if costs else None
    return Totals(
        name=name,
        calls=sum(r.calls for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        reasoning_tokens=sum(r.reasoning_tokens for r in rows),
        cost_usd=cost,
        unpriced_calls=sum(r.unpriced_calls for r in rows),
    )


class UsageReporter:
    def __init__(
        self,
        queries: UsageLedger,
        budget: BudgetGuard,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queries = queries
        self._budget = budget
        self._clock = clock

    async def workspace(self, team_id: str) -> WorkspaceUsage:
        start = month_start(self._clock())
        month = Period(
            label=say(N_("This month ({month})"), month=Month(start)),
            by_model=tuple(await self._queries.by_model(team_id, since=start.timestamp())),
            top_users=tuple(
                await self._queries.top_users(team_id, since=start.timestamp(), limit=TOP_USERS)
            ),
        )
        all_time = Period(
            label=N_("All time"),
            by_model=tuple(await self._queries.by_model(team_id)),
            top_users=tuple(await self._queries.top_users(team_id, limit=TOP_USERS)),
        )
        return WorkspaceUsage(month, all_time, await self._budget.status(team_id))
