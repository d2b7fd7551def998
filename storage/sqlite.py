"""SQLite persistence (aiosqlite): conversations, the usage ledger, delivery claims."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Final

import aiosqlite

from storage.models import Conversation, ConversationKey, State, UsageRecord

# Claims only guard against Slack redeliveries, which come within minutes.
CLAIM_RETENTION_SECONDS: Final = 24 * 3600

_CONVERSATION_COLUMNS: Final = (
    "team_id, channel_id, thread_ts, user_id, state, model, history, report, refs, "
    "progress_ts, options, created_at, updated_at"
)
# Columns added after the first release, for databases created before them.
_ADDED_COLUMNS: Final = (("conversations", "options", "TEXT NOT NULL DEFAULT '{}'"),)


class Store:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        # One connection is shared by every coroutine; a write transaction must not interleave
        # with another coroutine's statements.
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.executescript(
                resources.files("storage").joinpath("schema.sql").read_text(encoding="utf-8")
            )
            await _add_missing_columns(db)
            await db.commit()
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    @property
    def connection(self) -> aiosqlite.Connection:
        """The one connection; modules with tables of their own use it, not a second one."""
        return self._db

    @property
    def write_lock(self) -> asyncio.Lock:
        """Held for every write transaction on `connection`, by every module."""
        return self._write

    # --- delivery claims -------------------------------------------------------------------

    async def claim(self, key: str) -> bool:
        """True the first time `key` is claimed; False for every later claim."""
        now = time.time()
        async with self._write:
            cursor = await self._db.execute(
                "INSERT OR IGNORE INTO claims (key, claimed_at) VALUES (?, ?)", (key, now)
            )
            claimed = cursor.rowcount == 1
            await self._db.execute(
                "DELETE FROM claims WHERE claimed_at < ?", (now - CLAIM_RETENTION_SECONDS,)
            )
            await self._db.commit()
        return claimed

    # --- conversations ---------------------------------------------------------------------

    async def get(self, key: ConversationKey) -> Conversation | None:
        async with self._db.execute(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations "
            "WHERE team_id = ? AND channel_id = ? AND thread_ts = ?",
            (key.team_id, key.channel_id, key.thread_ts),
        ) as cursor:
            row = await cursor.fetchone()
        return _conversation(row) if row is not None else None

    async def create(self, conversation: Conversation, usage: Sequence[UsageRecord] = ()) -> bool:
        """Insert a new conversation with its first calls' usage; False if the thread has one."""
        now = time.time()
        c = replace(conversation, created_at=now, updated_at=now)
        async with self._write:
            try:
                cursor = await self._db.execute(
                    f"INSERT OR IGNORE INTO conversations ({_CONVERSATION_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _row(c),
                )
                created = cursor.rowcount == 1
                if created:
                    await self._insert_usage(usage)
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise
        return created

    async def save(
        self, conversation: Conversation, usage: Sequence[UsageRecord] = ()
    ) -> Conversation:
        """Write the conversation's new state and its calls' usage in one transaction."""
        c = replace(conversation, updated_at=time.time())
        row = _row(c)
        async with self._write:
            try:
                await self._db.execute(
                    "UPDATE conversations SET user_id = ?, state = ?, model = ?, history = ?, "
                    "report = ?, refs = ?, progress_ts = ?, options = ?, updated_at = ? "
                    "WHERE team_id = ? AND channel_id = ? AND thread_ts = ?",
                    (*row[3:11], c.updated_at, *row[:3]),
                )
                await self._insert_usage(usage)
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise
        return c

    async def record_usage(self, usage: Sequence[UsageRecord]) -> None:
        async with self._write:
            await self._insert_usage(usage)
            await self._db.commit()

    async def in_state(self, state: State) -> list[Conversation]:
        async with self._db.execute(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE state = ?", (state.value,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [_conversation(r) for r in rows]

    # --- usage -----------------------------------------------------------------------------

    async def usage_records(self, team_id: str) -> list[UsageRecord]:
        async with self._db.execute(
            "SELECT team_id, user_id, channel_id, thread_ts, model, kind, input_tokens, "
            "output_tokens, reasoning_tokens, request_id, cost_usd, created_at "
            "FROM usage WHERE team_id = ? ORDER BY id",
            (team_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [UsageRecord(*tuple(r)) for r in rows]

    async def _insert_usage(self, usage: Sequence[UsageRecord]) -> None:
        now = time.time()
        await self._db.executemany(
            "INSERT INTO usage (team_id, user_id, channel_id, thread_ts, model, kind, "
            "input_tokens, output_tokens, reasoning_tokens, request_id, cost_usd, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    u.team_id,
                    u.user_id,
                    u.channel_id,
                    u.thread_ts,
                    u.model,
                    u.kind,
                    u.input_tokens,
                    u.output_tokens,
                    u.reasoning_tokens,
                    u.request_id,
                    u.cost_usd,
                    u.created_at or now,
                )
                for u in usage
            ],
        )


async def _add_missing_columns(db: aiosqlite.Connection) -> None:
    for table, column, declaration in _ADDED_COLUMNS:
        async with db.execute(f"PRAGMA table_info({table})") as cursor:
            existing = {row[1] for row in await cursor.fetchall()}
        if column not in existing:
            await db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _row(c: Conversation) -> tuple[Any, ...]:
    return (
        c.key.team_id,
        c.key.channel_id,
        c.key.thread_ts,
        c.user_id,
        c.state.value,
        c.model,
        json.dumps(list(c.history), ensure_ascii=False),
        c.report,
        json.dumps(list(c.references), ensure_ascii=False),
        c.progress_ts,
        json.dumps(c.options),
        c.created_at,
        c.updated_at,
    )


def _conversation(row: aiosqlite.Row) -> Conversation:
    return Conversation(
        key=ConversationKey(row["team_id"], row["channel_id"], row["thread_ts"]),
        user_id=row["user_id"],
        state=State(row["state"]),
        model=row["model"],
        history=tuple(json.loads(row["history"])),
        report=row["report"],
        references=tuple(json.loads(row["refs"])),
        progress_ts=row["progress_ts"],
        options=json.loads(row["options"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
