"""Another research round in a finished thread, through ResearchService's public entry points."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from bot.research import ResearchService
from bot.rounds import ReplyRounds
from storage.models import Conversation, ConversationKey, State
from storage.sqlite import Store

KEY = ConversationKey("T1", "C1", "1.000001")
HISTORY = (
    {"role": "user", "content": "topic"},
    {"role": "assistant", "content": "which aspect?"},
    {"role": "user", "content": "this one"},
    {"role": "assistant", "content": "# Report"},
)
FOLLOW_UPS = [
    {"role": "user", "content": "costs?"},
    {"role": "assistant", "content": "modest"},
]


class FakeResearch:
    """Records replies; `starts` decides whether a reply starts research or is refused."""

    def __init__(self, store: Store, *, starts: bool) -> None:
        self.store = store
        self.starts = starts
        self.replies: list[tuple[ConversationKey, str, str, Conversation | None]] = []

    async def reply(self, key: ConversationKey, user_id: str, text: str) -> None:
        conversation = await self.store.get(key)
        self.replies.append((key, user_id, text, conversation))
        if self.starts and conversation is not None:
            history = (*conversation.history, {"role": "user", "content": text})
            await self.store.save(
                Conversation(
                    key=key,
                    user_id=conversation.user_id,
                    state=State.RESEARCHING,
                    model=conversation.model,
                    history=history,
                )
            )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "rounds.sqlite3")
    try:
        await store.create(
            Conversation(KEY, "UUSER", State.DONE, "qwen-deep-research", HISTORY, report="# R")
        )
        yield store
    finally:
        await store.close()


def rounds(store: Store, research: FakeResearch) -> ReplyRounds:
    return ReplyRounds(store, lambda: cast(ResearchService, cast(Any, research)))


async def test_starts_a_round_with_the_follow_ups_in_the_history(store: Store) -> None:
    research = FakeResearch(store, starts=True)
    assert await rounds(store, research)(KEY, "UBEN", FOLLOW_UPS, "dig deeper")
    [(key, user, text, seen)] = research.replies
    assert (key, user, text) == (KEY, "UBEN", "dig deeper")
    assert seen is not None and seen.state is State.AWAITING_CLARIFICATION
    assert seen.history == (*HISTORY, *FOLLOW_UPS)
    after = await store.get(KEY)
    assert after is not None and after.state is State.RESEARCHING
    # A second press while that round runs starts nothing.
    assert not await rounds(store, research)(KEY, "UBEN", FOLLOW_UPS, "dig deeper")
    assert len(research.replies) == 1


async def test_a_refused_round_leaves_the_thread_done(store: Store) -> None:
    research = FakeResearch(store, starts=False)
    assert await rounds(store, research)(KEY, "UBEN", FOLLOW_UPS, "dig deeper")
    after = await store.get(KEY)
    assert after is not None and after.state is State.DONE
    assert after.history == (*HISTORY, *FOLLOW_UPS)


async def test_no_conversation_no_round(store: Store) -> None:
    research = FakeResearch(store, starts=True)
    other = ConversationKey("T1", "C1", "9.000009")
    assert not await rounds(store, research)(other, "UBEN", FOLLOW_UPS, "dig deeper")
    assert research.replies == []
