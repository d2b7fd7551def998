"""Answers streamed as they are written (issue 11, item 3): `/ask` where the bot can post, and
thread follow-ups, stream into their thread with chat.startStream/appendStream/stopStream; the
whole-message path stands in where streaming is refused, and a stream Slack ends is finished
and continued in a new message. No text is ever lost."""

from __future__ import annotations

import json
from typing import Any

from handlers.answer_render import RESEARCH_DEEPER_ACTION, SHOW_REASONING_ACTION
from handlers.render import FEEDBACK_ACTION
from tests.conftest import Harness
from tests.fakes.dashscope_server import thinking_script
from tests.fakes.slack_payloads import message
from tests.test_e2e_answers import finish_research, slash

# An answer written in eight pieces of about 120 characters.
PIECES = [f"Part {i}: " + "the sky scatters blue light more than red. " * 3 for i in range(8)]
ANSWER = "".join(PIECES).strip()


def thread_messages(bot: Harness, thread: str) -> list[dict[str, Any]]:
    """The bot's replies in `thread` as people see them now, oldest first."""
    return sorted(
        (m for m in bot.slack.messages.values() if m.get("thread_ts") == thread),
        key=lambda m: m["ts"],
    )


def shown_text(m: dict[str, Any]) -> str:
    markdown = [b["text"] for b in m.get("blocks") or [] if b.get("type") == "markdown"]
    return "".join(markdown) if markdown else str(m.get("text") or "")


def action_ids(blocks: Any) -> set[str]:
    return {
        e.get("action_id")
        for b in blocks or []
        if b.get("type") in ("actions", "context_actions")
        for e in b.get("elements") or []
    }


def squeezed(text: str) -> str:
    return "".join(text.split())


async def ask_in_channel(bot: Harness, pieces: list[str]) -> tuple[str, str]:
    """`/ask` in C1, where the bot is a member: (the question's ts, the response URL)."""
    bot.dashscope.enqueue(thinking_script(["Rayleigh."], pieces))
    _, url = await slash(bot, "/ask", "Why is the sky blue?", channel="C1")
    [root] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") is None
    )
    assert root.args["channel"] == "C1" and "Why is the sky blue?" in json.dumps(root.args)
    [posted] = [m for m in bot.slack.messages.values() if m.get("thread_ts") is None]
    return str(posted["ts"]), url


async def test_an_ask_answer_streams_into_the_questions_thread(bot: Harness) -> None:
    thread, url = await ask_in_channel(bot, PIECES)
    [stopped] = await bot.slack.wait_for_call("chat.stopStream")
    [start] = bot.slack.calls_to("chat.startStream")
    assert start.args["thread_ts"] == thread
    assert (start.args["recipient_team_id"], start.args["recipient_user_id"]) == ("T1", "UUSER")
    # In pieces, as written; the end carries the buttons.
    pieces = bot.slack.streams[stopped.args["ts"]]
    assert len(pieces) >= 3
    assert "".join(pieces).strip() == ANSWER
    assert {SHOW_REASONING_ACTION, FEEDBACK_ACTION} <= action_ids(stopped.args["blocks"])
    [answer] = thread_messages(bot, thread)
    assert answer["text"].strip() == ANSWER and not answer["streaming"]
    assert not bot.slack.responses_to(url)  # nothing through the response URL


async def test_where_slack_offers_no_streaming_the_answer_comes_whole(bot: Harness) -> None:
    bot.slack.streaming = False
    thread, _ = await ask_in_channel(bot, PIECES)
    [posted] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == thread
    )
    [answer] = thread_messages(bot, thread)
    assert shown_text(answer) == ANSWER
    assert FEEDBACK_ACTION in action_ids(posted.args["blocks"])


async def test_a_stream_slack_ends_goes_on_in_a_new_message(bot: Harness) -> None:
    bot.slack.stream_max_bytes = 700  # msg_too_long after about five pieces
    thread, _ = await ask_in_channel(bot, PIECES)
    await bot.slack.wait_for_call(
        "chat.stopStream", lambda c: FEEDBACK_ACTION in action_ids(c.args.get("blocks"))
    )
    replies = thread_messages(bot, thread)
    assert len(replies) >= 2 and len(bot.slack.calls_to("chat.startStream")) >= 2
    assert any(c.error == "msg_too_long" for c in bot.slack.calls_to("chat.appendStream"))
    assert squeezed("".join(shown_text(m) for m in replies)) == squeezed(ANSWER)


async def test_a_stream_that_fails_leaves_the_rest_to_whole_messages(bot: Harness) -> None:
    bot.slack.fail_next("chat.appendStream", status=200, error="internal_error", times=1)
    thread, _ = await ask_in_channel(bot, PIECES)
    [rest] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == thread
    )
    replies = thread_messages(bot, thread)
    streamed = [m for m in replies if m["ts"] in bot.slack.streams]
    assert streamed and all(not m["streaming"] for m in streamed)  # finished, not left open
    assert squeezed("".join(shown_text(m) for m in replies)) == squeezed(ANSWER)
    assert FEEDBACK_ACTION in action_ids(rest.args["blocks"])


async def test_a_follow_up_streams_with_its_research_deeper_button(bot: Harness) -> None:
    thread = await finish_research(bot)
    bot.slack.streaming = True  # finish_research answers whole; this thread streams
    bot.dashscope.enqueue(thinking_script(["The report says."], PIECES))
    await bot.send_event(message("What about costs?", thread_ts=thread))
    [stopped] = await bot.slack.wait_for_call("chat.stopStream")
    assert bot.slack.messages[stopped.args["ts"]]["thread_ts"] == thread
    assert "".join(bot.slack.streams[stopped.args["ts"]]).strip() == ANSWER
    assert RESEARCH_DEEPER_ACTION in action_ids(stopped.args["blocks"])
