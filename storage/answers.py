"""Quick answers and follow-up answers, kept so their reasoning can be shown on request later
(a button pressed after a restart still works) and so follow-ups become thread history."""

from __future__ import annotations

import time
from dataclasses import astuple, dataclass, fields, replace
from typing import Final

import aiosqlite

from storage.models import ConversationKey
from storage.sqlite import Store

ASK: Final = "ask"
FOLLOW_UP: Final = "follow_up"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS answers (
    id          TEXT PRIMARY KEY,          -- random; the value of the answer's buttons
    team_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    channel_id  TEXT NOT NULL,
    thread_ts   TEXT NOT NULL DEFAULT '',  -- the research thread of a follow-up; '' for /ask
    kind        TEXT NOT NULL,             -- ask | follow_up
    model       TEXT NOT NULL,
    question    TEXT NOT NULL,
    answer      TEXT NOT NULL,
    reasoning   TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_thread ON answers (team_id, channel_id, thread_ts, created_at);
"""


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    id: str
    team_id: str
    user_id: str
    channel_id: str
    thread_ts: str
    kind: str
    model: str
    question: str
    answer: str
    reasoning: str = ""
    created_at: float = 0.0


_COLUMNS: Final = ", ".join(f.name for f in fields(StoredAnswer))
_PLACEHOLDERS: Final = ", ".join("?" for _ in fields(StoredAnswer))


class AnswerStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    @classmethod
    async def attach(cls, store: Store) -> AnswerStore:
        """Create the table on the store's database if it is not there yet."""
        async with store.write_lock:
            await store.connection.executescript(_SCHEMA)
            await store.connection.commit()
        return cls(store)

    async def add(self, answer: StoredAnswer) -> StoredAnswer:
        stored = replace(answer, created_at=answer.created_at or time.time())
        db = self._store.connection
        async with self._store.write_lock:
            try:
                await db.execute(
                    f"INSERT INTO answers ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",
                    astuple(stored),
                )
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
        return stored

    async def get(self, team_id: str, answer_id: str) -> StoredAnswer | None:
        """The answer, only if it belongs to the workspace asking for it."""
        async with self._store.connection.execute(
            f"SELECT {_COLUMNS} FROM answers WHERE id = ? AND team_id = ?", (answer_id, team_id)
        ) as cursor:
            row = await cursor.fetchone()
        return _answer(row) if row is not None else None

    async def follow_ups(self, key: ConversationKey, since: float = 0.0) -> list[StoredAnswer]:
        """The thread's follow-up answers created after `since`, oldest first."""
        async with self._store.connection.execute(
            f"SELECT {_COLUMNS} FROM answers WHERE team_id = ? AND channel_id = ? "
            "AND thread_ts = ? AND kind = ? AND created_at > ? ORDER BY created_at, rowid",
            (key.team_id, key.channel_id, key.thread_ts, FOLLOW_UP, since),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_answer(r) for r in rows]


def _answer(row: aiosqlite.Row) -> StoredAnswer:
    return StoredAnswer(*tuple(row))
