"""Block Kit for quick answers and follow-ups: the answer messages, their buttons, the modals
that show the reasoning (or an answer too long for messages) page by page."""

from __future__ import annotations

import json
import math
from typing import Any, Final

from bot.answers import Answer
from bot.i18n import N_, Text, say
from bot.records import ASK, FOLLOW_UP
from handlers.i18n import ENGLISH_TEXT, Translations, show
from handlers.render import (
    MARKDOWN_CHUNK,
    SECTION_LIMIT,
    TEXT_LIMIT,
    Message,
    clip,
    escape,
    escaped,
    estimate,
    feedback_block,
    split_text,
    tokens_line,
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

# Modal titles: at most 24 characters in every language.
_TITLES: Final = {REASONING: N_("Reasoning"), FULL_ANSWER: N_("Full answer")}
ANSWER_TITLE: Final = N_("Answer")
CLOSE: Final = N_("Close")
IS_THINKING: Final = N_("{model} is thinking…")
ASKED: Final = N_("{asker} asked:")
THOUGHT_FIRST: Final = N_("thought first")
NO_THINKING: Final = N_("no thinking")
SHOW_REASONING: Final = N_("Show reasoning")
SHOW_FULL_ANSWER: Final = N_("Show full answer")
RESEARCH_DEEPER: Final = N_("Research this deeper")
SHARE_IN_CHANNEL: Final = N_("Share in channel")
CONTINUES: Final = N_(
    "The answer continues for about {count} more characters, more than Slack messages can "
    "hold here. Press *{button}* to read all of it."
)
SHARED_BY: Final = N_("Shared by {user}")
NOT_SHOWN: Final = N_("about {count} more characters are not shown")
IN_THE_FILE: Final = N_("The answer is {count} characters long, so it is in the file above.")
ANSWER_TO: Final = N_("Answer to: {question}")
QUESTION_LINE: Final = N_("Question: {question}")
PAGE: Final = N_("Page {page} of {pages}")
PREVIOUS_PAGE: Final = N_("Previous page")
NEXT_PAGE: Final = N_("Next page")
NOT_AVAILABLE: Final = N_("Not available")
GONE: Final = N_("I can't find this answer any more, so there is nothing to show.")


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
    text: Text, *, asker: str = "", question: str = "", t: Translations = ENGLISH_TEXT
) -> Message:
    sentence = show(t, text)
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
        tail.append(section(show(t, say(CONTINUES, count=left, button=say(SHOW_FULL_ANSWER)))))
    tail += footer_blocks(answer, overflow=overflow, share=share, t=t)
    messages[-1]["blocks"] += tail
    return messages


def shared_messages(
    asker: str,
    question: str,
    text: str,
    model: str,
    kind: str,
    t: Translations = ENGLISH_TEXT,
) -> list[Message]:
    """A private answer its asker shared in the channel: the question quoted, the answer, who
    shared it; an answer too long for a few messages is cut with a note, never silently."""
    parts = answer_parts(text)
    shown = parts[:MAX_SHARED_MESSAGES]
    messages: list[Message] = []
    for i, part in enumerate(shown):
        blocks: list[dict[str, Any]] = [question_block(asker, question, t)] if i == 0 else []
        blocks.append({"type": "markdown", "text": part})
        messages.append({"text": escaped(part, TEXT_LIMIT), "blocks": blocks})
    facts = [show(t, say(SHARED_BY, user=f"<@{asker}>")), f"`{escaped(model, 100)}`"]
    if len(parts) > len(shown):
        left = len(text) - sum(len(p) for p in shown)
        facts.append(show(t, say(NOT_SHOWN, count=left)))
    messages[-1]["blocks"] += [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
        feedback_block(model, kind, t),
    ]
    return messages


def file_message(answer: Answer, t: Translations = ENGLISH_TEXT) -> Message:
    """The message beside an answer uploaded as a file (too long for a few messages)."""
    blocks = [
        question_block(answer.asker, answer.question, t),
        section(show(t, say(IN_THE_FILE, count=len(answer.text)))),
        *footer_blocks(answer, overflow=False, t=t),
    ]
    text = show(t, say(ANSWER_TO, question=escaped(answer.question, 200)))
    return {"text": text, "blocks": blocks}


def footer_blocks(
    answer: Answer, *, overflow: bool, share: bool = False, t: Translations = ENGLISH_TEXT
) -> list[dict[str, Any]]:
    stats = answer.stats
    facts = [f"`{answer.model}`", t.gettext(THOUGHT_FIRST if answer.thinking else NO_THINKING)]
    if stats.input_tokens or stats.output_tokens:
        facts.append(
            tokens_line(stats.input_tokens, stats.output_tokens, stats.reasoning_tokens, t=t)
        )
    if stats.cost_usd is not None:
        facts.append(estimate(stats.cost_usd, t))
    elements = [{"type": "mrkdwn", "text": " · ".join(facts)}]
    elements += [{"type": "mrkdwn", "text": show(t, note)} for note in answer.notes[:9]]
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


def text_view(
    part: str,
    text: str,
    question: str,
    answer_id: str,
    page: int = 0,
    t: Translations = ENGLISH_TEXT,
) -> dict:
    """A modal with one page of `text` (the reasoning or the full answer)."""
    chunks = split_text(text, MODAL_CHUNK)
    pages = max(1, math.ceil(len(chunks) / MODAL_TEXT_BLOCKS))
    page = min(max(page, 0), pages - 1)
    heading = show(t, say(QUESTION_LINE, question=escaped(question, 500)))
    blocks: list[dict[str, Any]] = [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": heading}]}
    ]
    for chunk in chunks[page * MODAL_TEXT_BLOCKS : (page + 1) * MODAL_TEXT_BLOCKS]:
        blocks.append({"type": "section", "text": {"type": "plain_text", "text": chunk}})
    if pages > 1:
        where = show(t, say(PAGE, page=page + 1, pages=pages))
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": where}]})
        nav = []
        if page > 0:
            value = page_value(answer_id, part, page - 1)
            nav.append(button(PREVIOUS_PAGE_ACTION, t.gettext(PREVIOUS_PAGE), value))
        if page < pages - 1:
            value = page_value(answer_id, part, page + 1)
            nav.append(button(NEXT_PAGE_ACTION, t.gettext(NEXT_PAGE), value))
        blocks.append({"type": "actions", "elements": nav})
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": t.gettext(_TITLES.get(part, ANSWER_TITLE))},
        "close": {"type": "plain_text", "text": t.gettext(CLOSE)},
        "blocks": blocks,
    }


def unavailable_view(t: Translations = ENGLISH_TEXT) -> dict:
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": t.gettext(NOT_AVAILABLE)},
        "close": {"type": "plain_text", "text": t.gettext(CLOSE)},
        "blocks": [section(t.gettext(GONE))],
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
