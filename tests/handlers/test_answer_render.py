"""Answer messages and the reasoning modal stay within Slack's limits and lose no text."""

from __future__ import annotations

import json
from typing import Any

from bot.answers import Answer, AnswerStats
from handlers import answer_render as render
from tests.fakes.slack_server import MAX_BLOCKS, MAX_MARKDOWN_TOTAL, MAX_SECTION_TEXT


def answer(text: str, **kw: Any) -> Answer:
    values: dict[str, Any] = {
        "id": "a1",
        "asker": "UUSER",
        "question": "Why is the sky blue?",
        "text": text,
        "model": "qwen-plus",
        "thinking": True,
        "has_reasoning": True,
        "stats": AnswerStats(11, 200, 150, None),
    }
    values.update(kw)
    return Answer(**values)


def within_limits(message: dict[str, Any]) -> None:
    blocks = message["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert sum(len(b["text"]) for b in blocks if b["type"] == "markdown") <= MAX_MARKDOWN_TOTAL
    for b in blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= MAX_SECTION_TEXT


def markdown_of(messages: list[dict[str, Any]]) -> str:
    return "".join(b["text"] for m in messages for b in m["blocks"] if b["type"] == "markdown")


def action_ids(messages: list[dict[str, Any]]) -> list[str]:
    return [
        e["action_id"]
        for m in messages
        for b in m["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def test_short_answer_one_message_with_quote_footer_and_reasoning_button() -> None:
    [message] = render.answer_messages(answer("Rayleigh scattering."), quote=True, max_messages=4)
    within_limits(message)
    blocks = message["blocks"]
    assert blocks[0]["text"]["text"] == "<@UUSER> asked:\n>Why is the sky blue?"
    assert blocks[1] == {"type": "markdown", "text": "Rayleigh scattering."}
    footer = json.dumps(blocks[2])
    assert "`qwen-plus`" in footer and "211 tokens" in footer and "150 reasoning" in footer
    assert "est. $" not in footer  # no price for qwen-plus
    assert action_ids([message]) == [render.SHOW_REASONING_ACTION]
    assert "Rayleigh" not in json.dumps(blocks[2:])  # reasoning is never inline


def test_long_answer_is_split_without_losing_a_word() -> None:
    text = " ".join(f"word{i}" for i in range(5000))  # about 44,000 characters
    messages = render.answer_messages(answer(text), quote=True, max_messages=5)
    assert len(messages) == 4
    for m in messages:
        within_limits(m)
    assert markdown_of(messages).replace(" ", "") == text.replace(" ", "")
    assert action_ids(messages) == [render.SHOW_REASONING_ACTION]  # buttons once, at the end


def test_too_long_for_the_messages_allowed_says_so_and_offers_the_rest() -> None:
    text = " ".join(f"word{i}" for i in range(8000))
    messages = render.answer_messages(answer(text, follow_up=True), quote=False, max_messages=2)
    assert len(messages) == 2
    shown = markdown_of(messages)
    assert text.startswith(shown[:1000]) and len(shown) < len(text)
    last = json.dumps(messages[-1]["blocks"])
    assert "The answer continues for about" in last
    assert action_ids(messages) == [
        render.SHOW_REASONING_ACTION,
        render.SHOW_ANSWER_ACTION,
        render.RESEARCH_DEEPER_ACTION,
    ]


def test_notes_and_cost_in_the_footer() -> None:
    a = answer(
        "x",
        has_reasoning=False,
        stats=AnswerStats(1000, 1000, 0, 0.0123),
        notes=("`qwq-plus` always thinks first, so `--fast` had no effect.",),
    )
    [message] = render.answer_messages(a, quote=False, max_messages=1)
    footer = json.dumps([b for b in message["blocks"] if b["type"] == "context"][-1])
    assert "est. $0.0123" in footer and "--fast` had no effect" in footer
    assert action_ids([message]) == []


def test_question_quote_is_escaped_and_clipped() -> None:
    block = render.question_block("U1", "<!channel> & " + "q" * 5000)
    text = block["text"]["text"]
    assert "&lt;!channel&gt; &amp;" in text
    assert len(text) <= MAX_SECTION_TEXT and text.endswith("…")


def test_reasoning_modal_pages_cover_all_the_text() -> None:
    reasoning = " ".join(f"step{i}" for i in range(30_000))  # about 260,000 characters
    first = render.text_view(render.REASONING, reasoning, "why?", "a1")
    assert first["title"]["text"] == "Reasoning"
    texts: list[str] = []
    page, view = 0, first
    while True:
        assert len(view["blocks"]) <= 100
        texts += [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]
        nav = [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
        nexts = [e for e in nav if e["action_id"] == render.NEXT_PAGE_ACTION]
        if not nexts:
            break
        target = render.parse_page_value(nexts[0]["value"])
        assert target == ("a1", render.REASONING, page + 1)
        page += 1
        view = render.text_view(render.REASONING, reasoning, "why?", "a1", page)
    assert page >= 2
    assert all(len(t) <= MAX_SECTION_TEXT for t in texts)
    assert " ".join(texts) == reasoning


def test_short_reasoning_modal_has_no_paging() -> None:
    view = render.text_view(render.REASONING, "Hmm. Blue light scatters more.", "why?", "a1")
    assert [b["type"] for b in view["blocks"]] == ["context", "section"]
    assert view["blocks"][1]["text"] == {
        "type": "plain_text",
        "text": "Hmm. Blue light scatters more.",
    }
