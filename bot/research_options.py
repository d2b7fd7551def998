"""Per-request research options written in the request text: --summary, --no-clarify, …"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

DETAILED: Final = "model_detailed_report"
SUMMARY: Final = "model_summary_report"

OPTIONS_HELP: Final = (
    "`--summary` (a short report), `--detailed` (the full report), "
    "`--no-clarify` (skip the clarifying question), `--model NAME` (another research model)"
)

# Slack and phones turn "--" into an en or em dash; accept those as the same thing.
_OPTION: Final = re.compile(r"^(?:--|\u2014|\u2013)([a-z][a-z-]*)$", re.IGNORECASE)
_MODEL_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class OptionError(ValueError):
    """The text has an option the bot does not know; the message is for the user."""


@dataclass(frozen=True, slots=True)
class ResearchOptions:
    output_format: str | None = None  # None: the model's default (detailed)
    clarify: bool = True
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"output_format": self.output_format, "clarify": self.clarify, "model": self.model}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResearchOptions:
        return cls(
            output_format=data.get("output_format"),
            clarify=bool(data.get("clarify", True)),
            model=data.get("model"),
        )


def parse_research_options(text: str) -> tuple[ResearchOptions, str]:
    """Options anywhere in the text, and the text without them (line breaks kept)."""
    output_format: str | None = None
    clarify = True
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
                    raise OptionError(
                        f"`--model` needs a model name. Valid options: {OPTIONS_HELP}."
                    )
                model = value
                i += 1
            else:
                raise OptionError(
                    f"I don't know the option `{words[i]}`. Valid options: {OPTIONS_HELP}."
                )
            i += 1
        kept_lines.append(" ".join(w for w in kept if w))
    remaining = "\n".join(kept_lines).strip()
    return ResearchOptions(output_format, clarify, model), remaining
