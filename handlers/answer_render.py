"""Block Kit for quick answers and follow-ups: the answer messages, their buttons, the modals
that show the reasoning (or an answer too long for messages) page by page."""

from __future__ import annotations

import json
import math
from typing import Any, Final

from bot.answers import Answer
from bot.i18n import N_
from bot.records import ASK, FOLLOW_UP
from handlers.i18n import ENGLISH_TEXT, Translations
from handlers.render import (
    MARKDOWN_CHUNK,
    SECTION_LIMIT,
    TEXT_LIMIT,
    Message,
    clip,
    escape,
    escaped,
    feedback_block,
    split_text,
)

SHOW_REASONING_ACTION: Final = "answer_show_reasoning"
SHOW_ANSWER_ACTION: Final = "answer_show_full"
RESEARCH_DEEPER_ACTION: Final = "answer_research_deeper"
SHARE_ACTION: Final = "answer_share"  # on a private /ask answer: post it in the channel
MAX_SHARED_MESSAGES: Final = 3
# Two ids: the action ids in one actions block must differ.
PREVIOUS_PAGE_ACTION: Final = "answer_view_previous"
NEXT_PAGE_ACTION: Final = "answer_view_next"

REASONING: Final = "reasoning"
FULL_ANSWER: Final = "answer"

# A modal holds 100 blocks; pages stay well below that and below the size of a view payload.
MODAL_TEXT_BLOCKS: Final = 20
MODAL_CHUNK: Final = 2900  # a section's text holds 3000 characters
QUOTE_CHARS: Final = 1500  # of the quoted question, as Slack receives it (escaped)

_TITLES: Final = {REASONING: "Reasoning", FULL_ANSWER: "Full answer"}
IS_THINKING: Final = N_("{model} is thinking…")
ASKED: Final = N_("{asker} asked:")
THOUGHT_FIRST: Final = N_("thought first")
NO_THINKING: Final = N_("no thinking")
SHOW_REASONING: Final = N_("Show reasoning")
SHOW_FULL_ANSWER: Final = N_("Show full answer")
RESEARCH_DEEPER: Final = N_("Research this deeper")
SHARE_IN_CHANNEL: Final = N_("Share in channel")


def answer_parts(text: str) -> list[str]:
    return split_text(text, MARKDOWN_CHUNK)


def quoted(text: str, limit: int) -> str:
    """`text` as a Slack quote, escaped first and then clipped, so the quote fits `limit`
    however many `&`, `<` and `>` it holds."""
    return clip("\n".join(f">{line}" for line in escape(text).splitlines()), limit)


def question_block(asker: str, question: str, t: Translations = ENGLISH_TEXT) -> dict[str, Any]:
    text = t.gettext(ASKED).format(asker=f"<@{asker}>") + f"\n{quoted(question, QUOTE_CHARS)}"
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}}


def status_message(
    asker: str, question: str, model: str, *, quote: bool, t: Translations = ENGLISH_TEXT
) -> Message:
    thinking = t.gettext(IS_THINKING)
    line = ":hourglass_flowing_sand: " + thinking.format(model=f"`{model}`")
    blocks: list[dict[str, Any]] = [question_block(asker, question, t)] if quote else []
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
    return {"text": thinking.format(model=model), "blocks": blocks}


def notice_message(
    sentence: str, *, asker: str = "", question: str = "", t: Translations = ENGLISH_TEXT
) -> Message:
    sentence = t.gettext(sentence)  # the domain's fixed sentences are msgids
    blocks: list[dict[str, Any]] = [question_block(asker, question, t)] if question else []
    blocks.append(
        {"type": "section", "text": {"type": "mrkdwn", "text": escaped(sentence, SECTION_LIMIT)}}
    )
    return {"text": escaped(sentence, TEXT_LIMIT), "blocks": blocks}


def answer_messages(
    answer: Answer,
    *,
    quote: bool,
    max_messages: int,
    share: bool = False,
    t: Translations = ENGLISH_TEXT,
) -> list[Message]:
    """The answer in as many messages as it needs, up to `max_messages`; beyond that the last
    message says how much is left and offers the whole answer in a modal."""
    parts = answer_parts(answer.text)
    overflow = len(parts) > max_messages
    shown = parts[:max_messages]
    messages: list[Message] = []
    for i, part in enumerate(shown):
        blocks: list[dict[str, Any]] = []
        if i == 0 and quote:
            blocks.append(question_block(answer.asker, answer.question, t))
        blocks.append({"type": "markdown", "text": part})
        messages.append({"text": escaped(part, TEXT_LIMIT), "blocks": blocks})
    tail: list[dict[str, Any]] = []
    if overflow:
        left = len(answer.text) - sum(len(p) for p in shown)
        tail.append(
            section(
                f"The answer continues for about {left:,} more characters, more than Slack "
                "messages can hold here. Press *Show full answer* to read all of it."
            )
        )
    tail += footer_blocks(answer, overflow=overflow, share=share, t=t)
    messages[-1]["blocks"] += tail
    return messages


def shared_messages(asker: str, question: str, text: str, model: str, kind: str) -> list[Message]:
    """A private answer its asker shared in the channel: the question quoted, the answer, who
    shared it; an answer too long for a few messages is cut with a note, never silently."""
    parts = answer_parts(text)
    shown = parts[:MAX_SHARED_MESSAGES]
    messages: list[Message] = []
    for i, part in enumerate(shown):
        blocks: list[dict[str, Any]] = [question_block(asker, question)] if i == 0 else []
        blocks.append({"type": "markdown", "text": part})
        messages.append({"text": escaped(part, TEXT_LIMIT), "blocks": blocks})
    facts = f"Shared by <@{asker}> · `{escaped(model, 100)}`"
    if len(parts) > len(shown):
        left = len(text) - sum(len(p) for p in shown)
        facts += f" · about {left:,} more characters are not shown"
    messages[-1]["blocks"] += [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": facts}]},
        feedback_block(model, kind),
    ]
    return messages


def file_message(answer: Answer) -> Message:
    """The message beside an answer uploaded as a file (too long for a few messages)."""
    blocks = [
        question_block(answer.asker, answer.question),
        section(f"The answer is {len(answer.text):,} characters long, so it is in the file above."),
        *footer_blocks(answer, overflow=False),
    ]
    return {"text": f"Answer to: {escaped(answer.question, 200)}", "blocks": blocks}


def footer_blocks(
    answer: Answer, *, overflow: bool, share: bool = False, t: Translations = ENGLISH_TEXT
) -> list[dict[str, Any]]:
    stats = answer.stats
    facts = [f"`{answer.model}`", t.gettext(THOUGHT_FIRST if answer.thinking else NO_THINKING)]
    if stats.input_tokens or stats.output_tokens:
        tokens = f"{stats.input_tokens + stats.output_tokens:,} tokens"
        detail = f"{stats.input_tokens:,} in / {stats.output_tokens:,} out"
        if stats.reasoning_tokens:
            detail += f", {stats.reasoning_tokens:,} reasoning"
        facts.append(f"{tokens} ({detail})")
    if stats.cost_usd is not None:
        facts.append(f"est. ${stats.cost_usd:,.4f}")
    elements = [{"type": "mrkdwn", "text": " · ".join(facts)}]
    elements += [{"type": "mrkdwn", "text": note} for note in answer.notes[:9]]
    blocks: list[dict[str, Any]] = [{"type": "context", "elements": elements}]
    buttons = []
    if answer.has_reasoning:
        buttons.append(button(SHOW_REASONING_ACTION, t.gettext(SHOW_REASONING), answer.id))
    if overflow:
        buttons.append(button(SHOW_ANSWER_ACTION, t.gettext(SHOW_FULL_ANSWER), answer.id))
    if answer.follow_up:
        deeper = t.gettext(RESEARCH_DEEPER)
        buttons.append(button(RESEARCH_DEEPER_ACTION, deeper, answer.id, primary=True))
    if share:
        buttons.append(button(SHARE_ACTION, t.gettext(SHARE_IN_CHANNEL), answer.id))
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    blocks.append(feedback_block(answer.model, FOLLOW_UP if answer.follow_up else ASK, t))
    return blocks


def text_view(part: str, text: str, question: str, answer_id: str, page: int = 0) -> dict:
    """A modal with one page of `text` (the reasoning or the full answer)."""
    chunks = split_text(text, MODAL_CHUNK)
    pages = max(1, math.ceil(len(chunks) / MODAL_TEXT_BLOCKS))
    page = min(max(page, 0), pages - 1)
    heading = f"Question: {escaped(question, 500)}"
    blocks: list[dict[str, Any]] = [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": heading}]}
    ]
    for chunk in chunks[page * MODAL_TEXT_BLOCKS : (page + 1) * MODAL_TEXT_BLOCKS]:
        blocks.append({"type": "section", "text": {"type": "plain_text", "text": chunk}})
    if pages > 1:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"Page {page + 1} of {pages}"}],
            }
        )
        nav = []
        if page > 0:
            value = page_value(answer_id, part, page - 1)
            nav.append(button(PREVIOUS_PAGE_ACTION, "Previous page", value))
        if page < pages - 1:
            nav.append(button(NEXT_PAGE_ACTION, "Next page", page_value(answer_id, part, page + 1)))
        blocks.append({"type": "actions", "elements": nav})
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": _TITLES.get(part, "Answer")},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": blocks,
    }


def unavailable_view() -> dict:
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Not available"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [section("I can't find this answer any more, so there is nothing to show.")],
    }


def page_value(answer_id: str, part: str, page: int) -> str:
    return json.dumps({"id": answer_id, "part": part, "page": page})


def parse_page_value(value: str) -> tuple[str, str, int] | None:
    try:
        data = json.loads(value)
        return str(data["id"]), str(data["part"]), int(data["page"])
    except (ValueError, KeyError, TypeError):
        return None


def button(action_id: str, text: str, value: str, *, primary: bool = False) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }
    if primary:
        element["style"] = "primary"
    return element


def section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(mrkdwn, SECTION_LIMIT)}}
