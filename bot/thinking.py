"""Thinking models: which ones can switch thinking off or take a budget, and one call's result.

From Model Studio's deep-thinking page (reference/003_…txt): hybrid models think only when asked
(`enable_thinking`); thinking-only models always think and need no flag; `thinking_budget` is
supported by Qwen3 models in thinking mode and by Kimi, not by QwQ or DeepSeek.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from bot.i18n import N_, Text, say
from bot.qwen.client import ModelCall, thinking_call
from bot.qwen.events import ANSWER, Finished, ReasoningDelta, StreamError, TextDelta, Usage

STREAM_CUT: Final = StreamError(code="ConnectionError", message="stream ended before finishing")
EMPTY_ANSWER: Final = StreamError(
    code="EmptyAnswer", message="the model finished without an answer"
)


class Mode(StrEnum):
    HYBRID = "hybrid"  # enable_thinking switches reasoning on and off
    THINKING_ONLY = "thinking_only"  # always reasons; enable_thinking must not be sent


_THINKING_ONLY: Final = re.compile(r"^(qwq-|deepseek-r1|kimi-k2-thinking)|-thinking(-|$)")
# Qwen3 (commercial and open source) and Kimi take thinking_budget; QwQ and DeepSeek do not.
_TAKES_BUDGET: Final = re.compile(r"^(qwen-(plus|flash|turbo)|qwen3-|kimi-)")

# Largest prompt each family accepts in thinking mode, from Model Studio's model list, rounded
# down; an unknown model gets a small window so the call is never rejected for length.
_MAX_INPUT_TOKENS: Final[tuple[tuple[str, int], ...]] = (
    ("qwen3-max", 98_304),
    ("qwen-plus", 98_304),
    ("qwen-flash", 98_304),
    ("qwen-turbo", 98_304),
    ("qwen3-", 98_304),
    ("qwq-", 98_304),
    ("deepseek-", 57_344),
    ("kimi-", 98_304),
)
DEFAULT_MAX_INPUT_TOKENS: Final = 28_672


def mode(model: str) -> Mode:
    return Mode.THINKING_ONLY if _THINKING_ONLY.search(model) else Mode.HYBRID


def takes_budget(model: str) -> bool:
    return bool(_TAKES_BUDGET.match(model))


def max_input_tokens(model: str) -> int:
    return next(
        (n for prefix, n in _MAX_INPUT_TOKENS if model.startswith(prefix)), DEFAULT_MAX_INPUT_TOKENS
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """The call to make, and what the person should know about how their flags were applied."""

    call: ModelCall
    thinking: bool
    notes: tuple[Text, ...] = ()


def plan(
    model: str,
    messages: list[dict[str, Any]],
    *,
    fast: bool = False,
    budget: int | None = None,
    default_budget: int | None = None,
) -> Plan:
    notes: list[Text] = []
    kind = mode(model)
    if kind is Mode.THINKING_ONLY:
        if fast:
            notes.append(
                say(N_("`{model}` always thinks first, so `--fast` had no effect."), model=model)
            )
        thinking, enable = True, None
    else:
        thinking, enable = not fast, not fast
    limit: int | None = None
    if thinking:
        if takes_budget(model):
            limit = budget or default_budget
        elif budget is not None:
            notes.append(
                say(
                    N_("`{model}` does not take a thinking budget, so `--budget` was ignored."),
                    model=model,
                )
            )
    call = thinking_call(model, messages, enable_thinking=enable, thinking_budget=limit)
    return Plan(call=call, thinking=thinking, notes=tuple(notes))


@dataclass(slots=True)
class Result:
    """What one thinking-model stream produced."""

    reasoning_parts: list[str] = field(default_factory=list)
    answer_parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    error: StreamError | None = None
    finished: bool = False

    def apply(self, event: object) -> None:
        match event:
            case ReasoningDelta(text=text):
                self.reasoning_parts.append(text)
            case TextDelta(phase=phase, text=text) if phase == ANSWER:
                self.answer_parts.append(text)
            case Usage():
                self.usage = event  # cumulative: the last one is the total
            case StreamError():
                self.error = event
            case Finished():
                self.finished = True

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts).strip()

    @property
    def answer(self) -> str:
        return "".join(self.answer_parts).strip()

    @property
    def outcome(self) -> StreamError | None:
        """Why there is no usable answer, or None when there is one."""
        if self.error is not None:
            return self.error
        if not self.finished:
            return STREAM_CUT
        return None if self.answer else EMPTY_ANSWER
