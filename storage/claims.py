"""Keys of Slack deliveries already handled (message timestamps), shared by every process on
the database."""

from __future__ import annotations

import time
from typing import Final

from sqlalchemy import delete, select

from storage.database import Database
from storage.tables import claims as table

# Claims only guard against Slack redeliveries, which come within minutes.
CLAIM_RETENTION_SECONDS: Final = 24 * 3600


class SqlClaims:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, key: str, holder: str = "") -> bool:
        now = time.time()
        statement = (
            self._db.upsert(table)
            .values(key=key, claimed_at=now, holder=holder)
            .on_conflict_do_nothing()
            .returning(table.c.key)
        )
        async with self._db.write() as conn:
            claimed = (await conn.execute(statement)).first() is not None
            expired = now - CLAIM_RETENTION_SECONDS
            await conn.execute(delete(table).where(table.c.claimed_at < expired))
        if claimed or not holder:
            return claimed
        async with self._db.read() as conn:
            query = select(table.c.holder).where(table.c.key == key)
            return (await conn.execute(query)).scalar_one_or_none() == holder
