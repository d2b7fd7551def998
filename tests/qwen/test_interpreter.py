"""bot/qwen/interpreter.py: recorded frame sequences in, typed events out."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.qwen.events import (
    ANSWER,
    Event,
    Finished,
    PhaseStatus,
    ReasoningDelta,
    References,
    ResearchGoal,
    RoundFinished,
    SitesFound,
    StreamError,
    TextDelta,
    Usage,
)
from bot.qwen.interpreter import interpret
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    Frame,
    Script,
    clarification_script,
    keepalive_frame,
    metadata_frame,
    research_frame,
    research_script,
    thinking_frame,
    thinking_script,
)

REPORT_CHUNKS = ["# AI in education\n\n", "Adaptive tutoring helps [1]", " and grading [2]."]
REPORT = "".join(REPORT_CHUNKS)
PLAN = "This study focuses on the evidence behind the question."


def frames_of(script: Script) -> list[dict[str, Any]]:
    return [step.data for step in script if isinstance(step, Frame)]


def run(frames: list[dict[str, Any]]) -> list[Event]:
    return [event for frame in frames for event in interpret(frame)]


def text_of(events: list[Event], phase: str = ANSWER) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.phase == phase)


def last_references(events: list[Event]) -> References | None:
    """The fold a reader applies: keep the last non-empty reference list."""
    kept: References | None = None
    for event in events:
        if isinstance(event, References) and event.items:
            kept = event
    return kept


def mainline_events(rounds: int = 3, sites: int = 4) -> list[Event]:
    script = research_script(
        REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=rounds, sites_per_round=sites
    )
    return run(frames_of(script))


# --------------------------------------------------------------------------- deep research


def test_mainline_answer_text_is_the_report() -> None:
    assert text_of(mainline_events()) == REPORT


def test_mainline_plan_text_is_kept_out_of_the_report() -> None:
    events = mainline_events()
    assert text_of(events, "ResearchPlanning") == PLAN
    assert PLAN not in text_of(events)


def test_mainline_gives_one_goal_per_round() -> None:
    goals = [e for e in mainline_events(rounds=3) if isinstance(e, ResearchGoal)]
    assert goals == [
        ResearchGoal(1, "Goal 1"),
        ResearchGoal(2, "Goal 2"),
        ResearchGoal(3, "Goal 3"),
    ]


def test_mainline_gives_the_sites_of_each_round() -> None:
    found = [e for e in mainline_events(rounds=3, sites=4) if isinstance(e, SitesFound)]
    assert [f.round_id for f in found] == [1, 2, 3]
    assert [s.url for s in found[1].sites] == [
        f"https://example.com/round2/site{j}" for j in range(1, 5)
    ]
    assert found[1].sites[0].title == "Source 2.1"
    assert found[1].sites[0].description == "Search result 1 of round 2."


def test_mainline_marks_each_round_finished_once() -> None:
    done = [e for e in mainline_events(rounds=3) if isinstance(e, RoundFinished)]
    assert done == [RoundFinished(1), RoundFinished(2), RoundFinished(3)]


def test_mainline_ends_with_exactly_one_finished() -> None:
    events = mainline_events()
    assert [e for e in events if isinstance(e, Finished)] == [Finished(ANSWER)]
    # Nothing that matters to a reader comes after the end of the run.
    tail = events[events.index(Finished(ANSWER)) + 1 :]
    assert all(isinstance(e, Usage) for e in tail)


def test_snapshot_statuses_give_the_same_goals_sites_and_rounds() -> None:
    def research_view(events: list[Event]) -> list[Event]:
        return [e for e in events if isinstance(e, ResearchGoal | SitesFound | RoundFinished)]

    mainline = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    snapshot = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2, snapshot=True)
    snapshot_frames = frames_of(snapshot)
    statuses = {f["output"]["message"]["status"] for f in snapshot_frames}
    assert "streamingThinking" in statuses
    assert "streamingQueries" not in statuses
    snapshot_events = run(snapshot_frames)
    assert research_view(snapshot_events) == research_view(run(frames_of(mainline)))
    assert text_of(snapshot_events) == REPORT


def test_keepalive_frame_yields_nothing() -> None:
    assert interpret(keepalive_frame(output_tokens=40).data) == []


def test_keepalive_frame_with_content_and_research_still_yields_nothing() -> None:
    frame = research_frame(
        "KeepAlive",
        "typing",
        "stray text",
        research={"id": 1, "researchGoal": "not a goal"},
        references=DEFAULT_REFERENCES,
        output_tokens=99,
    )
    assert interpret(frame.data) == []


def test_keepalives_in_the_middle_change_nothing() -> None:
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES)
    frames = frames_of(script)
    without = [f for f in frames if f["output"]["message"]["phase"] != "KeepAlive"]
    assert len(without) < len(frames)  # the script really has KeepAlive frames
    assert run(frames) == run(without)


def test_references_sent_once_early_are_emitted_once_and_kept() -> None:
    events = mainline_events()
    refs = [e for e in events if isinstance(e, References)]
    assert len(refs) == 1
    kept = last_references(events)
    assert kept is not None
    assert [(r.index, r.title, r.url) for r in kept.items] == [
        (d["index_number"], d["title"], d["url"]) for d in DEFAULT_REFERENCES
    ]
    assert kept.items[0].description == DEFAULT_REFERENCES[0]["description"]


def test_later_empty_reference_lists_do_not_erase_the_kept_ones() -> None:
    frames = [
        research_frame("answer", "typing", "Body", references=DEFAULT_REFERENCES).data,
        research_frame("answer", "typing", " more", references=[]).data,
        research_frame("answer", "finished", references=[]).data,
    ]
    kept = last_references(run(frames))
    assert kept is not None
    assert len(kept.items) == len(DEFAULT_REFERENCES)


def test_reference_without_index_is_numbered_by_position() -> None:
    refs = [{"title": "A", "url": "https://a.example"}, {"title": "B", "url": "https://b.example"}]
    events = interpret(research_frame("answer", "typing", references=refs).data)
    found = [e for e in events if isinstance(e, References)]
    assert [(r.index, r.title) for r in found[0].items] == [(1, "A"), (2, "B")]


def test_clarification_question_is_answer_text_then_finished() -> None:
    question = "Which age group should the research cover?"
    events = run(frames_of(clarification_script(question, chunks=4)))
    assert text_of(events) == question
    assert events.count(Finished(ANSWER)) == 1


def test_unknown_status_gives_phase_status_and_keeps_its_fields() -> None:
    frame = research_frame(
        "WebResearch",
        "streamingSomethingNew",
        research={"id": 4, "researchGoal": "Check the costs"},
        output_tokens=7,
    )
    events = interpret(frame.data)
    assert PhaseStatus("WebResearch", "streamingSomethingNew") in events
    assert ResearchGoal(4, "Check the costs") in events
    assert not any(isinstance(e, RoundFinished | Finished) for e in events)


def test_unknown_phase_gives_phase_status_and_stays_out_of_the_report() -> None:
    frame = research_frame("DeepReflection", "typing", "hmm", output_tokens=3)
    events = interpret(frame.data)
    assert events[0] == PhaseStatus("DeepReflection", "typing")
    assert text_of(events) == ""
    assert text_of(events, "DeepReflection") == "hmm"


def test_metadata_only_frame_gives_only_its_phase() -> None:
    assert interpret(metadata_frame().data) == [PhaseStatus("answer", "typing")]


@pytest.mark.parametrize(
    "frame",
    [
        {"output": None, "request_id": "r"},
        {"request_id": "r"},
        {"output": {}, "request_id": "r"},
        {},
    ],
    ids=["null", "missing", "empty", "bare"],
)
def test_frame_without_output_gives_nothing(frame: dict[str, Any]) -> None:
    assert interpret(frame) == []


def test_null_output_still_reports_usage() -> None:
    frame = {"output": None, "usage": {"input_tokens": 5, "output_tokens": 2}, "request_id": "r"}
    assert interpret(frame) == [Usage(5, 2, 0, "r")]


def test_error_frame_gives_stream_error() -> None:
    frame = {
        "code": "Throttling.AllocationQuota",
        "message": "Allocated quota exceeded",
        "request_id": "req-9",
    }
    events = interpret(frame)
    assert events == [
        StreamError("Throttling.AllocationQuota", "Allocated quota exceeded", "req-9")
    ]


def test_error_frame_keeps_http_status() -> None:
    frame = {"code": "InternalError", "message": "x", "request_id": "r", "status_code": 500}
    [error] = interpret(frame)
    assert isinstance(error, StreamError)
    assert error.status == 500


def test_error_frame_with_null_output_is_still_an_error() -> None:
    frame = {"code": "DataInspectionFailed", "message": "m", "request_id": "r", "output": None}
    assert [type(e) for e in interpret(frame)] == [StreamError]


def test_error_message_is_not_in_the_repr() -> None:
    [error] = interpret({"code": "InvalidApiKey", "message": "key sk-secret is bad"})
    assert "sk-secret" not in repr(error)


def test_usage_is_cumulative_and_the_last_is_the_total() -> None:
    frames = frames_of(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, input_tokens=900))
    usages = [e for e in run(frames) if isinstance(e, Usage)]
    outputs = [u.output_tokens for u in usages]
    assert outputs == sorted(outputs)
    assert usages[-1].output_tokens == max(f["usage"]["output_tokens"] for f in frames)
    assert usages[-1].input_tokens == 900
    assert usages[-1].request_id == "req-research"


# --------------------------------------------------------------------------- thinking models


def test_thinking_stream_splits_reasoning_from_answer() -> None:
    script = thinking_script(["Hmm, ", "let me think."], ["The answer ", "is 42."])
    events = run(frames_of(script))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning == "Hmm, let me think."
    assert text_of(events) == "The answer is 42."


def test_thinking_stream_finishes_once_at_the_end() -> None:
    frames = frames_of(thinking_script(["a b"], ["c d"]))
    per_frame = [interpret(f) for f in frames]
    assert [Finished(ANSWER) in events for events in per_frame] == [False] * (len(frames) - 1) + [
        True
    ]


def test_finish_reason_string_null_is_not_the_end() -> None:
    events = interpret(thinking_frame(content="partial", finish_reason="null").data)
    assert Finished(ANSWER) not in events


def test_finish_reason_stop_is_the_end() -> None:
    assert Finished(ANSWER) in interpret(thinking_frame(finish_reason="stop").data)


def test_thinking_reasoning_tokens_come_from_output_tokens_details() -> None:
    frames = frames_of(thinking_script(["one two three", "four"], ["five six"]))
    usages = [e for e in run(frames) if isinstance(e, Usage)]
    assert usages[-1].reasoning_tokens == 4
    assert usages[-1].output_tokens == 6
    assert usages[-1].input_tokens == 11


def test_thinking_without_details_has_zero_reasoning_tokens() -> None:
    frames = frames_of(thinking_script(["x"], ["y"], reasoning_tokens=False))
    usages = [e for e in run(frames) if isinstance(e, Usage)]
    assert [u.reasoning_tokens for u in usages] == [0] * len(usages)


def test_multimodal_content_list_is_joined() -> None:
    frame = {
        "output": {
            "choices": [
                {"message": {"content": [{"text": "a "}, {"text": "b"}]}, "finish_reason": "null"}
            ]
        }
    }
    assert interpret(frame) == [TextDelta(ANSWER, "a b")]


# --------------------------------------------------------------------------- junk values

JUNK_FRAMES: list[Any] = [
    [],
    "not a frame",
    None,
    {"output": []},
    {"output": "text"},
    {"output": {"message": []}},
    {"output": {"message": {"phase": "WebResearch", "status": "typing", "extra": []}}},
    {"output": {"message": {"phase": 7, "status": ["typing"], "content": {"a": 1}}}},
    {"output": {"message": {"phase": "WebResearch", "extra": {"deep_research": "x"}}}},
    {
        "output": {
            "message": {"phase": "WebResearch", "extra": {"deep_research": {"research": [1]}}}
        }
    },
    {
        "output": {
            "message": {
                "phase": "WebResearch",
                "extra": {"deep_research": {"research": {"id": {}, "webSites": {"a": 1}}}},
            }
        }
    },
    {
        "output": {
            "message": {
                "phase": "WebResearch",
                "extra": {"deep_research": {"research": {"id": 1, "webSites": ["a", None, 3]}}},
            }
        }
    },
    {"output": {"message": {"phase": "answer", "extra": {"deep_research": {"references": "x"}}}}},
    {"output": {"message": {"phase": "answer", "extra": {"deep_research": {"references": [1]}}}}},
    {"output": {"choices": {"0": {}}}},
    {"output": {"choices": [None]}},
    {"output": {"choices": [{"message": "hi", "finish_reason": 3}]}},
    {"output": None, "usage": "lots"},
    {"output": None, "usage": [1, 2]},
    {"output": None, "usage": {"input_tokens": None, "output_tokens": [1]}},
    {"output": None, "usage": {"input_tokens": 1, "output_tokens_details": "x"}},
    {"code": 429, "message": ["x"]},
    {"code": "InternalError", "message": None, "request_id": 5, "status_code": "abc"},
]


@pytest.mark.parametrize("frame", JUNK_FRAMES)
def test_junk_values_do_not_raise(frame: Any) -> None:
    events = interpret(frame)
    assert isinstance(events, list)
    assert not any(isinstance(e, TextDelta) and e.phase == ANSWER for e in events)


def test_numeric_strings_are_read_as_numbers() -> None:
    frame = research_frame("WebResearch", "streamingQueries", research={"id": "3"}).data
    frame["output"]["message"]["extra"]["deep_research"]["research"]["researchGoal"] = "G"
    frame["usage"] = {"input_tokens": "120", "output_tokens": " 45 "}
    events = interpret(frame)
    assert ResearchGoal(3, "G") in events
    assert Usage(120, 45, 0, "req-1") in events


def test_bool_is_not_a_token_count() -> None:
    frame = {"output": None, "usage": {"input_tokens": True, "output_tokens": 2}}
    assert interpret(frame) == [Usage(0, 2)]


@pytest.mark.parametrize("value", ["²", "①", "½", "٣"])
def test_unicode_digit_like_strings_for_ints_do_not_raise(value: str) -> None:
    # str.isdigit() is True for "²" and "①" but int() rejects them.
    frame = {"output": None, "usage": {"input_tokens": value, "output_tokens": 1}}
    [usage] = interpret(frame)
    assert isinstance(usage, Usage)
    assert usage.output_tokens == 1


def test_non_mapping_frame_gives_nothing() -> None:
    assert interpret(cast(Any, ["output"])) == []


# --------------------------------------------------------------------------- property

PHASES = ["ResearchPlanning", "WebResearch", "answer", "SomethingNew"]
STATUSES = [
    "typing",
    "finished",
    "streamingQueries",
    "streamingWebResult",
    "streamingThinking",
    "WebResultFinished",
    "unheardOf",
    "",
]
# Strings that look like numbers: plain, padded with blanks, and Unicode digits and numerals.
numeric_text = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.integers(min_value=0, max_value=10**6).map(lambda n: f" {n} "),
    st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=2),
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    numeric_text,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
token = st.one_of(st.integers(min_value=0, max_value=10**6), numeric_text, junk)
site = st.one_of(
    st.fixed_dictionaries(
        {"title": st.text(max_size=8), "url": st.text(max_size=12)},
        optional={"description": st.text(max_size=8), "favicon": junk},
    ),
    junk,
)
research = st.one_of(
    st.none(),
    st.fixed_dictionaries({"id": token, "query": st.text(max_size=5), "researchGoal": junk}),
    st.fixed_dictionaries({"id": token, "researchGoal": st.text(max_size=10)}),
    st.fixed_dictionaries({"id": token, "webSites": st.one_of(st.lists(site, max_size=3), junk)}),
    st.fixed_dictionaries({"id": token, "learningMap": junk}),
    junk,
)
reference = st.one_of(
    st.fixed_dictionaries(
        {"index_number": token, "title": st.text(max_size=8), "url": st.text(max_size=12)}
    ),
    junk,
)
references = st.one_of(st.none(), st.lists(reference, max_size=3), junk)
usage = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"input_tokens": token, "output_tokens": token},
        optional={"output_tokens_details": st.one_of(junk, st.fixed_dictionaries({"x": token}))},
    ),
    junk,
)
content = st.one_of(st.text(max_size=12), junk)


@st.composite
def research_frames(draw: st.DrawFn, phase: st.SearchStrategy[str]) -> dict[str, Any]:
    deep: dict[str, Any] = {}
    drawn_research = draw(research)
    if drawn_research is not None:
        deep["research"] = drawn_research
    drawn_refs = draw(references)
    if drawn_refs is not None:
        deep["references"] = drawn_refs
    extra = draw(st.one_of(st.just({"deep_research": deep}), junk))
    frame: dict[str, Any] = {
        "output": {
            "message": {
                "phase": draw(phase),
                "role": "assistant",
                "content": draw(content),
                "extra": extra,
                "status": draw(st.sampled_from(STATUSES)),
            },
            "fininshed": False,
            "fininshed_reason": "null",
        },
        "request_id": draw(st.one_of(st.text(max_size=6), junk)),
    }
    drawn_usage = draw(usage)
    if drawn_usage is not None:
        frame["usage"] = drawn_usage
    return frame


null_output_frames = st.fixed_dictionaries(
    {"request_id": st.text(max_size=4)},
    optional={"output": st.none(), "usage": usage},
)
junk_frames = st.one_of(
    st.fixed_dictionaries({"output": junk}, optional={"usage": usage}),
    st.fixed_dictionaries({"output": st.fixed_dictionaries({"message": junk})}),
    junk,
)
error_frames = st.fixed_dictionaries(
    {
        "code": st.sampled_from(["Throttling", "InternalError", "InvalidParameter", "Arrearage"]),
        "message": st.text(max_size=10),
        "request_id": st.text(max_size=6),
    },
    optional={"status_code": token},
)
tagged_frames = st.one_of(
    st.tuples(st.just("research"), research_frames(st.sampled_from(PHASES))),
    st.tuples(st.just("keepalive"), research_frames(st.just("KeepAlive"))),
    st.tuples(st.just("null"), null_output_frames),
    st.tuples(st.just("junk"), junk_frames),
    st.tuples(st.just("error"), error_frames),
)


def answer_content(kind: str, frame: dict[str, Any]) -> str:
    if kind != "research":
        return ""
    message = frame["output"]["message"]
    text = message["content"]
    return text if message["phase"] == ANSWER and isinstance(text, str) else ""


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(tagged_frames, max_size=25))
# Random draws reach this only some of the time: "²".isdigit() is True but int("²") fails.
@example([("null", {"output": None, "usage": {"input_tokens": "²", "output_tokens": 1}})])
def test_any_frame_sequence_is_interpreted_safely(sequence: list[tuple[str, Any]]) -> None:
    answer: list[str] = []
    for kind, frame in sequence:
        events = interpret(frame)
        if kind == "keepalive":
            assert events == []
        if kind == "error":
            assert [type(e) for e in events] == [StreamError]
        else:
            assert not any(isinstance(e, StreamError) for e in events)
        answer.extend(e.text for e in events if isinstance(e, TextDelta) and e.phase == ANSWER)
    expected = "".join(answer_content(kind, frame) for kind, frame in sequence)
    assert "".join(answer) == expected
