"""Per-request research options written in the request text: --summary, --no-clarify, …"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from bot.i18n import N_, Sentence, say
from bot.report import Delivery

DETAILED: Final = "model_detailed_report"
SUMMARY: Final = "model_summary_report"

OPTIONS_HELP: Final = N_(
    "`--summary` (a short report), `--detailed` (the full report), "
    "`--no-clarify` (skip the clarifying question), `--model NAME` (another research model)"
)
NEEDS_A_MODEL: Final = N_("`--model` needs a model name. Valid options: {options}.")
UNKNOWN_OPTION: Final = N_("I don't know the option `{word}`. Valid options: {options}.")

# Slack and phones turn "--" into an en or em dash; accept those as the same thing.
_OPTION: Final = re.compile(r"^(?:--|\u2014|\u2013)([a-z][a-z-]*)$", re.IGNORECASE)
_MODEL_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHOWN_WORD_CHARS: Final = 40  # of an unknown option, repeated back in the sentence


class OptionError(ValueError):
    """The text has an option the bot does not know; `sentence` is for the user (`str()` is
    its English)."""

    def __init__(self, sentence: Sentence) -> None:
        super().__init__(str(sentence))
        self.sentence = sentence


# Models that take MCP servers as `research_tools` (the 2025-12-15 snapshot, per the docs).
MCP_MODELS: Final = frozenset({"qwen-deep-research-2025-12-15"})


def supports_research_tools(model: str) -> bool:
    return model in MCP_MODELS


@dataclass(frozen=True, slots=True)
class ResearchOptions:
    """None means "not said": a workspace default or the model's own default applies."""

    output_format: str | None = None
    clarify: bool | None = None
    model: str | None = None

    @property
    def asks_first(self) -> bool:
        return self.clarify is not False

    def over(self, defaults: ResearchOptions) -> ResearchOptions:
        """These options, with what they leave unsaid taken from `defaults`."""
        return ResearchOptions(
            output_format=self.output_format or defaults.output_format,
            clarify=self.clarify if self.clarify is not None else defaults.clarify,
            model=self.model or defaults.model,
        )

    def to_json(self) -> dict[str, Any]:
        return {"output_format": self.output_format, "clarify": self.clarify, "model": self.model}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResearchOptions:
        clarify = data.get("clarify")
        return cls(
            output_format=data.get("output_format"),
            clarify=clarify if isinstance(clarify, bool) else None,
            model=data.get("model"),
        )


@dataclass(frozen=True, slots=True)
class WorkspaceResearch:
    """A workspace's research settings. The MCP tools carry their bearer tokens in the clear,
    so they are looked up for each call and never stored with a conversation."""

    defaults: ResearchOptions = ResearchOptions()
    research_tools: tuple[dict[str, Any], ...] = ()
    delivery: Delivery = Delivery.CANVAS_AND_FILE


def shown_word(word: str) -> str:
    """A word the person wrote, short enough to repeat back in a sentence."""
    if len(word) <= SHOWN_WORD_CHARS:
        return word
    return word[: SHOWN_WORD_CHARS - 1] + "…"


def parse_research_options(text: str) -> tuple[ResearchOptions, str]:
    """Options anywhere in the text, and the text without them (line breaks kept)."""
    output_format: str | None = None
    clarify: bool | None = None
    model: str | None = None
    kept_lines: list[str] = []
    for line in text.split("\n"):
        words = line.split(" ")
        kept: list[str] = []
        i = 0
        while i < len(words):
            match = _OPTION.match(words[i])
            if match is None:
                kept.append(words[i])
                i += 1
                continue
            name = match.group(1).lower()
            if name == "summary":
                output_format = SUMMARY
            elif name == "detailed":
                output_format = DETAILED
            elif name == "no-clarify":
                clarify = False
            elif name == "model":
                value = words[i + 1] if i + 1 < len(words) else ""
                if not _MODEL_NAME.match(value):
                    raise OptionError(say(NEEDS_A_MODEL, options=say(OPTIONS_HELP)))
                model = value
                i += 1
            else:
                raise OptionError(
                    say(UNKNOWN_OPTION, word=shown_word(words[i]), options=say(OPTIONS_HELP))
                )
            i += 1
        kept_lines.append(" ".join(w for w in kept if w))
    remaining = "\n".join(kept_lines).strip()
    return ResearchOptions(output_format, clarify, model), remaining
