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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

logger = logging.getLogger(__name__)

MIGRATIONS: Final = Path(__file__).parent / "migrations"
# Any fixed number: processes starting together on one PostgreSQL database take turns.
_MIGRATION_LOCK: Final = 7_411_902_731


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Connect to `url` (sqlite+aiosqlite:// or postgresql+asyncpg://) and bring its
        schema up to date."""
        engine = _engine(url)
        database = cls(engine)
        try:
            if migrate:
                await database.upgrade()
        except BaseException:
            await engine.dispose()
            raise
        return database

    async def close(self, grace: float = 5.0) -> None:
        """Close every connection, after giving the ones in use `grace` seconds to come back
        (a listener finishing its last query), so none is left open to the garbage collector."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while _checked_out(self.engine) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    def upsert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that takes on_conflict_do_nothing / on_conflict_do_update on either engine."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def upgrade(self) -> None:
        """Apply every migration not yet applied, in one transaction."""
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            await conn.run_sync(_upgrade)

    async def revision(self) -> str | None:
        """The schema's migration revision, or None for a database never migrated."""
        async with self.read() as conn:
            return await conn.run_sync(_current_revision)


def _checked_out(engine: AsyncEngine) -> int:
    checkedout = getattr(engine.pool, "checkedout", None)
    return int(checkedout()) if callable(checkedout) else 0


def _engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(parsed, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_config(connection), "head")


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
