"""storage/database.py: opening a database brings its schema to the latest migration."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from bot.config import database_url as driver_url
from storage import Storage
from storage.database import MIGRATIONS, Database


def head() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


async def test_open_creates_the_sqlite_file_and_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "bot.sqlite3"
    storage = await Storage.open(driver_url(f"sqlite:///{path}"))
    try:
        assert path.is_file()
        assert await storage.database.revision() == head()
    finally:
        await storage.close()


async def test_a_new_database_is_migrated_to_the_head(storage: Storage) -> None:
    assert head() is not None
    assert await storage.database.revision() == head()


async def test_a_database_never_migrated_has_no_revision(url: str) -> None:
    database = await Database.open(url, migrate=False)
    try:
        assert await database.revision() is None
        await database.upgrade()
        assert await database.revision() == head()
    finally:
        await database.close()
