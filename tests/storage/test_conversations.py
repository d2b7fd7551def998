"""storage/conversations.py: conversations by thread, saved with their calls' usage in one
transaction, on both engines."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import pytest
from sqlalchemy.exc import IntegrityError

from bot.conversation import REPORT, ConversationKey, Owed, StaleConversation, State
from bot.research_options import SUMMARY, ResearchOptions
from storage import Storage
from storage.tables import usage as usage_table
from tests.storage.conftest import count
from tests.storage.data import HISTORY, IMAGE, KEY, REFERENCES, conversation, usage


async def test_create_then_get_round_trips_the_conversation(storage: Storage) -> None:
    original = conversation(
        report="# Report",
        references=REFERENCES,
        progress_ts="171.0002",
        options=ResearchOptions(output_format=SUMMARY, clarify=False, model="qwen-x"),
    )
    stored = await storage.conversations.create(original)
    assert stored is not None
    assert stored.version == 1
    assert stored.created_at > 0
    assert stored.updated_at == stored.created_at
    assert replace(stored, created_at=0.0, updated_at=0.0, version=0) == original
    loaded = await storage.conversations.get(KEY)
    assert loaded == stored
    assert loaded is not None
    assert loaded.options == ResearchOptions(output_format=SUMMARY, clarify=False, model="qwen-x")
    assert loaded.history[0]["content"] == [{"image": IMAGE}, {"text": "Research this chart"}]


async def test_options_left_unsaid_stay_unsaid(storage: Storage) -> None:
    await storage.conversations.create(conversation())
    loaded = await storage.conversations.get(KEY)
    assert loaded is not None
    assert loaded.options == ResearchOptions()
    assert loaded.options.clarify is None  # "not said", not False


async def test_get_of_an_unknown_thread_is_none(storage: Storage) -> None:
    assert await storage.conversations.get(KEY) is None


async def test_create_twice_returns_none_and_keeps_the_first(storage: Storage) -> None:
    first = await storage.conversations.create(conversation(user_id="U1"))
    assert first is not None
    assert await storage.conversations.create(conversation(user_id="U2", state=State.DONE)) is None
    loaded = await storage.conversations.get(KEY)
    assert loaded == first
    assert loaded is not None
    assert loaded.user_id == "U1"
    assert loaded.state is State.AWAITING_CLARIFICATION


async def test_a_create_that_finds_the_thread_taken_writes_no_usage(storage: Storage) -> None:
    assert await storage.conversations.create(conversation(), [usage(input_tokens=1)])
    assert await storage.conversations.create(conversation(), [usage(input_tokens=2)]) is None
    assert [u.input_tokens for u in await storage.ledger.records("T1")] == [1]
    assert await count(storage, usage_table) == 1


async def test_save_round_trips_the_new_state_across_a_reopen(storage: Storage, url: str) -> None:
    created = await storage.conversations.create(conversation())
    assert created is not None
    history = (*HISTORY, {"role": "assistant", "content": "Here is the report."})
    queued = await storage.conversations.save(created.to(State.QUEUED))
    researching = await storage.conversations.save(queued.to(State.RESEARCHING))
    done = await storage.conversations.save(
        researching.to(State.DONE, history=history, report="# Final\n\nText", references=REFERENCES)
    )
    await storage.close()
    reopened = await Storage.open(url)
    try:
        loaded = await reopened.conversations.get(KEY)
    finally:
        await reopened.close()
    assert loaded == done
    assert loaded is not None
    assert loaded.state is State.DONE
    assert loaded.history == history
    assert loaded.report == "# Final\n\nText"
    assert loaded.references == REFERENCES
    assert loaded.version == 4


async def test_save_keeps_the_creation_time_and_bumps_the_version(storage: Storage) -> None:
    created = await storage.conversations.create(conversation())
    assert created is not None
    saved = await storage.conversations.save(created.to(State.QUEUED))
    assert saved.version == created.version + 1
    loaded = await storage.conversations.get(KEY)
    assert loaded == saved
    assert loaded is not None
    assert loaded.created_at == created.created_at
    assert loaded.updated_at == saved.updated_at >= created.updated_at


async def test_save_writes_its_usage_rows(storage: Storage) -> None:
    created = await storage.conversations.create(conversation(state=State.RESEARCHING))
    assert created is not None
    records = [usage(input_tokens=10, output_tokens=5), usage(input_tokens=20, output_tokens=7)]
    await storage.conversations.save(created.to(State.DONE), records)
    loaded = await storage.conversations.get(KEY)
    assert loaded is not None
    assert loaded.state is State.DONE
    assert [(u.input_tokens, u.output_tokens) for u in await storage.ledger.records("T1")] == [
        (10, 5),
        (20, 7),
    ]


async def test_a_stale_save_writes_neither_the_conversation_nor_its_usage(
    storage: Storage,
) -> None:
    created = await storage.conversations.create(conversation(), [usage(input_tokens=1)])
    assert created is not None
    winner = await storage.conversations.save(created.to(State.QUEUED), [usage(input_tokens=2)])
    with pytest.raises(StaleConversation):
        await storage.conversations.save(
            created.to(State.FAILED, report="lost"), [usage(input_tokens=3)]
        )
    assert await storage.conversations.get(KEY) == winner
    assert [u.input_tokens for u in await storage.ledger.records("T1")] == [1, 2]
    assert await count(storage, usage_table) == 2


async def test_saving_a_conversation_never_created_is_stale(storage: Storage) -> None:
    with pytest.raises(StaleConversation):
        await storage.conversations.save(conversation(), [usage()])
    assert await storage.conversations.get(KEY) is None
    assert await count(storage, usage_table) == 0


async def test_failed_usage_insert_rolls_back_the_conversation_update(storage: Storage) -> None:
    created = await storage.conversations.create(conversation(), [usage(input_tokens=1)])
    assert created is not None
    broken = replace(usage(), model=cast(str, None))  # usage.model is NOT NULL
    with pytest.raises(IntegrityError):
        await storage.conversations.save(
            created.to(State.QUEUED, report="lost"), [usage(input_tokens=2), broken]
        )
    loaded = await storage.conversations.get(KEY)
    assert loaded == created
    assert loaded is not None
    assert loaded.state is State.AWAITING_CLARIFICATION
    assert loaded.report is None
    assert loaded.version == 1
    assert [u.input_tokens for u in await storage.ledger.records("T1")] == [1]


async def test_failed_usage_insert_rolls_back_the_create(storage: Storage) -> None:
    broken = replace(usage(), model=cast(str, None))
    with pytest.raises(IntegrityError):
        await storage.conversations.create(conversation(), [usage(input_tokens=1), broken])
    assert await storage.conversations.get(KEY) is None
    assert await count(storage, usage_table) == 0


async def test_storage_still_works_after_a_rolled_back_save(storage: Storage) -> None:
    created = await storage.conversations.create(conversation())
    assert created is not None
    broken = replace(usage(), model=cast(str, None))
    with pytest.raises(IntegrityError):
        await storage.conversations.save(created.to(State.QUEUED), [broken])
    await storage.conversations.save(created.to(State.FAILED), [usage(input_tokens=3)])
    loaded = await storage.conversations.get(KEY)
    assert loaded is not None
    assert loaded.state is State.FAILED
    assert [u.input_tokens for u in await storage.ledger.records("T1")] == [3]


async def test_same_thread_under_another_team_is_another_conversation(storage: Storage) -> None:
    other = ConversationKey("T2", KEY.channel_id, KEY.thread_ts)
    assert await storage.conversations.create(conversation(KEY, user_id="U1")) is not None
    theirs_created = await storage.conversations.create(conversation(other, user_id="U9"))
    assert theirs_created is not None
    await storage.conversations.save(theirs_created.to(State.FAILED))
    mine = await storage.conversations.get(KEY)
    theirs = await storage.conversations.get(other)
    assert mine is not None
    assert theirs is not None
    assert (mine.user_id, mine.state, mine.version) == ("U1", State.AWAITING_CLARIFICATION, 1)
    assert (theirs.user_id, theirs.state, theirs.version) == ("U9", State.FAILED, 2)


async def test_in_state_lists_only_conversations_in_that_state(storage: Storage) -> None:
    running = [ConversationKey("T1", "C1", f"1.{i}") for i in range(3)]
    for key in running:
        await storage.conversations.create(conversation(key, state=State.RESEARCHING))
    await storage.conversations.create(
        conversation(ConversationKey("T1", "C1", "2.0"), state=State.DONE)
    )
    found = await storage.conversations.in_state(State.RESEARCHING)
    assert sorted(c.key.thread_ts for c in found) == ["1.0", "1.1", "1.2"]
    assert all(c.state is State.RESEARCHING and c.version == 1 for c in found)
    assert await storage.conversations.in_state(State.INTERRUPTED) == []


async def test_a_delivery_notes_its_canvas_and_keeps_its_process(storage: Storage) -> None:
    """The canvas a delivery made is kept with what the thread is owed, while the delivering
    process holds on to it; settled, the delivery is free for any process to try again."""
    owed = Owed(REPORT, "marker1", stats={"input_tokens": 3})
    await storage.conversations.create(conversation(owner="P1", owed=owed))
    with_canvas = replace(owed, canvas="F0CANVAS")
    await storage.conversations.settle_owed(KEY, "marker1", with_canvas, release=False)
    loaded = await storage.conversations.get(KEY)
    assert loaded is not None and loaded.owed == with_canvas and loaded.owner == "P1"
    assert await storage.conversations.take_orphan_deliveries("P2", ["P1", "P2"]) == []

    await storage.conversations.settle_owed(KEY, "marker1", replace(with_canvas, attempts=1))
    [taken] = await storage.conversations.take_orphan_deliveries("P2", ["P1", "P2"])
    assert taken.owner == "P2" and taken.owed is not None and taken.owed.canvas == "F0CANVAS"
    # Another marker (something newer is owed) changes nothing.
    await storage.conversations.settle_owed(KEY, "other", None)
    assert (await storage.conversations.get(KEY)).owed is not None  # type: ignore[union-attr]
