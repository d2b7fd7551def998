"""The repositories the domain needs. storage/ implements them on SQLite and PostgreSQL; tests
may implement them in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.conversation import Conversation, ConversationKey, State
from bot.records import SettingsRow, StoredAnswer, Totals, UsageRecord


class Conversations(Protocol):
    async def get(self, key: ConversationKey) -> Conversation | None: ...

    async def create(
        self, conversation: Conversation, usage: Sequence[UsageRecord] = ()
    ) -> Conversation | None:
        """Insert a new conversation with its first calls' usage, in one transaction; returns
        it as stored, or None (and nothing written) if the thread has one already."""
        ...

    async def save(
        self, conversation: Conversation, usage: Sequence[UsageRecord] = ()
    ) -> Conversation:
        """Write the conversation and its calls' usage in one transaction; returns it as
        stored (new version). Raises StaleConversation if it changed since it was read."""
        ...

    async def in_state(self, state: State) -> list[Conversation]: ...


class UsageLedger(Protocol):
    async def record(self, usage: Sequence[UsageRecord]) -> None: ...

    async def records(self, team_id: str) -> list[UsageRecord]:
        """Every row of the workspace, oldest first."""
        ...

    async def by_model(self, team_id: str, since: float = 0.0) -> list[Totals]: ...

    async def top_users(self, team_id: str, since: float = 0.0, limit: int = 5) -> list[Totals]:
        """The users with the most tokens, most first."""
        ...

    async def tokens(self, team_id: str, since: float = 0.0) -> int:
        """Input plus output tokens of every call since `since`."""
        ...


class Answers(Protocol):
    async def add(self, answer: StoredAnswer) -> StoredAnswer: ...

    async def get(self, team_id: str, answer_id: str) -> StoredAnswer | None:
        """The answer, only if it belongs to the workspace asking for it."""
        ...

    async def follow_ups(self, key: ConversationKey, since: float = 0.0) -> list[StoredAnswer]:
        """The thread's follow-up answers created after `since`, oldest first."""
        ...


class WorkspaceSettingsRepository(Protocol):
    async def get(self, team_id: str) -> SettingsRow | None: ...

    async def put(self, row: SettingsRow) -> SettingsRow:
        """Insert or replace the workspace's row."""
        ...


class DeliveryClaims(Protocol):
    async def claim(self, key: str) -> bool:
        """True the first time `key` is claimed, by any process; False for every later claim."""
        ...
