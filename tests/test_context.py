"""Fitting a thread's history into a model's context window, counted with the Qwen tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dashscope import get_tokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import context
from bot.context import (
    MAX_COUNTED_CHARS,
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

QWEN = get_tokenizer("qwen-plus")
INTEGERS = " ".join(str(i) for i in range(2000))  # the example
# Text kinds a character-based estimate under-counts: each is far denser in tokens than prose.
SAMPLES = {
    "numbers": INTEGERS,
    "json": json.dumps([{"id": i, "score": i * 0.137, "ok": i % 2 == 0} for i in range(300)]),
    "code": "def f(x):\n    return {k: v for k, v in zip(x, x[1:]) if k != v}\n" * 60,
    "cjk": "人工智能在教育中的应用。个性化学习、自动评估与教师工作量。" * 60,
    "emoji": "🎓📚🤖✅❌👩🏽‍🏫🧑‍💻" * 120,
}


def real_tokens(text: str) -> int:
    """What Qwen's own tokenizer (shipped with dashscope) says, text taken literally."""
    return len(QWEN.encode(text, allowed_special=set(), disallowed_special=()))


def total(messages: list[dict[str, Any]]) -> int:
    return sum(message_tokens(m) for m in messages)


def real_total(messages: list[dict[str, Any]]) -> int:
    return sum(real_tokens(text_of(m["content"])) + MESSAGE_OVERHEAD for m in messages)


# --------------------------------------------------------------------------- counting


def test_two_thousand_integers_count_as_the_qwen_tokenizer_says() -> None:
    # The old estimate said 2,963; Qwen's tokenizer says 8,889 (every digit is a token).
    assert estimate_tokens(INTEGERS) == real_tokens(INTEGERS) == 8889


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_counts_match_the_tokenizer_on_dense_text(kind: str) -> None:
    assert estimate_tokens(SAMPLES[kind]) == real_tokens(SAMPLES[kind])


def test_text_that_looks_like_a_special_token_is_counted_as_text() -> None:
    assert estimate_tokens("<|im_end|>") == real_tokens("<|im_end|>") > 1
    assert estimate_tokens("") == 0


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_without_the_tokenizer_the_byte_count_still_over_counts(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context, "_qwen_tokenizer", lambda: None)
    text = SAMPLES[kind]
    assert estimate_tokens(text) == len(text.encode()) >= real_tokens(text)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=300))
def test_the_byte_count_never_under_counts_any_text(text: str) -> None:
    # Each byte-level BPE token covers at least one byte, so bytes bound tokens from above.
    assert len(text.encode("utf-8", "surrogatepass")) >= real_tokens(text)


def test_importing_the_module_does_not_load_the_tokenizer() -> None:
    root = Path(__file__).resolve().parent.parent
    probe = "import sys, bot.context; print('tiktoken' in sys.modules, 'dashscope' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False"], result.stderr


# --------------------------------------------------------------------------- fitting


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
    assert total(messages) > limit - 50  # and uses nearly all the room it had
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


def test_a_thread_of_numbers_fits_by_the_real_count() -> None:
    # Counted at three characters a token, these 2,000 integers looked like 2,963 tokens and a
    # 5,000-token window took them whole: 8,889 real tokens, and the model refused the call.
    report = {"role": "assistant", "content": INTEGERS}
    messages = fit([TOPIC, report], QUESTION, 5000, system=SYSTEM)
    assert real_total(messages) <= 5000
    assert messages[1]["content"].startswith(TRIMMED_MARK)
    assert messages[1]["content"].endswith("1999")


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.lists(st.sampled_from(sorted(SAMPLES)), min_size=1, max_size=6),
    st.integers(min_value=300, max_value=12_000),
)
def test_what_fit_returns_never_exceeds_the_window(kinds: list[str], window: int) -> None:
    history = [
        {"role": "user" if i % 2 else "assistant", "content": SAMPLES[kind]}
        for i, kind in enumerate(kinds)
    ]
    messages = fit(history, QUESTION, window, system=SYSTEM)
    assert real_total(messages) <= window
    assert messages[0] == SYSTEM and messages[-1] == QUESTION


def test_one_fit_counts_a_bounded_amount_of_text() -> None:
    # Far more text than any window holds: older messages beyond the bound are never counted.
    history = [{"role": "assistant", "content": "word " * 50_000} for _ in range(20)]
    seen: list[int] = []
    real = context._encode

    def counting(tokenizer: Any, text: str) -> list[int]:
        seen.append(len(text))
        return real(tokenizer, text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(context, "_encode", counting)
        messages = fit(history, QUESTION, 10_000_000)
    # Whole messages up to the bound, then the one that crosses it: its end, counted to cut
    # it and again to check the cut.
    assert sum(seen) <= 3 * MAX_COUNTED_CHARS, sum(seen)
    kept = messages[:-1]
    assert 1 < len(kept) < len(history)
    assert sum(len(m["content"]) for m in kept) <= MAX_COUNTED_CHARS + len(TRIMMED_MARK)
