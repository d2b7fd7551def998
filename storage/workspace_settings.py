"""Per-workspace research settings, one row per team. The MCP bearer token is stored only as
the ciphertext the caller hands in; this module never sees a plaintext token."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from sqlalchemy import RowMapping, select

from bot.records import SettingsRow
from storage.database import Database
from storage.tables import workspace_settings as table


class SqlWorkspaceSettings:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, team_id: str) -> SettingsRow | None:
        async with self._db.read() as conn:
            query = select(table).where(table.c.team_id == team_id)
            row = (await conn.execute(query)).mappings().first()
        return _settings(row) if row is not None else None

    async def put(self, row: SettingsRow) -> SettingsRow:
        stored = replace(row, updated_at=row.updated_at or time.time())
        values = {
            "team_id": stored.team_id,
            "model": stored.model,
            "output_format": stored.output_format,
            "clarify": None if stored.clarify is None else int(stored.clarify),
            "mcp_label": stored.mcp_label,
            "mcp_url": stored.mcp_url,
            "mcp_allowed_tools": json.dumps(list(stored.mcp_allowed_tools)),
            "mcp_token_sealed": stored.mcp_token_sealed,
            "report_delivery": stored.report_delivery,
            "updated_by": stored.updated_by,
            "updated_at": stored.updated_at,
        }
        await self._db.put(table, "team_id", values)
        return stored


def _settings(row: RowMapping) -> SettingsRow:
    clarify = row["clarify"]
    try:
        tools = json.loads(row["mcp_allowed_tools"] or "[]")
    except json.JSONDecodeError:
        tools = []
    return SettingsRow(
        team_id=row["team_id"],
        model=row["model"],
        output_format=row["output_format"],
        clarify=None if clarify is None else bool(clarify),
        mcp_label=row["mcp_label"] or "",
        mcp_url=row["mcp_url"] or "",
        mcp_allowed_tools=tuple(str(t) for t in tools if isinstance(t, str)),
        mcp_token_sealed=row["mcp_token_sealed"],
        report_delivery=row["report_delivery"],
        updated_by=row["updated_by"] or "",
        updated_at=float(row["updated_at"]),
    )
