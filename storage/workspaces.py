"""Workspaces of multi-workspace mode, their own model keys, and the deletion of an
uninstalled workspace's content."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, delete, func, select, update

from bot.records import WorkspaceRecord
from storage.database import Database
from storage.tables import (
    answers,
    claims,
    conversations,
    inbox,
    inflight_usage,
    kept_questions,
    pacing,
    usage,
    workspace_keys,
    workspace_settings,
    workspaces,
)

# Tables whose rows belong to one workspace (team_id) and are deleted with its content.
_CONTENT = (conversations, answers, workspace_settings, kept_questions, inbox, pacing)


class SqlWorkspaces:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def installed(self, record: WorkspaceRecord) -> None:
        values = {
            "team_id": record.team_id,
            "enterprise_id": record.enterprise_id,
            "enterprise_install": int(record.enterprise_install),
            "name": record.name,
            "installed_at": record.installed_at or time.time(),
            "uninstalled_at": None,
            "purge_at": None,
        }
        refreshed = {k: v for k, v in values.items() if k not in ("team_id", "installed_at")}
        if not record.name:
            refreshed.pop("name")  # a workspace first seen on an event has no name to give
        statement = self._db.upsert(workspaces).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[workspaces.c.team_id], set_=refreshed
        )
        async with self._db.write() as conn:
            await conn.execute(statement)

    async def get(self, team_id: str) -> WorkspaceRecord | None:
        async with self._db.read() as conn:
            query = select(workspaces).where(workspaces.c.team_id == team_id)
            row = (await conn.execute(query)).mappings().first()
        return _record(row) if row is not None else None

    async def all(self) -> list[WorkspaceRecord]:
        async with self._db.read() as conn:
            query = select(workspaces).order_by(workspaces.c.installed_at)
            return [_record(r) for r in (await conn.execute(query)).mappings()]

    async def of_enterprise(self, enterprise_id: str) -> list[WorkspaceRecord]:
        async with self._db.read() as conn:
            query = select(workspaces).where(workspaces.c.enterprise_id == enterprise_id)
            return [_record(r) for r in (await conn.execute(query)).mappings()]

    async def billed(self) -> list[str]:
        """Every workspace the usage ledger has rows of."""
        async with self._db.read() as conn:
            query = select(usage.c.team_id).distinct().order_by(usage.c.team_id)
            return [str(t) for t in (await conn.execute(query)).scalars()]

    async def uninstalled(self, team_id: str, *, at: float, purge_at: float) -> None:
        async with self._db.write() as conn:
            result = await conn.execute(
                update(workspaces)
                .where(workspaces.c.team_id == team_id)
                .values(uninstalled_at=at, purge_at=purge_at)
            )
            if result.rowcount == 0:  # a workspace installed before this release
                await conn.execute(
                    workspaces.insert().values(
                        team_id=team_id,
                        enterprise_id=None,
                        enterprise_install=0,
                        name="",
                        installed_at=at,
                        uninstalled_at=at,
                        purge_at=purge_at,
                    )
                )

    async def due(self, now: float) -> list[str]:
        async with self._db.read() as conn:
            query = select(workspaces.c.team_id).where(
                workspaces.c.purge_at.is_not(None),
                workspaces.c.purge_at <= now,
                workspaces.c.uninstalled_at.is_not(None),
            )
            return [str(r) for r in (await conn.execute(query)).scalars()]

    async def purge(self, team_id: str) -> None:
        async with self._db.write() as conn:
            for table in _CONTENT:
                await conn.execute(delete(table).where(table.c.team_id == team_id))
            await conn.execute(delete(inflight_usage).where(inflight_usage.c.team_id == team_id))
            await conn.execute(delete(claims).where(claims.c.key.like(f"message:{team_id}:%")))
            await _anonymise_usage(conn, team_id)
            await conn.execute(
                update(workspaces).where(workspaces.c.team_id == team_id).values(purge_at=None)
            )


async def _anonymise_usage(conn: Any, team_id: str) -> None:
    """The ledger rows of the workspace become one row per model, kind and calendar month
    (UTC), with no user, channel, thread or request: the operator's billing totals stay exact
    and nothing says who asked what."""
    rows = (
        await conn.execute(
            select(
                usage.c.model,
                usage.c.kind,
                usage.c.created_at,
                usage.c.input_tokens,
                usage.c.output_tokens,
                usage.c.reasoning_tokens,
                usage.c.cost_nanousd,
            ).where(usage.c.team_id == team_id)
        )
    ).mappings()
    totals: dict[tuple[str, str, float], dict[str, Any]] = {}
    for row in rows:
        moment = datetime.fromtimestamp(float(row["created_at"]), UTC)
        month = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        group = totals.setdefault(
            (row["model"], row["kind"], month),
            {"input": 0, "output": 0, "reasoning": 0, "cost": None, "calls": 0},
        )
        group["input"] += row["input_tokens"]
        group["output"] += row["output_tokens"]
        group["reasoning"] += row["reasoning_tokens"]
        if row["cost_nanousd"] is not None:
            group["cost"] = (group["cost"] or 0) + int(row["cost_nanousd"])
    await conn.execute(delete(usage).where(usage.c.team_id == team_id))
    for (model, kind, month), group in totals.items():
        await conn.execute(
            usage.insert().values(
                team_id=team_id,
                user_id="",
                channel_id="",
                thread_ts="",
                model=model,
                kind=kind,
                input_tokens=group["input"],
                output_tokens=group["output"],
                reasoning_tokens=group["reasoning"],
                request_id="",
                cost_nanousd=group["cost"],
                created_at=month,
                call_id=f"total:{team_id}:{model}:{kind}:{int(month)}",
            )
        )


def _record(row: RowMapping) -> WorkspaceRecord:
    return WorkspaceRecord(
        team_id=row["team_id"],
        enterprise_id=row["enterprise_id"],
        enterprise_install=bool(row["enterprise_install"]),
        name=row["name"] or "",
        installed_at=float(row["installed_at"]),
        uninstalled_at=row["uninstalled_at"],
        purge_at=row["purge_at"],
    )


class SqlWorkspaceKeys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, team_id: str) -> str | None:
        async with self._db.read() as conn:
            query = select(workspace_keys.c.key_sealed).where(workspace_keys.c.team_id == team_id)
            return (await conn.execute(query)).scalar()

    async def put(self, team_id: str, sealed: str, updated_by: str) -> None:
        values = {
            "team_id": team_id,
            "key_sealed": sealed,
            "updated_by": updated_by,
            "updated_at": time.time(),
        }
        await self._db.put(workspace_keys, "team_id", values)

    async def forget_key(self, team_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(delete(workspace_keys).where(workspace_keys.c.team_id == team_id))

    async def forget_secrets(self, team_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(delete(workspace_keys).where(workspace_keys.c.team_id == team_id))
            await conn.execute(
                update(workspace_settings)
                .where(workspace_settings.c.team_id == team_id)
                .values(mcp_token_sealed=None)
            )


async def count_rows(db: Database, team_id: str) -> dict[str, int]:
    """How many rows of each content table the workspace has (tests, the CLI)."""
    counts: dict[str, int] = {}
    async with db.read() as conn:
        for table in (*_CONTENT, usage):
            query = select(func.count()).select_from(table).where(table.c.team_id == team_id)
            counts[table.name] = int((await conn.execute(query)).scalar() or 0)
    return counts
