"""Research conversations, keyed by their thread, saved with the usage of the call that changed
them in one transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import RowMapping, select, update

from bot.conversation import Conversation, ConversationKey, StaleConversation, State
from bot.records import UsageRecord
from bot.research_options import ResearchOptions
from storage.database import Database
from storage.ledger import insert_usage
from storage.tables import conversations as table

_KEY = (table.c.team_id, table.c.channel_id, table.c.thread_ts)


class SqlConversations:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: ConversationKey) -> Conversation | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(table).where(*_is(key)))).mappings().first()
        return _conversation(row) if row is not None else None

    async def create(
        self, conversation: Conversation, usage: Sequence[UsageRecord] = ()
    ) -> Conversation | None:
        now = time.time()
        c = replace(conversation, created_at=now, updated_at=now, version=1)
        statement = self._db.upsert(table).values(**_row(c)).on_conflict_do_nothing()
        async with self._db.write() as conn:
            created = (await conn.execute(statement.returning(table.c.version))).first()
            if created is None:
                return None  # the thread has a conversation already
            await insert_usage(conn, usage)
        return c

    async def save(
        self, conversation: Conversation, usage: Sequence[UsageRecord] = ()
    ) -> Conversation:
        c = replace(conversation, updated_at=time.time(), version=conversation.version + 1)
        values = _row(c)
        for column in ("team_id", "channel_id", "thread_ts", "created_at"):
            del values[column]
        async with self._db.write() as conn:
            written = (
                await conn.execute(
                    update(table)
                    .where(*_is(c.key), table.c.version == conversation.version)
                    .values(**values)
                    .returning(table.c.version)
                )
            ).first()
            if written is None:
                raise StaleConversation(f"{c.key} changed since version {conversation.version}")
            await insert_usage(conn, usage)
        return c

    async def in_state(self, state: State) -> list[Conversation]:
        async with self._db.read() as conn:
            rows = (await conn.execute(select(table).where(table.c.state == state.value))).all()
        return [_conversation(r._mapping) for r in rows]

    async def take_orphan_runs(self, owner: str, live: Sequence[str]) -> list[Conversation]:
        orphaned = (table.c.owner.is_(None)) | (table.c.owner.not_in(list(live)))
        async with self._db.write() as conn:
            rows = (
                await conn.execute(
                    update(table)
                    .where(table.c.state == State.RESEARCHING.value, orphaned)
                    .values(owner=owner, version=table.c.version + 1, updated_at=time.time())
                    .returning(*table.c)
                )
            ).all()
        return [_conversation(r._mapping) for r in rows]


def _is(key: ConversationKey) -> tuple[Any, ...]:
    return (_KEY[0] == key.team_id, _KEY[1] == key.channel_id, _KEY[2] == key.thread_ts)


def _row(c: Conversation) -> dict[str, Any]:
    return {
        "team_id": c.key.team_id,
        "channel_id": c.key.channel_id,
        "thread_ts": c.key.thread_ts,
        "user_id": c.user_id,
        "state": c.state.value,
        "model": c.model,
        "history": json.dumps(list(c.history), ensure_ascii=False),
        "report": c.report,
        "refs": json.dumps(list(c.references), ensure_ascii=False),
        "progress_ts": c.progress_ts,
        "options": json.dumps(c.options.to_json()),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "version": c.version,
        "owner": c.owner,
        "resumes": c.resumes,
        "applied": json.dumps(list(c.applied)),
    }


def _conversation(row: RowMapping) -> Conversation:
    return Conversation(
        key=ConversationKey(row["team_id"], row["channel_id"], row["thread_ts"]),
        user_id=row["user_id"],
        state=State(row["state"]),
        model=row["model"],
        history=tuple(json.loads(row["history"])),
        report=row["report"],
        references=tuple(json.loads(row["refs"])),
        progress_ts=row["progress_ts"],
        options=ResearchOptions.from_json(json.loads(row["options"] or "{}")),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        owner=row["owner"],
        resumes=row["resumes"],
        applied=tuple(json.loads(row["applied"] or "[]")),
    )
