"""Which thinking parameters each kind of model gets."""

from __future__ import annotations

import pytest

from bot import thinking
from bot.qwen.events import Finished, ReasoningDelta, StreamError, TextDelta, Usage

ASK = [{"role": "user", "content": "why?"}]


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        ("qwen-plus", thinking.Mode.HYBRID),
        ("qwen-plus-2025-04-28", thinking.Mode.HYBRID),
        ("qwen3-max", thinking.Mode.HYBRID),
        ("qwen3-32b", thinking.Mode.HYBRID),
        ("deepseek-v3.2", thinking.Mode.HYBRID),
        ("qwq-plus", thinking.Mode.THINKING_ONLY),
        ("qwq-32b", thinking.Mode.THINKING_ONLY),
        ("deepseek-r1", thinking.Mode.THINKING_ONLY),
        ("deepseek-r1-0528", thinking.Mode.THINKING_ONLY),
        ("qwen3-235b-a22b-thinking-2507", thinking.Mode.THINKING_ONLY),
        ("qwen3-next-80b-a3b-thinking", thinking.Mode.THINKING_ONLY),
        ("kimi-k2-thinking", thinking.Mode.THINKING_ONLY),
    ],
)
def test_modes_from_the_model_list(model: str, mode: thinking.Mode) -> None:
    assert thinking.mode(model) is mode


def test_hybrid_thinks_with_a_budget() -> None:
    plan = thinking.plan("qwen-plus", ASK, budget=500, default_budget=4000)
    assert plan.call.parameters == {
        "result_format": "message",
        "enable_thinking": True,
        "thinking_budget": 500,
    }
    assert plan.thinking and plan.notes == ()
    default = thinking.plan("qwen-plus", ASK, default_budget=4000)
    assert default.call.parameters["thinking_budget"] == 4000


def test_hybrid_fast_turns_thinking_off() -> None:
    plan = thinking.plan("qwen-plus", ASK, fast=True, default_budget=4000)
    assert plan.call.parameters == {"result_format": "message", "enable_thinking": False}
    assert not plan.thinking


def test_thinking_only_models_get_no_switch_and_say_why_flags_did_nothing() -> None:
    plan = thinking.plan("qwq-plus", ASK, fast=True)
    assert plan.call.parameters == {"result_format": "message"}
    assert plan.thinking
    assert [str(n) for n in plan.notes] == [
        "`qwq-plus` always thinks first, so `--fast` had no effect."
    ]
    budget = thinking.plan("deepseek-r1", ASK, budget=100, default_budget=4000)
    assert budget.call.parameters == {"result_format": "message"}
    assert "does not take a thinking budget" in str(budget.notes[0])
    # A thinking-only Qwen3 model does take a budget.
    qwen3 = thinking.plan("qwen3-235b-a22b-thinking-2507", ASK, budget=100)
    assert qwen3.call.parameters == {"result_format": "message", "thinking_budget": 100}


def test_result_collects_reasoning_answer_and_last_usage() -> None:
    result = thinking.Result()
    for event in [
        ReasoningDelta("Hmm, "),
        ReasoningDelta("four."),
        TextDelta("answer", "It is "),
        Usage(11, 5, 3),
        TextDelta("answer", "4."),
        Usage(11, 9, 3, "req"),
        Finished("answer"),
    ]:
        result.apply(event)
    assert (result.reasoning, result.answer) == ("Hmm, four.", "It is 4.")
    assert result.usage == Usage(11, 9, 3, "req")
    assert result.outcome is None


def test_result_without_a_finish_or_an_answer_is_not_an_answer() -> None:
    cut = thinking.Result()
    cut.apply(TextDelta("answer", "It is"))
    assert cut.outcome == thinking.STREAM_CUT
    empty = thinking.Result()
    empty.apply(Finished("answer"))
    assert empty.outcome == thinking.EMPTY_ANSWER
    failed = thinking.Result()
    failed.apply(StreamError("Throttling", "slow down"))
    assert failed.outcome is not None and failed.outcome.code == "Throttling"
