"""Fitting a thread's history into a model's context window."""

from __future__ import annotations

from bot.context import (
    MESSAGE_OVERHEAD,
    TRIMMED_MARK,
    estimate_tokens,
    fit,
    message_tokens,
    text_of,
)

TOPIC = {"role": "user", "content": "the use of AI in education"}
CLARIFY = {"role": "assistant", "content": "Which aspects matter most to you?"}
ANSWER = {"role": "user", "content": "Personalised learning"}
REPORT = {"role": "assistant", "content": "# Report\n\n" + "Adaptive tutoring works. " * 400}
HISTORY = [TOPIC, CLARIFY, ANSWER, REPORT]
SYSTEM = {"role": "system", "content": "You answer follow-up questions."}
QUESTION = {"role": "user", "content": "What about costs?"}


def total(messages: list[dict]) -> int:
    return sum(message_tokens(m) for m in messages)


def test_estimate_overcounts_rather_than_under() -> None:
    # About 4 characters per English token and 1-1.5 per Chinese one in real tokenizers.
    assert estimate_tokens("a" * 300) == 100
    assert estimate_tokens("教育" * 50) == 100
    assert estimate_tokens("") == 0


def test_everything_fits_in_order() -> None:
    messages = fit(HISTORY, QUESTION, 100_000, system=SYSTEM)
    assert messages == [SYSTEM, *HISTORY, QUESTION]


def test_oldest_messages_go_first_and_the_question_stays() -> None:
    keep_two = total([SYSTEM, QUESTION, ANSWER, REPORT])
    messages = fit(HISTORY, QUESTION, keep_two, system=SYSTEM)
    assert messages == [SYSTEM, ANSWER, REPORT, QUESTION]
    assert total(messages) <= keep_two


def test_a_message_that_partly_fits_loses_its_beginning() -> None:
    limit = total([SYSTEM, QUESTION]) + 1000
    messages = fit(HISTORY, QUESTION, limit, system=SYSTEM)
    assert [m["role"] for m in messages] == ["system", "assistant", "user"]
    shortened = messages[1]["content"]
    assert shortened.startswith(TRIMMED_MARK)
    assert REPORT["content"].endswith(shortened.removeprefix(TRIMMED_MARK))
    assert not shortened.removeprefix(TRIMMED_MARK).startswith(" ")  # starts at a word
    assert total(messages) <= limit
    assert messages[-1] == QUESTION


def test_no_gaps_once_a_message_is_dropped() -> None:
    # The report does not fit at all, so nothing older than it may sneak in either.
    limit = total([SYSTEM, QUESTION]) + MESSAGE_OVERHEAD + 50
    messages = fit(HISTORY, QUESTION, limit, system=SYSTEM)
    assert messages == [SYSTEM, QUESTION]


def test_question_is_sent_whole_even_when_it_alone_is_too_big() -> None:
    huge = {"role": "user", "content": "why " * 10_000}
    assert fit(HISTORY, huge, 100) == [huge]


def test_multimodal_content_becomes_text() -> None:
    topic = {"role": "user", "content": [{"image": "data:image/png;base64,AAA"}, {"text": "this"}]}
    assert text_of(topic["content"]) == "this"
    assert fit([topic], QUESTION, 10_000)[0] == {"role": "user", "content": "this"}
