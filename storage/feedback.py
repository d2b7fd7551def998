"""Ratings of the bot's messages, one row per person and message."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from bot.feedback import Feedback, FeedbackShare
from storage.database import Database
from storage.tables import feedback as table


class SqlFeedback:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, feedback: Feedback) -> None:
        now = time.time()
        values = {
            "team_id": feedback.team_id,
            "channel_id": feedback.channel_id,
            "message_ts": feedback.message_ts,
            "user_id": feedback.user_id,
            "positive": int(feedback.positive),
            "model": feedback.model,
            "kind": feedback.kind,
            "created_at": now,
            "updated_at": now,
        }
        statement = self._db.upsert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[
                table.c.team_id,
                table.c.channel_id,
                table.c.message_ts,
                table.c.user_id,
            ],
            set_={"positive": values["positive"], "updated_at": now},
        )
        async with self._db.write() as conn:
            await conn.execute(statement)

    async def shares(self, team_id: str, since: float) -> list[FeedbackShare]:
        query = (
            select(
                table.c.model,
                table.c.kind,
                func.sum(table.c.positive).label("positive"),
                func.count().label("total"),
            )
            .where(table.c.team_id == team_id, table.c.updated_at >= since)
            .group_by(table.c.model, table.c.kind)
            .order_by(table.c.model, table.c.kind)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [FeedbackShare(r.model, r.kind, int(r.positive or 0), int(r.total)) for r in rows]
