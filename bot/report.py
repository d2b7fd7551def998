"""The finished report: the document uploaded to Slack and its short summary."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final

from bot.qwen.events import Reference

SUMMARY_CHARS: Final = 600


class Delivery(StrEnum):
    """How a workspace gets its reports (a workspace setting)."""

    CANVAS_AND_FILE = "canvas_and_file"  # a Slack canvas, and the Markdown file
    CANVAS = "canvas"  # the canvas alone (the file when no canvas can be made)
    FILE = "file"  # the Markdown file alone

    @property
    def wants_canvas(self) -> bool:
        return self is not Delivery.FILE

    @property
    def wants_file(self) -> bool:
        return self is not Delivery.CANVAS


@dataclass(frozen=True, slots=True)
class RunStats:
    duration_seconds: float
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None  # None when the model has no known price


@dataclass(frozen=True, slots=True)
class Report:
    topic: str
    text: str  # exactly as the model wrote it
    references: tuple[Reference, ...]
    stats: RunStats
    # Names this delivery in the thread, so a redelivery after a crash finds what was posted.
    marker: str = ""
    model: str = ""  # the model that wrote it (kept with feedback on it)

    @property
    def title(self) -> str:
        for line in self.text.splitlines():
            heading = re.match(r"^#{1,3}\s+(.+?)(?:\s+#+)?\s*$", line)
            if heading:
                return heading.group(1).strip()
        return _shorten(self.topic, 120) or "Research report"

    @property
    def summary(self) -> str:
        """The report's first paragraph of prose, shortened."""
        for block in re.split(r"\n\s*\n", self.text):
            block = block.strip()
            if not block or block.startswith(("#", "|", "```", "---", "- ", "* ", "> ")):
                continue
            return _shorten(" ".join(block.split()), SUMMARY_CHARS)
        return ""

    def markdown(self) -> str:
        """The report followed by a numbered references section."""
        if not self.references:
            return self.text
        lines = [self.text.rstrip("\n"), "", "## References", ""]
        lines += [f"{i}. [{_md_label(r.title)}]({r.url})" for i, r in numbered(self.references)]
        return "\n".join(lines) + "\n"

    @property
    def filename(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")[:60]
        suffix = f"-{self.marker[:6]}" if self.marker else ""
        return f"{slug or 'research-report'}{suffix}.md"


def numbered(references: Sequence[Reference]) -> list[tuple[int, Reference]]:
    """References in the model's own numbering, falling back to list order."""
    ordered = sorted(references, key=lambda r: r.index)
    return [(r.index or i, r) for i, r in enumerate(ordered, start=1)]


def _shorten(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def _md_label(title: str) -> str:
    return title.replace("[", "(").replace("]", ")").replace("\n", " ")
