"""Research conversations, keyed by their thread, saved with the usage of the call that changed
them in one transaction."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import RowMapping, func, select, update

from bot.conversation import Conversation, ConversationKey, Owed, StaleConversation, State
from bot.records import UsageRecord
from bot.research_options import ResearchOptions
from storage.database import Database
from storage.ledger import insert_usage
from storage.tables import conversations as table

_KEY = (table.c.team_id, table.c.channel_id, table.c.thread_ts)
_ADMIT_SCAN = 500  # queued conversations looked at per admission round


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
        values = _changeable(c)
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

    async def count_in_state(self, state: State) -> int:
        async with self._db.read() as conn:
            query = select(func.count()).select_from(table).where(table.c.state == state.value)
            return int((await conn.execute(query)).scalar_one())

    async def take_orphan_deliveries(self, owner: str, live: Sequence[str]) -> list[Conversation]:
        owed_states = (State.AWAITING_CLARIFICATION.value, State.DONE.value)
        orphaned = (table.c.owner.is_(None)) | (table.c.owner.not_in(list(live)))
        async with self._db.write() as conn:
            rows = (
                await conn.execute(
                    update(table)
                    .where(table.c.owed.is_not(None), table.c.state.in_(owed_states), orphaned)
                    .values(owner=owner, version=table.c.version + 1, updated_at=time.time())
                    .returning(*table.c)
                )
            ).all()
        return [_conversation(r._mapping) for r in rows]

    async def settle_owed(
        self, key: ConversationKey, marker: str, owed: Owed | None, *, release: bool = True
    ) -> None:
        async with self._db.write() as conn:
            row = (await conn.execute(select(table.c.owed, table.c.state).where(*_is(key)))).first()
            if row is None or not row.owed or Owed.from_json(json.loads(row.owed)).marker != marker:
                return  # settled already, or owed something newer
            values: dict[str, Any] = {
                "owed": json.dumps(owed.to_json()) if owed is not None else None
            }
            if release and row.state in (State.AWAITING_CLARIFICATION.value, State.DONE.value):
                values["owner"] = None
            await conn.execute(update(table).where(*_is(key)).values(**values))

    async def owned_runs(self, owner: str) -> set[ConversationKey]:
        query = select(*_KEY).where(
            table.c.state == State.RESEARCHING.value, table.c.owner == owner
        )
        async with self._db.read() as conn:
            return {ConversationKey(*row) for row in (await conn.execute(query)).all()}

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

    async def admit(
        self, owner: str, *, user_cap: int, workspace_cap: int, now: float
    ) -> list[Conversation]:
        async with self._db.write() as conn:
            await self._db.lock(conn, "admission")
            running = (
                await conn.execute(
                    select(table.c.team_id, table.c.user_id, func.count())
                    .where(table.c.state == State.RESEARCHING.value)
                    .group_by(table.c.team_id, table.c.user_id)
                )
            ).all()
            per_user: Counter[tuple[str, str]] = Counter()
            per_team: Counter[str] = Counter()
            for team, user, count in running:
                per_user[(team, user)] += count
                per_team[team] += count
            queued = (
                await conn.execute(
                    select(table)
                    .where(table.c.state == State.QUEUED.value, table.c.not_before <= now)
                    .order_by(table.c.queued_at)
                    .limit(_ADMIT_SCAN)
                )
            ).all()
            admitted: list[Conversation] = []
            for row in queued:
                c = _conversation(row._mapping)
                user = (c.key.team_id, c.user_id)
                if per_user[user] >= user_cap or per_team[c.key.team_id] >= workspace_cap:
                    continue
                started = replace(
                    c.to(State.RESEARCHING, owner=owner, progress_ts=None),
                    updated_at=now,
                    version=c.version + 1,
                )
                values = _changeable(started)
                await conn.execute(
                    update(table).where(*_is(c.key), table.c.version == c.version).values(**values)
                )
                per_user[user] += 1
                per_team[c.key.team_id] += 1
                admitted.append(started)
        return admitted

    async def queue_position(self, conversation: Conversation) -> int:
        async with self._db.read() as conn:
            query = select(func.count()).where(
                table.c.state == State.QUEUED.value,
                table.c.team_id == conversation.key.team_id,
                table.c.queued_at <= conversation.queued_at,
            )
            return int((await conn.execute(query)).scalar_one())


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
        "queued_at": c.queued_at,
        "owed": json.dumps(c.owed.to_json()) if c.owed is not None else None,
        "not_before": c.not_before,
    }


def _changeable(c: Conversation) -> dict[str, Any]:
    """The columns a save may change: not the thread's key, not the creation time."""
    values = _row(c)
    for column in ("team_id", "channel_id", "thread_ts", "created_at"):
        del values[column]
    return values


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
        queued_at=row["queued_at"],
        owed=Owed.from_json(json.loads(row["owed"])) if row["owed"] else None,
        not_before=row["not_before"],
    )
