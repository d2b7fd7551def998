"""Quick answers and follow-up answers, kept so their reasoning can be shown on request later
(a button pressed after a restart still works) and so follow-ups become thread history."""

from __future__ import annotations

import time
from dataclasses import asdict, replace

from sqlalchemy import insert, select

from bot.conversation import ConversationKey
from bot.records import FOLLOW_UP, StoredAnswer
from storage.database import Database
from storage.tables import answers as table


class SqlAnswers:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, answer: StoredAnswer) -> StoredAnswer:
        stored = replace(answer, created_at=answer.created_at or time.time())
        async with self._db.write() as conn:
            await conn.execute(insert(table).values(**asdict(stored)))
        return stored

    async def get(self, team_id: str, answer_id: str) -> StoredAnswer | None:
        query = select(table).where(table.c.id == answer_id, table.c.team_id == team_id)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return StoredAnswer(**row) if row is not None else None

    async def follow_ups(self, key: ConversationKey, since: float = 0.0) -> list[StoredAnswer]:
        query = (
            select(table)
            .where(
                table.c.team_id == key.team_id,
                table.c.channel_id == key.channel_id,
                table.c.thread_ts == key.thread_ts,
                table.c.kind == FOLLOW_UP,
                table.c.created_at > since,
            )
            .order_by(table.c.created_at, table.c.id)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [StoredAnswer(**row) for row in rows]
