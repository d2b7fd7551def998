"""bot/conversation.py: the state machine a conversation moves through (no database)."""

from __future__ import annotations

import itertools

import pytest

from bot.conversation import (
    TRANSITIONS,
    Conversation,
    ConversationKey,
    InvalidTransition,
    State,
)

KEY = ConversationKey("T1", "C1", "1.000001")
ALLOWED = sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets)
DISALLOWED = sorted(
    (a, b) for a, b in itertools.product(State, State) if b not in TRANSITIONS.get(a, ())
)


def in_state(state: State) -> Conversation:
    return Conversation(key=KEY, user_id="U1", state=state, model="qwen-deep-research", version=4)


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(State)
    for targets in TRANSITIONS.values():
        assert targets <= set(State)


def test_the_table_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[State.DONE] = frozenset(State)  # type: ignore[index]


@pytest.mark.parametrize(("start", "end"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_allowed_moves_change_the_state_and_apply_the_changes(start: State, end: State) -> None:
    before = in_state(start)
    after = before.to(end, report="# Report", progress_ts="171.2")
    assert after.state is end
    assert (after.report, after.progress_ts) == ("# Report", "171.2")
    assert (after.key, after.user_id, after.model, after.version) == (
        before.key,
        before.user_id,
        before.model,
        before.version,
    )
    assert before.state is start  # a new value; the old one is unchanged
    assert before.report is None


@pytest.mark.parametrize(("start", "end"), DISALLOWED, ids=[f"{a}->{b}" for a, b in DISALLOWED])
def test_disallowed_moves_raise(start: State, end: State) -> None:
    with pytest.raises(InvalidTransition, match=f"{start} -> {end}"):
        in_state(start).to(end)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (State.DONE, State.FAILED),
        (State.AWAITING_CLARIFICATION, State.DONE),
        (State.RESEARCHING, State.AWAITING_CLARIFICATION),
        (State.RESEARCHING, State.RESEARCHING),
        (State.DONE, State.DONE),
        (State.AWAITING_CLARIFICATION, State.RESEARCHING),  # research starts from the queue
        (State.FAILED, State.RESEARCHING),
    ],
)
def test_examples_of_disallowed_moves(start: State, end: State) -> None:
    assert (start, end) in DISALLOWED
    with pytest.raises(InvalidTransition):
        in_state(start).to(end)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (State.AWAITING_CLARIFICATION, State.QUEUED),  # the user answered the question
        (State.QUEUED, State.RESEARCHING),  # admitted: a slot was free
        (State.RESEARCHING, State.DONE),
        (State.RESEARCHING, State.QUEUED),  # throttled before any output
        (State.DONE, State.QUEUED),  # "Research this deeper"
        (State.FAILED, State.AWAITING_CLARIFICATION),  # retry the clarifying question
        (State.INTERRUPTED, State.QUEUED),  # Retry after an interruption
        (State.CANCELLED, State.QUEUED),
    ],
)
def test_examples_of_allowed_moves(start: State, end: State) -> None:
    assert in_state(start).to(end).state is end


def test_a_finished_conversation_moves_only_to_deeper_research() -> None:
    assert TRANSITIONS[State.DONE] == {State.QUEUED}


def test_research_starts_only_from_the_queue() -> None:
    assert {a for a, targets in TRANSITIONS.items() if State.RESEARCHING in targets} == {
        State.QUEUED
    }


def test_an_unknown_change_is_refused() -> None:
    with pytest.raises(TypeError):
        in_state(State.RESEARCHING).to(State.DONE, no_such_field=1)
