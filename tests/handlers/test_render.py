"""handlers/render.py and bot/report.py: what users read in Slack and in the report file."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.conversation import ConversationKey
from bot.progress import ProgressView, Stage
from bot.qwen.events import Reference
from bot.report import Report, RunStats
from handlers.render import (
    MARKDOWN_CHUNK,
    RETRY_ACTION,
    SECTION_LIMIT,
    STOP_ACTION,
    key_from_value,
    markdown_messages,
    notice_message,
    progress_message,
    report_summary,
    split_text,
    thread_status,
)

KEY = ConversationKey("T1", "C42", "1700000000.000100")
RUNNING = (Stage.STARTING, Stage.PLANNING, Stage.SEARCHING, Stage.WRITING)
ENDED = (Stage.DONE, Stage.STOPPED, Stage.FAILED, Stage.UNDELIVERED, Stage.INTERRUPTED)
STAGE_WORDS = {
    Stage.CLARIFYING: "Reading your request",
    Stage.STARTING: "Starting",
    Stage.PLANNING: "Planning",
    Stage.SEARCHING: "Searching",
    Stage.WRITING: "Writing the report",
    Stage.DONE: "complete",
    Stage.STOPPED: "stopped",
    Stage.FAILED: "did not finish",
    Stage.UNDELIVERED: "not in this thread yet",
    Stage.INTERRUPTED: "interrupted",
}

REPORT_TEXT = (
    "# AI in Education: Evidence Review\n"
    "\n"
    "## Summary\n"
    "\n"
    "Adaptive tutoring improves outcomes\n"
    "in most trials [1]. Automated grading saves time [2].\n"
    "\n"
    "## Findings\n"
    "\n"
    "More text.\n"
)


def view(stage: Stage, **changes: Any) -> ProgressView:
    values: dict[str, Any] = {
        "stage": stage,
        "round": 2,
        "rounds_finished": 1,
        "goal": "Measure learning gains",
        "sources": 12,
        "elapsed_seconds": 65,
    }
    values.update(changes)
    return ProgressView(**values)


def blocks_of(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in message["blocks"] if b["type"] == kind]


def all_text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in blocks_of(message, "actions") for e in b["elements"]]


def section_texts(message: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in blocks_of(message, "section")]


def footer(message: dict[str, Any]) -> str:
    [context] = blocks_of(message, "context")
    return " ".join(e["text"] for e in context["elements"])


def ref(i: int, title: str | None = None, url: str | None = None) -> Reference:
    return Reference(i, title or f"Source {i}", url or f"https://example.org/{i}")


def report(
    text: str = REPORT_TEXT,
    references: tuple[Reference, ...] = (),
    *,
    cost: float | None = 0.1234,
    topic: str = "AI in education",
) -> Report:
    return Report(topic, text, references, RunStats(125.0, 1000, 500, cost))


# --------------------------------------------------------------------------- progress


@pytest.mark.parametrize("stage", list(Stage))
def test_progress_shows_the_stage_line(stage: Stage) -> None:
    message = progress_message(view(stage), KEY)
    assert STAGE_WORDS[stage] in section_texts(message)[0]
    assert STAGE_WORDS[stage] in message["text"]


def test_progress_while_searching_shows_round_and_goal() -> None:
    message = progress_message(view(Stage.SEARCHING, round=3, goal="Compare costs"), KEY)
    assert "Search round 3: Compare costs" in section_texts(message)[0]


def test_progress_while_writing_shows_the_round_but_not_the_goal() -> None:
    message = progress_message(view(Stage.WRITING, round=3, goal="Compare costs"), KEY)
    assert "Search round 3" in section_texts(message)[0]
    assert "Compare costs" not in all_text(message)


def test_progress_before_the_first_round_shows_no_round() -> None:
    message = progress_message(view(Stage.PLANNING, round=0, goal=""), KEY)
    assert "round" not in section_texts(message)[0].lower()


def test_progress_escapes_the_goal() -> None:
    message = progress_message(view(Stage.SEARCHING, goal="<!channel> & co"), KEY)
    assert "<!channel>" not in all_text(message)
    assert "&lt;!channel&gt; &amp; co" in section_texts(message)[0]


def test_progress_shows_sources_rounds_and_elapsed_time() -> None:
    message = progress_message(view(Stage.SEARCHING, sources=12, elapsed_seconds=65), KEY)
    text = footer(message)
    assert "12 sources found" in text
    assert "1 round done" in text
    assert "elapsed 1m 05s" in text


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (59, "59s"), (60, "1m 00s"), (3725, "1h 02m")]
)
def test_progress_elapsed_time_format(seconds: int, shown: str) -> None:
    message = progress_message(view(Stage.SEARCHING, elapsed_seconds=seconds), KEY)
    assert f"elapsed {shown}" in footer(message)


def test_progress_says_one_source_in_the_singular() -> None:
    assert "1 source found" in footer(progress_message(view(Stage.SEARCHING, sources=1), KEY))


@pytest.mark.parametrize("stage", RUNNING)
def test_progress_has_a_stop_button_while_running(stage: Stage) -> None:
    [button] = buttons(progress_message(view(stage), KEY))
    assert button["action_id"] == STOP_ACTION
    assert button["text"]["text"] == "Stop"
    assert key_from_value("T1", button["value"]) == KEY


@pytest.mark.parametrize("stage", ENDED)
def test_progress_has_no_stop_button_once_ended(stage: Stage) -> None:
    assert buttons(progress_message(view(stage), KEY)) == []


def test_an_interrupted_run_shows_no_counts_it_no_longer_knows() -> None:
    message = progress_message(view(Stage.INTERRUPTED), KEY)
    assert [b["type"] for b in message["blocks"]] == ["section"]
    assert "source" not in all_text(message)


# --------------------------------------------------------------------------- notices


def test_notice_with_retry_has_a_retry_button() -> None:
    message = notice_message("The model is busy. Try again in a minute.", KEY, retry=True)
    [button] = buttons(message)
    assert button["action_id"] == RETRY_ACTION
    assert button["text"]["text"] == "Retry"
    assert key_from_value("T1", button["value"]) == KEY
    assert message["text"] == "The model is busy. Try again in a minute."


def test_notice_without_retry_has_no_button() -> None:
    assert buttons(notice_message("Research stopped.", KEY, retry=False)) == []


def test_button_value_from_garbage_is_none() -> None:
    assert key_from_value("T1", "not json") is None
    assert key_from_value("T1", json.dumps({"c": "C1"})) is None


# --------------------------------------------------------------------------- report summary


def test_report_summary_header_is_the_title() -> None:
    [header] = blocks_of(report_summary(report()), "header")
    assert header["text"]["text"] == "AI in Education: Evidence Review"


def test_report_summary_shows_the_opening_summary() -> None:
    texts = section_texts(report_summary(report()))
    assert texts[0] == (
        "Adaptive tutoring improves outcomes in most trials [1]. Automated grading saves time [2]."
    )


def test_report_summary_links_references() -> None:
    refs = (
        ref(2, "Grading review", "https://b.example/x"),
        ref(1, "Tutoring", "https://a.example"),
    )
    sources = section_texts(report_summary(report(references=refs)))[-1]
    assert "1. <https://a.example|Tutoring>" in sources
    assert "2. <https://b.example/x|Grading review>" in sources
    assert sources.index("1. <") < sources.index("2. <")


def test_report_summary_escapes_reference_titles() -> None:
    refs = (ref(1, "Pipes | and <tags> & more", "https://a.example"),)
    sources = section_texts(report_summary(report(references=refs)))[-1]
    assert "<https://a.example|Pipes ¦ and &lt;tags&gt; &amp; more>" in sources


def test_report_summary_footer_shows_duration_tokens_and_cost() -> None:
    text = footer(report_summary(report(cost=0.1234)))
    assert "2m 05s" in text
    assert "1,500 tokens" in text
    assert "est. $0.1234" in text


def test_report_summary_footer_has_no_cost_when_unknown() -> None:
    text = footer(report_summary(report(cost=None)))
    assert "1,500 tokens" in text
    assert "$" not in text


def test_report_summary_lists_at_most_fifteen_references() -> None:
    refs = tuple(ref(i) for i in range(1, 21))
    sources = section_texts(report_summary(report(references=refs)))[-1]
    assert "15. <https://example.org/15|Source 15>" in sources
    assert "https://example.org/16" not in sources
    assert "and 5 more in the report" in sources


def test_report_summary_sections_fit_with_100_long_references() -> None:
    refs = tuple(
        ref(i, "Very long title " * 20, f"https://example.org/{'p' * 150}/{i}")
        for i in range(1, 101)
    )
    message = report_summary(report(text=REPORT_TEXT + "\n" + "word " * 2000, references=refs))
    texts = section_texts(message)
    assert all(len(t) <= SECTION_LIMIT for t in texts)
    sources = texts[-1]
    listed = len(re.findall(r"^\d+\. <", sources, flags=re.MULTILINE))
    assert listed >= 1
    assert f"and {100 - listed} more in the report" in sources


def test_report_summary_fits_with_a_summary_full_of_escapes() -> None:
    text = "# T\n\n" + "&<>" * 400
    texts = section_texts(report_summary(report(text=text)))
    assert all(len(t) <= SECTION_LIMIT for t in texts)


def test_report_summary_without_heading_uses_the_topic() -> None:
    [header] = blocks_of(report_summary(report(text="Just prose.", topic="Solar power")), "header")
    assert header["text"]["text"] == "Solar power"


def test_report_summary_header_fits_slack_limit() -> None:
    [header] = blocks_of(report_summary(report(text="# " + "T" * 400)), "header")
    assert len(header["text"]["text"]) <= 150


# --------------------------------------------------------------------------- splitting


def non_whitespace(text: str) -> str:
    return "".join(text.split())


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.text(st.sampled_from("ab \n\t.é"), max_size=400),
    st.integers(min_value=1, max_value=60),
)
def test_split_text_respects_the_limit_and_loses_nothing(text: str, limit: int) -> None:
    pieces = split_text(text, limit)
    assert all(len(p) <= limit for p in pieces)
    assert non_whitespace("".join(pieces)) == non_whitespace(text)


def test_split_text_cuts_at_paragraphs_when_it_can() -> None:
    text = "First paragraph here.\n\nSecond paragraph here."
    assert split_text(text, 30) == ["First paragraph here.", "Second paragraph here."]


def test_split_text_cuts_a_long_word_hard() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_markdown_messages_split_a_long_report() -> None:
    paragraph = ("Evidence " * 120).strip()
    text = "\n\n".join(f"## Part {i}\n\n{paragraph}" for i in range(30))
    assert len(text) >= 30_000
    messages = markdown_messages(text)
    assert len(messages) >= 3
    chunks = [m["blocks"][0]["text"] for m in messages]
    assert all(m["blocks"][0]["type"] == "markdown" for m in messages)
    assert all(len(c) <= MARKDOWN_CHUNK for c in chunks)
    assert non_whitespace("".join(chunks)) == non_whitespace(text)
    assert all(0 < len(m["text"]) <= 3000 for m in messages)


def test_markdown_messages_break_between_paragraphs() -> None:
    paragraph = ("Evidence " * 120).strip()
    text = "\n\n".join(f"## Part {i}\n\n{paragraph}" for i in range(30))
    paragraphs = set(text.split("\n\n"))
    chunks = [m["blocks"][0]["text"] for m in markdown_messages(text)]
    assert len(chunks) > 1
    # Each message is made of whole paragraphs: none is cut in the middle.
    for chunk in chunks:
        assert set(chunk.split("\n\n")) <= paragraphs


def test_markdown_messages_of_a_short_text_is_one_message() -> None:
    [message] = markdown_messages("**Short** answer.")
    assert message["blocks"] == [{"type": "markdown", "text": "**Short** answer."}]


# --------------------------------------------------------------------------- Report


def test_report_markdown_starts_with_the_exact_text_and_numbers_references() -> None:
    refs = (ref(2, "Second", "https://b.example"), ref(1, "First", "https://a.example"))
    document = report(references=refs).markdown()
    assert document.startswith(REPORT_TEXT)
    lines = document.splitlines()
    assert "1. [First](https://a.example)" in lines
    assert "2. [Second](https://b.example)" in lines
    assert lines.index("1. [First](https://a.example)") < lines.index(
        "2. [Second](https://b.example)"
    )


def test_report_markdown_lists_every_one_of_many_references() -> None:
    refs = tuple(ref(i) for i in range(1, 101))
    lines = report(references=refs).markdown().splitlines()
    for i in range(1, 101):
        assert f"{i}. [Source {i}](https://example.org/{i})" in lines


def test_report_markdown_keeps_brackets_from_breaking_links() -> None:
    refs = (ref(1, "[PDF] Study", "https://a.example"),)
    assert "1. [(PDF) Study](https://a.example)" in report(references=refs).markdown().splitlines()


def test_report_markdown_without_references_is_the_text() -> None:
    assert report(references=()).markdown() == REPORT_TEXT


def test_report_title_is_the_first_heading() -> None:
    text = "Preface line.\n\n## The Real Title ##\n\n# Later Heading\n"
    assert report(text=text).title == "The Real Title"


def test_report_title_keeps_a_trailing_hash_that_belongs_to_a_word() -> None:
    # CommonMark: a closing "#" sequence must follow a space; "C#" is part of the heading.
    assert report(text="# Adoption of F# and C#\n\nBody.").title == "Adoption of F# and C#"


def test_report_title_falls_back_to_the_topic() -> None:
    assert report(text="No heading here.", topic="Solar power").title == "Solar power"


def test_report_summary_skips_headings() -> None:
    text = "# Title\n\n## Executive summary\n\nThe first   real\nparagraph.\n\nSecond one."
    assert report(text=text).summary == "The first real paragraph."


def test_report_summary_is_shortened() -> None:
    text = "# Title\n\n" + "word " * 500
    summary = report(text=text).summary
    assert 0 < len(summary) <= 600
    assert summary.endswith("…")


@pytest.mark.parametrize("stage", list(Stage))
def test_the_status_line_follows_the_stage(stage: Stage) -> None:
    status, loading = thread_status(stage)
    if stage in (Stage.DONE, Stage.STOPPED, Stage.FAILED, Stage.UNDELIVERED, Stage.INTERRUPTED):
        assert (status, loading) == ("", [])  # the run ended: the line is cleared
    else:
        assert status.startswith("is ") and 0 < len(loading) <= 10
