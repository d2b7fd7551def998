"""`/ask` command text: leading `--flags`, then the question."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from bot.i18n import N_, Sentence, Text, joined, say
from bot.research_options import shown_word

ASK_USAGE: Final = N_(
    "Usage: `/ask [--model NAME] [--budget TOKENS] [--fast] [--private] your question`\n"
    "• `--model NAME`: a Qwen thinking model instead of the default (e.g. `qwq-plus`)\n"
    "• `--budget TOKENS`: at most this many tokens of reasoning\n"
    "• `--fast`: answer without thinking first (hybrid models only)\n"
    "• `--private`: only you see the answer"
)
NO_QUESTION: Final = N_("Please add a question.")
MAX_QUESTION_CHARS: Final = 8000
MAX_BUDGET: Final = 1_000_000

# Slack clients (and macOS text substitution) may turn "--" into an en or em dash.
_DASHES: Final = re.compile(r"^(?:--|\u2014|\u2013)(?=[A-Za-z])")
_MODEL_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_WORD: Final = re.compile(r"\s*(\S+)\s*")
_VALUE_FLAGS: Final = frozenset({"model", "budget"})
_SWITCHES: Final = frozenset({"fast", "private"})


class FlagError(ValueError):
    """The command text cannot be used; `sentence` says why, for the user (`str()` is its
    English)."""

    def __init__(self, sentence: Text) -> None:
        super().__init__(str(sentence))
        self.sentence = sentence

    @property
    def usage(self) -> Sentence:
        """Why, then how to use /ask."""
        return joined(self.sentence, ASK_USAGE)


@dataclass(frozen=True, slots=True)
class AskOptions:
    question: str
    model: str | None = None  # None: the configured thinking model
    budget: int | None = None  # None: the configured default
    fast: bool = False
    private: bool = False


def parse_ask(text: str) -> AskOptions:
    """Flags come first; the first word that is not a flag starts the question.

    `--` ends the flags explicitly, so a question may itself start with a dash.
    """
    rest = text.strip()
    values: dict[str, str] = {}
    switches: set[str] = set()
    while (first := _first_word(rest)) is not None:
        word, after = first
        if word == "--":
            rest = after
            break
        flag = _DASHES.sub("", word, count=1)
        if flag == word:
            break
        name, eq, value = flag.partition("=")
        name = name.lower()
        if name in _SWITCHES and not eq:
            switches.add(name)
        elif name in _VALUE_FLAGS:
            if not eq:
                value, after = _first_word(after) or ("", "")
            if not value:
                raise FlagError(say(N_("`--{name}` needs a value."), name=name))
            values[name] = value
        else:
            raise FlagError(say(N_("I don't know the option `{word}`."), word=shown_word(word)))
        rest = after

    rest = rest.strip()
    if not rest:
        raise FlagError(NO_QUESTION)
    if len(rest) > MAX_QUESTION_CHARS:
        raise FlagError(
            say(N_("Please keep the question under {limit} characters."), limit=MAX_QUESTION_CHARS)
        )
    model = values["model"].lower() if "model" in values else None
    if model is not None and not _MODEL_NAME.match(model):
        raise FlagError(N_("`--model` needs a model name such as `qwen-plus` or `qwq-plus`."))
    if model is not None and model.startswith("qwen-deep-research"):
        raise FlagError(N_("Deep research runs in a thread: use `/research <topic>` for it."))
    budget = _budget(values["budget"]) if "budget" in values else None
    if budget is not None and "fast" in switches:
        raise FlagError(
            N_("`--fast` turns thinking off, so `--budget` would have nothing to limit.")
        )
    return AskOptions(
        question=rest,
        model=model,
        budget=budget,
        fast="fast" in switches,
        private="private" in switches,
    )


def _first_word(text: str) -> tuple[str, str] | None:
    """The first whitespace-separated word and the text after it (inner newlines kept)."""
    match = _WORD.match(text)
    return (match.group(1), text[match.end() :]) if match else None


def _budget(raw: str) -> int:
    digits = raw.replace(",", "").replace("_", "")
    if not digits.isascii() or not digits.isdigit() or not 0 < int(digits) <= MAX_BUDGET:
        raise FlagError(
            say(
                N_("`--budget` needs a whole number of tokens from 1 to {limit}."),
                limit=MAX_BUDGET,
            )
        )
    return int(digits)
