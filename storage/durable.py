"""What keeps accepted work from being lost: the inbox of Slack events, process heartbeats,
the usage of calls still streaming, and questions kept while research runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import case, delete, func, insert, select, update

from bot.conversation import ConversationKey
from bot.ports import OrphanEvent
from bot.records import UsageRecord
from storage.database import Database
from storage.ledger import insert_usage, record_from_row, tokens_since, usage_values
from storage.tables import inbox, inflight_usage, kept_questions, pacing, processes, usage


class SqlInbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def accept(self, team_id: str, event_id: str, body: str, owner: str) -> bool:
        statement = (
            self._db.upsert(inbox)
            .values(
                team_id=team_id,
                event_id=event_id,
                body=body,
                owner=owner,
                received_at=time.time(),
                attempts=1,
            )
            .on_conflict_do_nothing()
            .returning(inbox.c.event_id)
        )
        # The acknowledgement waits for this write: it never queues behind run writes.
        async with self._db.write(urgent=True) as conn:
            return (await conn.execute(statement)).first() is not None

    async def commit(self) -> None:
        """Nothing to do: `accept` writes the table itself."""

    async def done(self, team_id: str, event_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                update(inbox)
                .where(inbox.c.team_id == team_id, inbox.c.event_id == event_id)
                .values(done_at=time.time())
            )

    async def take_orphans(
        self, owner: str, live: Sequence[str], limit: int = 100
    ) -> list[OrphanEvent]:
        async with self._db.write() as conn:
            rows = (
                await conn.execute(
                    update(inbox)
                    .where(inbox.c.done_at.is_(None), inbox.c.owner.not_in(list(live)))
                    .values(owner=owner, attempts=inbox.c.attempts + 1)
                    .returning(inbox.c.team_id, inbox.c.event_id, inbox.c.body, inbox.c.attempts)
                )
            ).all()
        return [OrphanEvent(*row) for row in rows[:limit]]

    async def prune(self, older_than: float) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                delete(inbox).where(inbox.c.done_at.is_not(None), inbox.c.done_at < older_than)
            )


class SqlProcesses:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def beat(self, process_id: str, *, draining: bool = False) -> None:
        now = time.time()
        statement = self._db.upsert(processes).values(
            id=process_id, started_at=now, heartbeat_at=now, draining=int(draining)
        )
        statement = statement.on_conflict_do_update(
            index_elements=[processes.c.id], set_={"heartbeat_at": now, "draining": int(draining)}
        )
        async with self._db.write() as conn:
            await conn.execute(statement)

    async def live(self, since: float) -> list[str]:
        async with self._db.read() as conn:
            query = select(processes.c.id).where(processes.c.heartbeat_at >= since)
            return list((await conn.execute(query)).scalars())

    async def leave(self, process_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(delete(processes).where(processes.c.id == process_id))
            # Rows of processes long gone, so the table stays small.
            await conn.execute(
                delete(processes).where(processes.c.heartbeat_at < time.time() - 86400)
            )


class SqlInflightUsage:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._flushes: dict[tuple[str, ...], Any] = {}

    def _flush_statement(self, columns: tuple[str, ...]) -> Any:
        """One statement for every call (executemany): a flush of hundreds of streaming calls
        holds the database for one round trip, not hundreds. Built once: building the
        upsert's `excluded` columns made hundreds of objects for the garbage collector on
        every flush (issue 13)."""
        statement = self._flushes.get(columns)
        if statement is None:
            upsert = self._db.upsert(inflight_usage)
            statement = upsert.on_conflict_do_update(
                index_elements=[inflight_usage.c.call_id],
                set_={
                    name: upsert.excluded[name]
                    for name in columns
                    if name not in ("call_id", "owner")
                },
            )
            self._flushes[columns] = statement
        return statement

    async def flush(self, owner: str, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        now = time.time()
        rows = []
        for record in records:
            values = {**usage_values(record, now), "owner": owner, "updated_at": now}
            del values["created_at"]
            rows.append(values)
        statement = self._flush_statement(tuple(rows[0]))
        async with self._db.write() as conn:
            await conn.execute(statement, rows)

    async def reserve(
        self,
        owner: str,
        draft: UsageRecord,
        estimate: int,
        *,
        limit: int | None,
        since: float,
    ) -> bool:
        now = time.time()
        live_tokens = inflight_usage.c.input_tokens + inflight_usage.c.output_tokens
        held = case(
            (inflight_usage.c.reserved_tokens > live_tokens, inflight_usage.c.reserved_tokens),
            else_=live_tokens,
        )
        async with self._db.write() as conn:
            await self._db.lock(conn, f"budget:{draft.team_id}")
            if limit is not None:
                used = (await conn.execute(tokens_since(draft.team_id, since))).scalar_one()
                reserved = (
                    await conn.execute(
                        select(func.coalesce(func.sum(held), 0)).where(
                            inflight_usage.c.team_id == draft.team_id
                        )
                    )
                ).scalar_one()
                if int(used) + int(reserved) >= limit:
                    return False
            values = {**usage_values(draft, now), "owner": owner, "updated_at": now}
            del values["created_at"]
            await conn.execute(insert(inflight_usage).values(**values, reserved_tokens=estimate))
        return True

    async def release(self, call_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(delete(inflight_usage).where(inflight_usage.c.call_id == call_id))

    async def settle(self, live: Sequence[str]) -> int:
        """Move the last figures of calls whose process died into the ledger (once each);
        drop rows of calls the ledger already has. Returns the number of calls recorded."""
        async with self._db.write() as conn:
            await conn.execute(
                delete(inflight_usage).where(
                    inflight_usage.c.call_id.in_(
                        select(usage.c.call_id).where(usage.c.call_id.is_not(None))
                    )
                )
            )
            rows = (
                await conn.execute(
                    delete(inflight_usage)
                    .where(inflight_usage.c.owner.not_in(list(live)))
                    .returning(
                        *[c for c in inflight_usage.c if c.name not in ("owner", "reserved_tokens")]
                    )
                )
            ).all()
            records = [record_from_row(row._mapping) for row in rows]
            # A call cut before it was sent cost nothing: its reservation just ends. One cut
            # after it was sent holds at least its prompt's tokens (`MeteredCall.sending`).
            records = [r for r in records if r.input_tokens or r.output_tokens]
            await insert_usage(conn, records)
        return len(records)


# An answered question keeps its row (without its text) this long: event replays come within
# minutes of the first delivery.
ANSWERED_RETENTION_SECONDS: Final = 24 * 3600
_ANSWERED: Final = ""
_WAITING = kept_questions.c.text != _ANSWERED


class SqlKeptQuestions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def keep(self, key: ConversationKey, user_id: str, text: str, ts: str = "") -> bool:
        statement = (
            self._db.upsert(kept_questions)
            .values(
                team_id=key.team_id,
                channel_id=key.channel_id,
                thread_ts=key.thread_ts,
                user_id=user_id,
                text=text,
                ts=ts or uuid.uuid4().hex,
                asked_at=time.time(),
            )
            .on_conflict_do_nothing()
            .returning(kept_questions.c.id)
        )
        async with self._db.write() as conn:
            return (await conn.execute(statement)).first() is not None

    async def pending(self, key: ConversationKey) -> list[tuple[int, str, str]]:
        """The thread's kept questions, oldest first: (id, user_id, text)."""
        async with self._db.read() as conn:
            query = (
                select(kept_questions.c.id, kept_questions.c.user_id, kept_questions.c.text)
                .where(*_thread(key), _WAITING)
                .order_by(kept_questions.c.id)
            )
            return [(int(i), u, t) for i, u, t in (await conn.execute(query)).all()]

    async def forget(self, question_id: int) -> None:
        # The row stays a while without its text, so a replay of the question's event (its
        # process died before marking it done) is known as answered (`was_kept`).
        async with self._db.write() as conn:
            await conn.execute(
                update(kept_questions)
                .where(kept_questions.c.id == question_id)
                .values(text=_ANSWERED)
            )
            expired = time.time() - ANSWERED_RETENTION_SECONDS
            await conn.execute(
                delete(kept_questions).where(
                    kept_questions.c.text == _ANSWERED, kept_questions.c.asked_at < expired
                )
            )

    async def was_kept(self, key: ConversationKey, ts: str) -> bool:
        async with self._db.read() as conn:
            query = select(kept_questions.c.id).where(*_thread(key), kept_questions.c.ts == ts)
            return (await conn.execute(query)).first() is not None

    async def threads(self) -> list[ConversationKey]:
        """Threads with questions waiting."""
        async with self._db.read() as conn:
            query = (
                select(
                    kept_questions.c.team_id,
                    kept_questions.c.channel_id,
                    kept_questions.c.thread_ts,
                )
                .where(_WAITING)
                .distinct()
            )
            return [ConversationKey(*row) for row in (await conn.execute(query)).all()]


def _thread(key: ConversationKey) -> tuple[Any, ...]:
    return (
        kept_questions.c.team_id == key.team_id,
        kept_questions.c.channel_id == key.channel_id,
        kept_questions.c.thread_ts == key.thread_ts,
    )


class SqlPacing:
    """Per-workspace token buckets for chat.update, shared by a fleet."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def take(self, team_id: str, *, rate: float, burst: float, now: float) -> bool:
        async with self._db.write() as conn:
            await self._db.lock(conn, f"pacing:{team_id}")
            row = (
                await conn.execute(
                    select(pacing.c.tokens, pacing.c.refilled_at).where(pacing.c.team_id == team_id)
                )
            ).first()
            tokens, last = (burst, now) if row is None else (row.tokens, row.refilled_at)
            tokens = min(burst, tokens + max(0.0, now - last) * rate)
            taken = tokens >= 1.0
            if taken:
                tokens -= 1.0
            statement = self._db.upsert(pacing).values(
                team_id=team_id, tokens=tokens, refilled_at=now
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[pacing.c.team_id],
                    set_={"tokens": tokens, "refilled_at": now},
                )
            )
        return taken
