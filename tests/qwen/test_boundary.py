"""Where frames become events, nothing leaves that a write or a sum could choke on (issue 10,
items 11 and 12): text without lone surrogates, counts from 0 to MAX_COUNT, and usage that never
goes down within a stream."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.qwen.events import (
    MAX_COUNT,
    Event,
    ReasoningDelta,
    References,
    ResearchGoal,
    SitesFound,
    StreamError,
    TextDelta,
    Usage,
)
from bot.qwen.interpreter import UsagePeak, interpret
from tests.fakes.dashscope_server import research_frame, thinking_frame

LONE = "\ud800"  # what json.loads makes of "\ud800" on the wire


def wire(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame as it crosses the wire and back: lone surrogates escaped, then decoded."""
    return dict(json.loads(json.dumps(frame)))


def strings(events: list[Event]) -> list[str]:
    found: list[str] = []
    for event in events:
        if isinstance(event, TextDelta | ReasoningDelta):
            found.append(event.text)
        elif isinstance(event, ResearchGoal):
            found.append(event.goal)
        elif isinstance(event, SitesFound):
            found += [v for s in event.sites for v in (s.title, s.url, s.description)]
        elif isinstance(event, References):
            found += [v for r in event.items for v in (r.title, r.url, r.description)]
        elif isinstance(event, StreamError):
            found += [event.code, event.message, event.request_id]
        elif isinstance(event, Usage):
            found.append(event.request_id)
    return found


# --------------------------------------------------------------------------- text


def test_a_lone_surrogate_in_the_report_becomes_a_replacement_character() -> None:
    frame = wire(research_frame("answer", "typing", f"Findings {LONE} here").data)
    [text] = [e for e in interpret(frame) if isinstance(e, TextDelta)]
    assert text.text == "Findings \ufffd here"
    text.text.encode("utf-8")  # what SQLite and PostgreSQL will do with it


def test_lone_surrogates_are_replaced_everywhere_text_comes_from() -> None:
    frame = research_frame(
        "WebResearch",
        "streamingWebResult",
        LONE,
        research={
            "id": 1,
            "researchGoal": f"goal{LONE}",
            "webSites": [{"title": LONE, "url": LONE}],
        },
        references=[{"index_number": 1, "title": f"t{LONE}", "url": f"https://x/{LONE}"}],
        request_id=f"req{LONE}",
    ).data
    thinking = thinking_frame(reasoning=f"r{LONE}", content=f"\udfff{LONE}").data
    error = {"code": f"E{LONE}", "message": f"m{LONE}", "request_id": LONE}
    for raw in (frame, thinking, error):
        found = strings(interpret(wire(raw)))
        assert found and "\ufffd" in "".join(found)
        for value in found:
            value.encode("utf-8")


def test_a_proper_surrogate_pair_is_kept_as_its_character() -> None:
    frame = json.loads('{"output": {"message": {"phase": "answer", "content": "\\ud83d\\ude00"}}}')
    assert TextDelta("answer", "\U0001f600") in interpret(frame)


surrogate_text = st.text(st.characters(categories=("Cs", "Lu", "Nd", "Zs", "So")), max_size=20)


@settings(max_examples=300, deadline=None, database=None)
@given(surrogate_text, surrogate_text, surrogate_text)
def test_no_event_carries_text_utf8_cannot_encode(content: str, goal: str, title: str) -> None:
    frame = research_frame(
        "answer",
        "typing",
        content,
        research={"id": 1, "researchGoal": goal, "webSites": [{"title": title, "url": "u"}]},
        references=[{"index_number": 1, "title": title, "url": "https://x"}],
    ).data
    for value in strings(interpret(wire(frame))):
        value.encode("utf-8")


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("figure", "read"),
    [
        (2**63, MAX_COUNT),
        (2**64, MAX_COUNT),
        (10**400, MAX_COUNT),
        (-5, 0),
        (1e300, MAX_COUNT),
        (-1e300, 0),
        (12.2, 13),  # a fraction rounds up: never recorded lower than reported
        ("12", 12),
        ("9" * 5000, MAX_COUNT),  # int() of that many digits would raise
        ("-3", 0),
        (float("inf"), MAX_COUNT),
        (None, 0),
    ],
)
def test_usage_figures_are_clamped_to_what_the_ledger_holds(figure: Any, read: int) -> None:
    frame = {"output": None, "usage": {"input_tokens": figure, "output_tokens": figure}}
    [usage] = interpret(frame)
    assert usage == Usage(read, read)


def test_a_nan_figure_is_zero() -> None:
    frame = json.loads('{"output": null, "usage": {"input_tokens": NaN, "output_tokens": 3}}')
    assert interpret(frame) == [Usage(0, 3)]


def test_round_ids_and_reference_numbers_are_clamped_too() -> None:
    frame = research_frame(
        "WebResearch",
        "streamingQueries",
        research={"id": 2**70, "researchGoal": "g"},
        references=[{"index_number": -4, "title": "t", "url": "https://x"}],
    ).data
    events = interpret(frame)
    assert ResearchGoal(MAX_COUNT, "g") in events
    [refs] = [e for e in events if isinstance(e, References)]
    assert refs.items[0].index == 1  # a negative number falls back to the list position


# --------------------------------------------------------------------------- never down


def peaks(figures: list[tuple[int, int, int]]) -> list[Usage]:
    peak = UsagePeak()
    out = []
    for i, (a, b, c) in enumerate(figures):
        event = peak(Usage(a, b, c, request_id=f"r{i}" if i % 3 else ""))
        assert isinstance(event, Usage)
        out.append(event)
    return out


def test_ten_thousand_fuzzed_streams_never_record_less_than_they_reported() -> None:
    rng = random.Random(10)
    for _ in range(10_000):
        figures = [
            (rng.randrange(0, 5000), rng.randrange(0, 5000), rng.randrange(0, 5000))
            for _ in range(rng.randrange(1, 30))
        ]
        emitted = peaks(figures)
        last = emitted[-1]
        assert last.input_tokens == max(f[0] for f in figures)
        assert last.output_tokens == max(f[1] for f in figures)
        assert last.reasoning_tokens == max(f[2] for f in figures)
        for before, after in itertools.pairwise(emitted):
            assert after.input_tokens >= before.input_tokens
            assert after.output_tokens >= before.output_tokens
            assert after.reasoning_tokens >= before.reasoning_tokens


def test_the_peak_keeps_the_last_request_id_and_passes_other_events_through() -> None:
    peak = UsagePeak()
    assert peak(TextDelta("answer", "x")) == TextDelta("answer", "x")
    assert peak(Usage(10, 50, 0, "req-1")) == Usage(10, 50, 0, "req-1")
    assert peak(Usage(12, 7, 3, "")) == Usage(12, 50, 3, "req-1")


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(*[st.integers(0, MAX_COUNT)] * 3), min_size=1, max_size=20))
def test_the_last_usage_is_the_highest_of_each_field(figures: list[tuple[int, int, int]]) -> None:
    last = peaks(figures)[-1]
    assert (last.input_tokens, last.output_tokens, last.reasoning_tokens) == tuple(
        max(f[i] for f in figures) for i in range(3)
    )
