"""storage/sqlite.py: the Store on a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from bot.conversation import Conversation, ConversationKey, State, UsageRecord
from storage.sqlite import Store
from storage.usage_queries import UsageQueries

KEY = ConversationKey("T1", "C1", "1700000000.000100")
IMAGE = "data:image/png;base64,iVBORw0KGgo="
HISTORY: tuple[dict[str, Any], ...] = (
    {"role": "user", "content": [{"image": IMAGE}, {"text": "Research this chart"}]},
    {"role": "assistant", "content": "Which years should I cover? ¿Años?"},
    {"role": "user", "content": "2010 to 2024"},
)
REFERENCES: tuple[dict[str, Any], ...] = (
    {"index": 1, "title": "Chart source", "url": "https://example.org/chart"},
)


def conversation(key: ConversationKey = KEY, **changes: Any) -> Conversation:
    base = Conversation(
        key=key,
        user_id="U1",
        state=State.AWAITING_CLARIFICATION,
        model="qwen-deep-research",
        history=HISTORY,
    )
    return replace(base, **changes)


def usage(
    team_id: str = "T1",
    *,
    model: str = "qwen-deep-research",
    input_tokens: int = 100,
    output_tokens: int = 50,
    reasoning_tokens: int = 0,
    cost_usd: float | None = 0.5,
    created_at: float = 0.0,
    user_id: str = "U1",
) -> UsageRecord:
    return UsageRecord(
        team_id=team_id,
        user_id=user_id,
        channel_id=KEY.channel_id,
        thread_ts=KEY.thread_ts,
        model=model,
        kind="research",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens,
        request_id="req-1",
        cost_usd=cost_usd,
        created_at=created_at,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "bot.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(db_path)
    try:
        yield opened
    finally:
        await opened.close()


# --------------------------------------------------------------------------- conversations


def test_open_creates_the_file_and_its_folder(store: Store, db_path: Path) -> None:
    assert db_path.is_file()


async def test_create_then_get_round_trips_the_conversation(store: Store) -> None:
    original = conversation(
        report="# Report",
        references=REFERENCES,
        progress_ts="171.0002",
        options={"output_format": "model_summary_report"},
    )
    assert await store.create(original) is True
    loaded = await store.get(KEY)
    assert loaded is not None
    assert replace(loaded, created_at=0.0, updated_at=0.0) == original
    assert loaded.created_at > 0
    assert loaded.history[0]["content"] == [{"image": IMAGE}, {"text": "Research this chart"}]


async def test_get_of_an_unknown_thread_is_none(store: Store) -> None:
    assert await store.get(KEY) is None


async def test_create_twice_returns_false_and_keeps_the_first(store: Store) -> None:
    assert await store.create(conversation(user_id="U1")) is True
    assert await store.create(conversation(user_id="U2", state=State.DONE)) is False
    loaded = await store.get(KEY)
    assert loaded is not None
    assert loaded.user_id == "U1"
    assert loaded.state is State.AWAITING_CLARIFICATION


async def test_second_create_does_not_record_its_usage(store: Store) -> None:
    await store.create(conversation(), [usage(input_tokens=1)])
    await store.create(conversation(), [usage(input_tokens=2)])
    assert [u.input_tokens for u in await store.usage_records("T1")] == [1]


async def test_save_round_trips_the_new_state(store: Store, db_path: Path) -> None:
    await store.create(conversation())
    history = (*HISTORY, {"role": "assistant", "content": "Here is the report."})
    done = conversation(
        state=State.DONE, history=history, report="# Final\n\nText", references=REFERENCES
    )
    await store.save(done)
    await store.close()
    reopened = await Store.open(db_path)
    try:
        loaded = await reopened.get(KEY)
    finally:
        await reopened.close()
    assert loaded is not None
    assert loaded.state is State.DONE
    assert loaded.history == history
    assert loaded.report == "# Final\n\nText"
    assert loaded.references == REFERENCES


async def test_save_keeps_the_creation_time(store: Store) -> None:
    await store.create(conversation())
    created = await store.get(KEY)
    assert created is not None
    saved = await store.save(replace(created, state=State.RESEARCHING))
    loaded = await store.get(KEY)
    assert loaded is not None
    assert loaded.created_at == created.created_at
    assert loaded.updated_at == saved.updated_at >= created.updated_at


async def test_save_writes_its_usage_rows(store: Store) -> None:
    await store.create(conversation())
    records = [usage(input_tokens=10, output_tokens=5), usage(input_tokens=20, output_tokens=7)]
    await store.save(conversation(state=State.DONE), records)
    loaded = await store.get(KEY)
    assert loaded is not None
    assert loaded.state is State.DONE
    assert [(u.input_tokens, u.output_tokens) for u in await store.usage_records("T1")] == [
        (10, 5),
        (20, 7),
    ]


async def test_failed_usage_insert_rolls_back_the_conversation_update(store: Store) -> None:
    await store.create(conversation(), [usage(input_tokens=1)])
    broken = replace(usage(), model=cast(str, None))  # usage.model is NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        await store.save(
            conversation(state=State.DONE, report="lost"), [usage(input_tokens=2), broken]
        )
    loaded = await store.get(KEY)
    assert loaded is not None
    assert loaded.state is State.AWAITING_CLARIFICATION
    assert loaded.report is None
    assert [u.input_tokens for u in await store.usage_records("T1")] == [1]


async def test_store_still_works_after_a_rolled_back_save(store: Store) -> None:
    await store.create(conversation())
    broken = replace(usage(), model=cast(str, None))
    with pytest.raises(sqlite3.IntegrityError):
        await store.save(conversation(state=State.DONE), [broken])
    await store.save(conversation(state=State.FAILED), [usage(input_tokens=3)])
    loaded = await store.get(KEY)
    assert loaded is not None
    assert loaded.state is State.FAILED
    assert [u.input_tokens for u in await store.usage_records("T1")] == [3]


async def test_same_thread_under_another_team_is_another_conversation(store: Store) -> None:
    other = ConversationKey("T2", KEY.channel_id, KEY.thread_ts)
    assert await store.create(conversation(KEY, user_id="U1")) is True
    assert await store.create(conversation(other, user_id="U9")) is True
    await store.save(conversation(other, user_id="U9", state=State.DONE))
    mine = await store.get(KEY)
    theirs = await store.get(other)
    assert mine is not None
    assert theirs is not None
    assert (mine.user_id, mine.state) == ("U1", State.AWAITING_CLARIFICATION)
    assert (theirs.user_id, theirs.state) == ("U9", State.DONE)


async def test_in_state_lists_only_conversations_in_that_state(store: Store) -> None:
    running = [ConversationKey("T1", "C1", f"1.{i}") for i in range(3)]
    for key in running:
        await store.create(conversation(key, state=State.RESEARCHING))
    await store.create(conversation(ConversationKey("T1", "C1", "2.0"), state=State.DONE))
    found = await store.in_state(State.RESEARCHING)
    assert sorted(c.key.thread_ts for c in found) == ["1.0", "1.1", "1.2"]
    assert await store.in_state(State.INTERRUPTED) == []


# --------------------------------------------------------------------------- claims


async def test_claim_is_true_once_then_false(store: Store) -> None:
    assert await store.claim("Ev123") is True
    assert await store.claim("Ev123") is False
    assert await store.claim("Ev456") is True


async def test_claim_survives_a_reopen(db_path: Path) -> None:
    first = await Store.open(db_path)
    try:
        assert await first.claim("Ev123") is True
    finally:
        await first.close()
    second = await Store.open(db_path)
    try:
        assert await second.claim("Ev123") is False
        assert await second.claim("Ev789") is True
    finally:
        await second.close()


# --------------------------------------------------------------------------- usage


async def test_usage_records_round_trip_and_are_per_team(store: Store) -> None:
    mine = [
        usage("T1", input_tokens=1, created_at=1000.0),
        usage("T1", cost_usd=None, created_at=2.0),
    ]
    theirs = [usage("T2", input_tokens=9, created_at=1000.0)]
    await store.record_usage(mine + theirs)
    assert await store.usage_records("T1") == mine
    assert await store.usage_records("T2") == theirs
    assert await store.usage_records("T3") == []


async def test_usage_record_without_time_gets_the_current_time(store: Store) -> None:
    await store.record_usage([usage(created_at=0.0)])
    [record] = await store.usage_records("T1")
    assert record.created_at > 1_600_000_000


async def test_usage_by_model_sums_match_the_records(store: Store) -> None:
    records = [
        usage(model="qwen-deep-research", input_tokens=100, output_tokens=40, cost_usd=0.25),
        usage(model="qwen-deep-research", input_tokens=300, output_tokens=60, cost_usd=0.5),
        usage(
            model="qwen-plus", input_tokens=7, output_tokens=3, reasoning_tokens=2, cost_usd=None
        ),
        usage("T2", model="qwen-plus", input_tokens=1000, output_tokens=1000),
    ]
    await store.record_usage(records)
    totals = {t.name: t for t in await UsageQueries(store).by_model("T1")}
    research = totals["qwen-deep-research"]
    assert (research.calls, research.input_tokens, research.output_tokens) == (2, 400, 100)
    assert research.cost_usd == pytest.approx(0.75)
    plus = totals["qwen-plus"]
    assert (plus.calls, plus.input_tokens, plus.output_tokens, plus.reasoning_tokens) == (
        1,
        7,
        3,
        2,
    )
    assert plus.cost_usd is None  # no known price: no invented cost


async def test_usage_by_model_since_filters_by_time(store: Store) -> None:
    await store.record_usage(
        [
            usage(input_tokens=1, created_at=1000.0),
            usage(input_tokens=10, created_at=2000.0),
            usage(input_tokens=100, created_at=3000.0),
        ]
    )
    [recent] = await UsageQueries(store).by_model("T1", since=2000.0)
    assert (recent.calls, recent.input_tokens) == (2, 110)
    assert await UsageQueries(store).by_model("T1", since=3000.5) == []


async def test_usage_by_model_of_an_unknown_team_is_empty(store: Store) -> None:
    await store.record_usage([usage("T1")])
    assert await UsageQueries(store).by_model("T2") == []
