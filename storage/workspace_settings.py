"""Per-workspace research settings, one row per team. The MCP bearer token is stored only as
the ciphertext the caller hands in; this module never sees a plaintext token."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Final

import aiosqlite

from storage.sqlite import Store

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS workspace_settings (
    team_id           TEXT PRIMARY KEY,
    model             TEXT,                        -- NULL: the bot's RESEARCH_MODEL
    output_format     TEXT,                        -- NULL: the model's default
    clarify           INTEGER,                     -- 1 / 0; NULL: ask
    mcp_label         TEXT NOT NULL DEFAULT '',    -- '' : no MCP server
    mcp_url           TEXT NOT NULL DEFAULT '',
    mcp_allowed_tools TEXT NOT NULL DEFAULT '[]',  -- JSON list of tool names
    mcp_token_sealed  TEXT,                        -- encrypted bearer token, never plaintext
    updated_by        TEXT NOT NULL DEFAULT '',
    updated_at        REAL NOT NULL
);
"""

_COLUMNS: Final = (
    "team_id, model, output_format, clarify, mcp_label, mcp_url, mcp_allowed_tools, "
    "mcp_token_sealed, updated_by, updated_at"
)


@dataclass(frozen=True, slots=True)
class SettingsRow:
    team_id: str
    model: str | None = None
    output_format: str | None = None
    clarify: bool | None = None
    mcp_label: str = ""
    mcp_url: str = ""
    mcp_allowed_tools: tuple[str, ...] = ()
    mcp_token_sealed: str | None = None
    updated_by: str = ""
    updated_at: float = 0.0

    def __repr__(self) -> str:  # the ciphertext is no business of a log line either
        sealed = "<sealed>" if self.mcp_token_sealed else None
        return (
            f"SettingsRow(team_id={self.team_id!r}, model={self.model!r}, "
            f"output_format={self.output_format!r}, clarify={self.clarify!r}, "
            f"mcp_label={self.mcp_label!r}, mcp_url={self.mcp_url!r}, "
            f"mcp_allowed_tools={self.mcp_allowed_tools!r}, mcp_token_sealed={sealed}, "
            f"updated_by={self.updated_by!r}, updated_at={self.updated_at!r})"
        )


class WorkspaceSettingsStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    @classmethod
    async def attach(cls, store: Store) -> WorkspaceSettingsStore:
        """Create the table on the store's database if it is not there yet."""
        async with store.write_lock:
            await store.connection.executescript(_SCHEMA)
            await store.connection.commit()
        return cls(store)

    async def get(self, team_id: str) -> SettingsRow | None:
        async with self._store.connection.execute(
            f"SELECT {_COLUMNS} FROM workspace_settings WHERE team_id = ?", (team_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _settings(row) if row is not None else None

    async def put(self, row: SettingsRow) -> SettingsRow:
        """Insert or replace the workspace's row."""
        stored = replace(row, updated_at=row.updated_at or time.time())
        db = self._store.connection
        async with self._store.write_lock:
            try:
                await db.execute(
                    f"INSERT OR REPLACE INTO workspace_settings ({_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        stored.team_id,
                        stored.model,
                        stored.output_format,
                        None if stored.clarify is None else int(stored.clarify),
                        stored.mcp_label,
                        stored.mcp_url,
                        json.dumps(list(stored.mcp_allowed_tools)),
                        stored.mcp_token_sealed,
                        stored.updated_by,
                        stored.updated_at,
                    ),
                )
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
        return stored


def _settings(row: aiosqlite.Row) -> SettingsRow:
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
        updated_by=row["updated_by"] or "",
        updated_at=float(row["updated_at"]),
    )
