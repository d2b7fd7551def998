"""The repositories the domain needs. storage/ implements them on SQLite and PostgreSQL; tests
may implement them in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.conversation import Conversation, ConversationKey, Owed, State
from bot.feedback import Feedback, FeedbackShare
from bot.records import SettingsRow, StoredAnswer, Totals, UsageRecord, WorkspaceRecord


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

    async def count_in_state(self, state: State) -> int: ...

    async def admit(
        self, owner: str, *, user_cap: int, workspace_cap: int, now: float
    ) -> list[Conversation]:
        """Move queued conversations (oldest first, throttled ones once `now` passed their
        wait) into research while their user and workspace run fewer than the caps, fleet
        wide; returns those admitted, now owned by `owner`."""
        ...

    async def queue_position(self, conversation: Conversation) -> int:
        """1 for the first in its workspace's queue."""
        ...

    async def take_orphan_deliveries(self, owner: str, live: Sequence[str]) -> list[Conversation]:
        """Conversations owing their thread a post whose process is not `live`, now owned
        by `owner`."""
        ...

    async def settle_owed(
        self, key: ConversationKey, marker: str, owed: Owed | None, *, release: bool = True
    ) -> None:
        """Replace the delivery `marker` (if still owed) by `owed`: None when Slack accepted
        it or it was given up, a copy with more attempts when it is to be tried again, a copy
        noting what a delivery under way has made (`release` False: its process keeps the
        conversation, so no other process takes the delivery meanwhile). Does not disturb
        other changes made meanwhile."""
        ...

    async def owned_runs(self, owner: str) -> set[ConversationKey]:
        """Conversations researching under `owner` (one query, however many)."""
        ...

    async def take_orphan_runs(self, owner: str, live: Sequence[str]) -> list[Conversation]:
        """Researching conversations whose owner is not among the `live` processes, now
        owned by `owner` (saved, so a second taker finds them taken)."""
        ...


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


class FeedbackRatings(Protocol):
    async def record(self, feedback: Feedback) -> None:
        """Keep the rating, replacing the same person's earlier rating of the message."""
        ...

    async def shares(self, team_id: str, since: float) -> list[FeedbackShare]:
        """Ratings given or changed since `since`, per model and kind."""
        ...


class Languages(Protocol):
    """Which language each person reads ("en", "zh", "ja"): the Slack glue knows."""

    def note_starter(self, key: ConversationKey, user_id: str) -> None: ...

    async def of_thread(self, key: ConversationKey, default_user: str = "") -> str:
        """The language of the person who started the thread's conversation (of
        `default_user` when the thread has none)."""
        ...

    async def language(self, user_id: str, team_id: str) -> str:
        """`team_id`: the person's workspace, whose token looks them up (with many
        workspaces, another workspace's token cannot)."""
        ...


class DeliveryClaims(Protocol):
    async def claim(self, key: str, holder: str = "") -> bool:
        """True the first time `key` is claimed, by any process, and again for the same
        non-empty `holder` (a replay of the event that claimed it); False otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class OrphanEvent:
    """An accepted Slack event whose process died before handling it."""

    team_id: str
    event_id: str
    body: str  # the event_callback as Slack sent it (JSON)
    attempts: int


class Inbox(Protocol):
    """Every Slack event the bot acknowledges, recorded before the acknowledgement."""

    async def accept(self, team_id: str, event_id: str, body: str, owner: str) -> bool:
        """Record the event for `owner`; False (nothing written) if it was recorded before.
        Called from the acknowledgement front's thread."""
        ...

    async def commit(self) -> None:
        """What `accept` recorded is in the inbox table once this returns (events are
        handled only after it: `done` and a takeover work on the table)."""
        ...

    async def done(self, team_id: str, event_id: str) -> None: ...

    async def take_orphans(
        self, owner: str, live: Sequence[str], limit: int = 100
    ) -> list[OrphanEvent]:
        """Events not done whose owner is not among the `live` processes, now `owner`'s."""
        ...


class Processes(Protocol):
    """Running bot processes and their heartbeats: the leases on the work they own."""

    async def beat(self, process_id: str, *, draining: bool = False) -> None: ...

    async def live(self, since: float) -> list[str]:
        """Processes whose last heartbeat is at or after `since`."""
        ...

    async def leave(self, process_id: str) -> None: ...


class InflightUsage(Protocol):
    """The last cumulative usage of calls still streaming."""

    async def reserve(
        self,
        owner: str,
        draft: UsageRecord,
        estimate: int,
        *,
        limit: int | None,
        since: float,
    ) -> bool:
        """Start tracking call `draft.call_id`, holding `estimate` tokens of the workspace's
        budget until its usage is recorded. False (nothing written) if the workspace's usage
        since `since` plus what running calls hold has reached `limit`."""
        ...

    async def flush(self, owner: str, records: Sequence[UsageRecord]) -> None: ...

    async def release(self, call_id: str) -> None:
        """Stop tracking a call that ended without usage (nothing was charged)."""
        ...

    async def settle(self, live: Sequence[str]) -> int:
        """Record in the ledger the calls of processes not `live`; returns how many."""
        ...


class KeptQuestions(Protocol):
    """Questions asked in a thread while its research ran, answered after the report."""

    async def keep(self, key: ConversationKey, user_id: str, text: str, ts: str = "") -> bool:
        """Keep the question of message `ts`; False if that message was kept before."""
        ...

    async def pending(self, key: ConversationKey) -> list[tuple[int, str, str]]:
        """(id, user_id, text), oldest first."""
        ...

    async def forget(self, question_id: int) -> None:
        """The question was answered (or could not be): it is no longer pending."""
        ...

    async def was_kept(self, key: ConversationKey, ts: str) -> bool:
        """Whether message `ts` was kept (pending or answered, for a day at least)."""
        ...

    async def threads(self) -> list[ConversationKey]: ...


class Workspaces(Protocol):
    """The workspaces that installed the bot (multi-workspace mode) and their uninstalls."""

    async def installed(self, record: WorkspaceRecord) -> None:
        """Insert or refresh the workspace; a reinstall clears its uninstall and deletion."""
        ...

    async def get(self, team_id: str) -> WorkspaceRecord | None: ...

    async def all(self) -> list[WorkspaceRecord]: ...

    async def of_enterprise(self, enterprise_id: str) -> list[WorkspaceRecord]: ...

    async def uninstalled(self, team_id: str, *, at: float, purge_at: float) -> None: ...

    async def due(self, now: float) -> list[str]:
        """Uninstalled workspaces whose content is due for deletion."""
        ...

    async def purge(self, team_id: str) -> None:
        """Delete the workspace's conversations, answers, settings and pending work, and
        reduce its usage ledger to anonymous totals (per model, kind and month), in one
        transaction."""
        ...


class WorkspaceKeys(Protocol):
    """Each workspace's own Model Studio key, only ever as ciphertext."""

    async def get(self, team_id: str) -> str | None: ...

    async def put(self, team_id: str, sealed: str, updated_by: str) -> None: ...

    async def forget_key(self, team_id: str) -> None: ...

    async def forget_secrets(self, team_id: str) -> None:
        """Delete the workspace's model key and its MCP bearer token."""
        ...
