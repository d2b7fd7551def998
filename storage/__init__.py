"""The domain's repositories (bot/ports.py) on SQLite or PostgreSQL, chosen by DATABASE_URL."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import make_url

from bot.ports import Inbox
from storage.answers import SqlAnswers
from storage.claims import SqlClaims
from storage.conversations import SqlConversations
from storage.database import Database
from storage.durable import (
    SqlInbox,
    SqlInflightUsage,
    SqlKeptQuestions,
    SqlPacing,
    SqlProcesses,
)
from storage.feedback import SqlFeedback
from storage.journal import JournaledInbox
from storage.ledger import SqlUsageLedger
from storage.workspace_settings import SqlWorkspaceSettings
from storage.workspaces import SqlWorkspaceKeys, SqlWorkspaces


@dataclass(frozen=True, slots=True)
class Storage:
    database: Database
    conversations: SqlConversations
    ledger: SqlUsageLedger
    answers: SqlAnswers
    settings: SqlWorkspaceSettings
    claims: SqlClaims
    inbox: Inbox
    processes: SqlProcesses
    inflight: SqlInflightUsage
    kept: SqlKeptQuestions
    pacing: SqlPacing
    workspaces: SqlWorkspaces
    workspace_keys: SqlWorkspaceKeys
    feedback: SqlFeedback

    @classmethod
    async def open(cls, url: str) -> Storage:
        """Connect and apply pending migrations."""
        db = await Database.open(url)
        try:
            inbox = await _inbox(db, url)
        except BaseException:
            await db.close(grace=0)
            raise
        return cls(
            database=db,
            conversations=SqlConversations(db),
            ledger=SqlUsageLedger(db),
            answers=SqlAnswers(db),
            settings=SqlWorkspaceSettings(db),
            claims=SqlClaims(db),
            inbox=inbox,
            processes=SqlProcesses(db),
            inflight=SqlInflightUsage(db),
            kept=SqlKeptQuestions(db),
            pacing=SqlPacing(db),
            workspaces=SqlWorkspaces(db),
            workspace_keys=SqlWorkspaceKeys(db),
            feedback=SqlFeedback(db),
        )

    async def close(self) -> None:
        if isinstance(self.inbox, JournaledInbox):
            self.inbox.close()
        await self.database.close()


async def _inbox(db: Database, url: str) -> Inbox:
    """On a SQLite file, accepted events go through a journal beside it (storage/journal.py);
    what a killed process left there is moved into the table now."""
    table = SqlInbox(db)
    parsed = make_url(url)
    if db.dialect != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return table
    inbox = JournaledInbox(db, table, parsed.database)
    await inbox.recover()
    return inbox
