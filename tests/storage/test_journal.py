"""SQLite's inbox journal (storage/journal.py): accepted means in the journal; moved into the
table before handling; what a killed process journaled is moved at the next start, what a
live one journals is left to it. SQLite only: PostgreSQL's inbox writes the table at once."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from bot.config import database_url as driver_url
from storage import Storage
from storage.journal import JOURNAL_SUFFIX, JournaledInbox
from storage.tables import inbox


def _url(tmp_path: Path) -> str:
    return driver_url(f"sqlite:///{tmp_path / 'bot.sqlite3'}")


def _journals(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("bot.sqlite3" + JOURNAL_SUFFIX + "*"))


async def _rows(storage: Storage) -> list[tuple[str, str, int]]:
    async with storage.database.read() as conn:
        result = await conn.execute(select(inbox.c.event_id, inbox.c.owner, inbox.c.attempts))
        return [tuple(row) for row in result.all()]  # type: ignore[misc]


async def test_an_event_is_accepted_once_journaled_then_moved(tmp_path: Path) -> None:
    storage = await Storage.open(_url(tmp_path))
    try:
        assert isinstance(storage.inbox, JournaledInbox)
        assert await storage.inbox.accept("T1", "Ev1", "{}", "p1")
        assert not await storage.inbox.accept("T1", "Ev1", "{}", "p1")  # a redelivery
        [journal] = _journals(tmp_path)
        assert json.loads(journal.read_text())["event_id"] == "Ev1"
        assert await _rows(storage) == []
        await storage.inbox.commit()
        assert await _rows(storage) == [("Ev1", "p1", 1)]
        assert journal.read_text() == ""  # emptied once everything was moved
        assert not await storage.inbox.accept("T1", "Ev1", "{}", "p1")  # known by the table
        assert await storage.inbox.accept("T2", "Ev1", "{}", "p1")  # another workspace's
    finally:
        await storage.close()
    # Closed with an event still journaled: the file stays for the next start.
    [journal] = _journals(tmp_path)
    [line] = journal.read_text().splitlines()
    assert (json.loads(line)["team_id"], json.loads(line)["event_id"]) == ("T2", "Ev1")


async def test_what_a_dead_process_journaled_is_taken_over_at_the_next_start(
    tmp_path: Path,
) -> None:
    first = await Storage.open(_url(tmp_path))
    assert await first.inbox.accept("T1", "Ev1", '{"a": 1}', "dead:1")
    await first.close()  # its lock goes, as with a killed process; the journal stays
    [journal] = _journals(tmp_path)
    with journal.open("a") as cut:
        cut.write('{"team_id": "T1", "event_id": "Ev2", "bo')  # a write cut by the kill
    second = await Storage.open(_url(tmp_path))
    try:
        assert await _rows(second) == [("Ev1", "dead:1", 1)]
        assert not journal.exists()
        [orphan] = await second.inbox.take_orphans("p2", live=["p2"])
        assert (orphan.event_id, orphan.body) == ("Ev1", '{"a": 1}')
    finally:
        await second.close()


async def test_a_live_process_keeps_its_journal(tmp_path: Path) -> None:
    running = await Storage.open(_url(tmp_path))
    try:
        assert await running.inbox.accept("T1", "Ev1", "{}", "old")
        starting = await Storage.open(_url(tmp_path))  # a deploy: the old one still drains
        try:
            assert await _rows(starting) == []
            await running.inbox.commit()  # the old process moves its own
            assert await _rows(starting) == [("Ev1", "old", 1)]
        finally:
            await starting.close()
    finally:
        await running.close()
    assert _journals(tmp_path) == []  # both closed with nothing pending: no file left
