"""Block Kit rendering: pure functions from domain values to Slack message payloads."""

from __future__ import annotations

import json
from typing import Any, Final

from bot.conversation import ConversationKey
from bot.progress import ProgressView, Stage
from bot.report import Report, numbered

STOP_ACTION: Final = "research_stop"
RETRY_ACTION: Final = "research_retry"

# Slack's `markdown` block holds 12,000 characters per message; stay clear of it.
MARKDOWN_CHUNK: Final = 11_000
SECTION_LIMIT: Final = 3000
MAX_LISTED_REFERENCES: Final = 15

_STAGE_LINES: Final[dict[Stage, str]] = {
    Stage.STARTING: ":hourglass_flowing_sand: Starting the research…",
    Stage.PLANNING: ":memo: Planning the research…",
    Stage.SEARCHING: ":mag: Searching the web…",
    Stage.WRITING: ":writing_hand: Writing the report…",
    Stage.DONE: ":white_check_mark: Research complete. The report is below.",
    Stage.STOPPED: ":black_square_for_stop: Research stopped.",
    Stage.FAILED: ":warning: Research did not finish.",
}

Message = dict[str, Any]


def key_value(key: ConversationKey) -> str:
    """A button's value naming its conversation (the team comes from the click itself)."""
    return json.dumps({"c": key.channel_id, "t": key.thread_ts})


def key_from_value(team_id: str, value: str) -> ConversationKey | None:
    try:
        data = json.loads(value)
        return ConversationKey(team_id, str(data["c"]), str(data["t"]))
    except (ValueError, KeyError, TypeError):
        return None


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def progress_message(view: ProgressView, key: ConversationKey) -> Message:
    headline = _STAGE_LINES[view.stage]
    lines = [f"*{headline}*"]
    if view.round and view.stage in (Stage.SEARCHING, Stage.WRITING):
        round_line = f"Search round {view.round}"
        if view.goal and view.stage is Stage.SEARCHING:
            round_line += f": {_escape(view.goal)}"
        lines.append(_clip(round_line, 500))
    facts = [f"{view.sources} source{'s' if view.sources != 1 else ''} found"]
    if view.rounds_finished:
        facts.append(f"{view.rounds_finished} round{'s' if view.rounds_finished != 1 else ''} done")
    facts.append(f"elapsed {duration(view.elapsed_seconds)}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
    ]
    if view.stage not in (Stage.DONE, Stage.STOPPED, Stage.FAILED):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": STOP_ACTION,
                        "text": {"type": "plain_text", "text": "Stop"},
                        "style": "danger",
                        "value": key_value(key),
                    }
                ],
            }
        )
    return {"text": f"{headline} ({', '.join(facts)})", "blocks": blocks}


def notice_message(sentence: str, key: ConversationKey, *, retry: bool) -> Message:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(sentence)}}
    ]
    if retry:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": RETRY_ACTION,
                        "text": {"type": "plain_text", "text": "Retry"},
                        "style": "primary",
                        "value": key_value(key),
                    }
                ],
            }
        )
    return {"text": sentence, "blocks": blocks}


def markdown_messages(text: str) -> list[Message]:
    """Model-written Markdown as one or more messages, split on paragraph boundaries."""
    return [
        {"text": _clip(chunk, 3000), "blocks": [{"type": "markdown", "text": chunk}]}
        for chunk in split_text(text, MARKDOWN_CHUNK)
    ]


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at paragraph, line or word ends if possible."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        # Prefer a paragraph break, then a line break, then a space, in the window's back half.
        for separator in ("\n\n", "\n", " "):
            cut = window.rfind(separator)
            if cut >= limit // 2:
                break
        else:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces or [""]


def report_summary(report: Report) -> Message:
    stats = report.stats
    tokens = stats.input_tokens + stats.output_tokens
    footer = (
        f"Took {duration(stats.duration_seconds)} · {tokens:,} tokens "
        f"({stats.input_tokens:,} in / {stats.output_tokens:,} out)"
    )
    if stats.cost_usd is not None:
        footer += f" · est. ${stats.cost_usd:,.4f}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(report.title, 150)}},
    ]
    if report.summary:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _escape(report.summary)}}
        )
    refs = numbered(report.references)
    if refs:
        lines = ["*Sources*"]
        size = len(lines[0])
        for shown, (i, r) in enumerate(refs):
            title = _clip(_escape(r.title).replace("|", "¦"), 120)
            line = f"{i}. <{r.url}|{title}>" if r.url else f"{i}. {title}"
            # A section holds 3000 characters; never cut a link in half.
            if shown == MAX_LISTED_REFERENCES or size + len(line) + 60 > SECTION_LIMIT:
                lines.append(f"…and {len(refs) - shown} more in the report file.")
                break
            lines.append(line)
            size += len(line) + 1
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    text = f"{report.title}: {report.summary}" if report.summary else report.title
    return {"text": _clip(text, 3000), "blocks": blocks}


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
