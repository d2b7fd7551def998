"""One SQLAlchemy async engine on SQLite (aiosqlite) or PostgreSQL (asyncpg), with migrations
applied when it opens.

SQLite is one process: writes are serialised in-process so they never meet SQLITE_BUSY, and
readers run beside them under WAL. PostgreSQL is any number of processes: each write is one
transaction and concurrent writers are kept apart by the database (versions, upserts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Table, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.dialects import postgresql, sqlite

logger = logging.getLogger(__name__)

MIGRATIONS: Final = Path(__file__).parent / "migrations"
# This release's latest migration (tests/test_migrations.py checks it against Alembic's). A
# database already there starts without Alembic, which takes 0.1-0.2 s to import (issue 13).
SCHEMA_HEAD: Final = "0005"
# Any fixed number: processes starting together on one PostgreSQL database take turns.
_MIGRATION_LOCK: Final = 7_411_902_731
_SETTLE_SECONDS: Final = 0.05


class StorageError(Exception):
    """The database cannot be opened; the message says which and why, for the operator."""


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    current: str | None  # None: never migrated (a new or a pre-migrations database)
    head: str  # this release's latest revision
    pending: tuple[str, ...]  # revisions the next start applies, oldest first
    unknown: bool = False  # `current` is not one of this release's (a newer release wrote it)


class Database:
    def __init__(self, engine: AsyncEngine, urgent: AsyncEngine) -> None:
        self.engine = engine
        self._urgent = urgent
        self.dialect: str = engine.dialect.name
        # SQLite takes one writer at a time. Its own busy-waiting would let an acknowledgement
        # starve behind a stream of run writes, so this process hands out the turns itself,
        # acknowledgements first.
        self._turns = WriterTurns() if self.dialect == "sqlite" else None
        # Connections in use, so close() can wait for the last query of a listener.
        self._in_use = 0
        self._idle = asyncio.Event()
        self._idle.set()
        event.listen(engine.sync_engine, "checkout", self._checked_out)
        event.listen(engine.sync_engine, "checkin", self._checked_in)

    def _checked_out(self, *_: Any) -> None:
        self._in_use += 1
        self._idle.clear()

    def _checked_in(self, *_: Any) -> None:
        self._in_use = max(0, self._in_use - 1)
        if self._in_use == 0:
            self._idle.set()

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Connect to `url` (sqlite+aiosqlite:// or postgresql+asyncpg://) and bring its
        schema up to date."""
        engine = _engine(url)
        database = cls(engine, _engine(url, urgent=True))
        try:
            if migrate:
                await database.upgrade()
        except (OSError, DBAPIError) as exc:
            await database.close(grace=0)
            reason = getattr(exc, "orig", None) or exc
            where = make_url(url).render_as_string(hide_password=True)
            raise StorageError(f"Cannot open the database at {where}: {reason}") from exc
        except BaseException:
            await database.close(grace=0)
            raise
        return database

    async def close(self, grace: float = 5.0) -> None:
        """Close every connection, after giving the ones in use `grace` seconds to come back
        (a listener finishing its last query), so none is left open to the garbage collector."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), deadline - loop.time())
            # A listener already past its ack may be about to query: let it start, then wait
            # for it too.
            await asyncio.sleep(_SETTLE_SECONDS)
            if self._idle.is_set():
                break
        await self.engine.dispose()
        await self._urgent.dispose()

    async def close_urgent(self) -> None:
        """Close the urgent writes' connections, on the event loop that used them (the
        acknowledgement front's: an asyncpg connection belongs to its loop)."""
        await self._urgent.dispose()

    @contextlib.asynccontextmanager
    async def write(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        `urgent` writes (what an acknowledgement waits for) go through connections of their
        own, used from the acknowledgement front's event loop, and, on SQLite, before any
        other writer waiting, so they never queue behind the writes of running research."""
        engine = self._urgent if urgent else self.engine
        if self._turns is None:
            async with engine.begin() as conn:
                yield conn
            return
        async with self._turns.turn(urgent=urgent), engine.begin() as conn:
            # Take the write lock at once: a transaction that read first and wrote later
            # would fail (SQLITE_BUSY_SNAPSHOT) if the other connection wrote in between.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    def upsert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that takes on_conflict_do_nothing / on_conflict_do_update on either engine."""
        return insert_for(self.dialect)(table)

    async def put(self, table: Table, key: str, values: dict[str, Any]) -> None:
        """Insert the row, or replace the one whose `key` column holds the same value."""
        statement = self.upsert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={k: v for k, v in values.items() if k != key},
        )
        async with self.write() as conn:
            await conn.execute(statement)

    async def lock(self, conn: AsyncConnection, name: str) -> None:
        """Serialise transactions about `name` across processes (PostgreSQL; one SQLite
        process serialises its writes already)."""
        if self.dialect == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name}
            )

    async def upgrade(self) -> None:
        """Apply every migration not yet applied, in one transaction."""
        if await self.revision() == SCHEMA_HEAD:
            return
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            before = await conn.run_sync(_current_revision)
            await conn.run_sync(_upgrade)
            after = await conn.run_sync(_current_revision)
        if before != after:
            logger.info("database schema upgraded from %s to %s", before or "nothing", after)

    async def ping(self) -> None:
        """One trivial query: raises if the database does not answer."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def schema(self) -> SchemaStatus:
        """Where the schema stands against this release's migrations."""
        current = await self.revision()
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(_config(None))
        # Oldest first: base ... head.
        order = [rev.revision for rev in reversed(list(script.walk_revisions()))]
        if current is None:
            pending = tuple(order)
        elif current in order:
            pending = tuple(order[order.index(current) + 1 :])
        else:
            return SchemaStatus(current, order[-1], (), unknown=True)
        return SchemaStatus(current, order[-1], pending)

    async def revision(self) -> str | None:
        """The schema's migration revision, or None for a database never migrated."""
        async with self.read() as conn:
            # Alembic's own table, read without Alembic.
            try:
                found = await conn.execute(text("SELECT version_num FROM alembic_version"))
            except DBAPIError:
                return None  # no such table: never migrated
            versions = [str(row[0]) for row in found.all()]
        return versions[0] if len(versions) == 1 else None


def insert_for(dialect: str) -> Any:
    """The dialect's INSERT with its upsert clauses. Imported when first needed: SQLAlchemy's
    PostgreSQL dialect takes 40-50 ms to import, which a bot on SQLite never needs."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


class WriterTurns:
    """One writer at a time, in arrival order, except that urgent writers go before the
    others waiting."""

    def __init__(self) -> None:
        self._busy = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def turn(self, *, urgent: bool) -> AsyncIterator[None]:
        if self._busy or self._urgent or (not urgent and self._normal):
            waiter = asyncio.get_running_loop().create_future()
            queue = self._urgent if urgent else self._normal
            queue.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed the turn just as it was cancelled: pass it on
                else:
                    with contextlib.suppress(ValueError):
                        queue.remove(waiter)
                raise
        else:
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the turn passes on; still busy
                    return
        self._busy = False


def _engine(url: str, *, urgent: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            parsed, connect_args={"timeout": 30}, pool_size=1 if urgent else 5
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if urgent:
        return create_async_engine(parsed, pool_size=2, max_overflow=2, pool_pre_ping=True)
    return create_async_engine(parsed, pool_size=5, max_overflow=10, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _config(connection: Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    from alembic import command

    command.upgrade(_config(connection), "head")


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
