"""`python -m bot workspaces`: the installations, each one's usage this month and all time, and
whether it brings its own Model Studio key. For the operator's billing; never any content."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.budget import month_start
from bot.ports import UsageLedger, WorkspaceKeys, Workspaces
from bot.records import Totals, WorkspaceRecord
from bot.usage_report import total_of


@dataclass(frozen=True, slots=True)
class WorkspaceLine:
    workspace: WorkspaceRecord
    own_key: bool
    month: Totals
    all_time: Totals

    @property
    def status(self) -> str:
        if self.workspace.uninstalled_at is None:
            return "installed"
        if self.workspace.purge_at is not None:
            return f"uninstalled, content deleted {_day(self.workspace.purge_at)}"
        return "uninstalled, content deleted"

    def as_dict(self) -> dict[str, Any]:
        w = self.workspace
        return {
            "team_id": w.team_id,
            "name": w.name,
            "enterprise_id": w.enterprise_id,
            "org_wide_install": w.enterprise_install,
            "installed_at": _iso(w.installed_at),
            "uninstalled_at": _iso(w.uninstalled_at),
            "content_deleted_at": _iso(w.purge_at),
            "own_model_key": self.own_key,
            "this_month": _totals(self.month),
            "all_time": _totals(self.all_time),
        }


async def workspace_lines(
    workspaces: Workspaces,
    billed: Sequence[str],
    keys: WorkspaceKeys,
    ledger: UsageLedger,
    *,
    now: float | None = None,
) -> list[WorkspaceLine]:
    """Every installed or uninstalled workspace, and any other the ledger bills (the one
    workspace of single-workspace mode)."""
    known = {w.team_id: w for w in await workspaces.all()}
    for team_id in billed:
        known.setdefault(team_id, WorkspaceRecord(team_id))
    since = month_start(time.time() if now is None else now).timestamp()
    lines = []
    for workspace in known.values():
        lines.append(
            WorkspaceLine(
                workspace,
                own_key=bool(await keys.get(workspace.team_id)),
                month=total_of(await ledger.by_model(workspace.team_id, since)),
                all_time=total_of(await ledger.by_model(workspace.team_id)),
            )
        )
    return lines


def as_json(lines: Sequence[WorkspaceLine]) -> str:
    return json.dumps([line.as_dict() for line in lines], indent=2)


def as_table(lines: Sequence[WorkspaceLine]) -> str:
    if not lines:
        return "No workspaces yet."
    header = ("workspace", "name", "own key", "this month", "all time", "status")
    rows = [header] + [
        (
            line.workspace.team_id
            + (f" ({line.workspace.enterprise_id})" if line.workspace.enterprise_id else ""),
            line.workspace.name,
            "yes" if line.own_key else "no",
            _short(line.month),
            _short(line.all_time),
            line.status,
        )
        for line in lines
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _short(totals: Totals) -> str:
    cost = "" if totals.cost_usd is None else f" ${totals.cost_usd:.4f}"
    return f"{totals.tokens:,} tokens{cost}"


def _totals(totals: Totals) -> dict[str, Any]:
    return {
        "calls": totals.calls,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "reasoning_tokens": totals.reasoning_tokens,
        "cost_usd": None if totals.cost_usd is None else str(totals.cost_usd.quantize(_NANO)),
        "unpriced_calls": totals.unpriced_calls,
    }


_NANO = Decimal("0.000000001")


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


def _day(moment: float) -> str:
    return f"{datetime.fromtimestamp(moment, UTC):%Y-%m-%d}"
