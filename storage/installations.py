"""slack_sdk's own SQLAlchemy installation and OAuth state stores, on the bot's database.

slack_sdk ships async SQLAlchemy stores (AsyncSQLAlchemyInstallationStore,
AsyncSQLAlchemyOAuthStateStore) that Bolt's OAuth flow and `authorize` use as they are; nothing
of their logic is rewritten here. They are handed the bot's Database instead of a bare engine:
they only ever call `engine.begin()` (a write) and `engine.connect()` (a read), and going
through Database makes their writes take their turn on SQLite (one writer at a time, the
write lock taken at the start, so a read-then-write transaction never meets
SQLITE_BUSY_SNAPSHOT) like every other write of the bot. The tables come from migration 0004.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final, cast

from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.database import Database

# How long an "Add to Slack" link stays good: Slack's consent screen, then back to us.
STATE_SECONDS: Final = 600


class _DatabaseAsEngine:
    """The two AsyncEngine methods slack_sdk's stores use, through Database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self._db.write() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        async with self._db.read() as conn:
            yield conn


def installation_store(db: Database, client_id: str) -> AsyncSQLAlchemyInstallationStore:
    return AsyncSQLAlchemyInstallationStore(
        client_id=client_id, engine=cast(AsyncEngine, _DatabaseAsEngine(db))
    )


def oauth_state_store(db: Database) -> AsyncSQLAlchemyOAuthStateStore:
    return AsyncSQLAlchemyOAuthStateStore(
        expiration_seconds=STATE_SECONDS, engine=cast(AsyncEngine, _DatabaseAsEngine(db))
    )
