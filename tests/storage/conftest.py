"""The storage contract: every test here runs on SQLite and on PostgreSQL (`database_url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from bot.config import database_url as driver_url
from storage import Storage


@pytest.fixture
def url(database_url: str) -> str:
    """The test's database, with the driver Storage.open needs."""
    return driver_url(database_url)


@pytest.fixture
async def storage(url: str) -> AsyncIterator[Storage]:
    opened = await Storage.open(url)
    try:
        yield opened
    finally:
        await opened.close()


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


async def count(storage: Storage, table: Table, *where: Any) -> int:
    """Rows of `table` as the database has them, read past the repositories."""
    async with storage.database.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )
