"""More ways in (issue 11, item 5): the "Research this" message shortcut with its options modal,
and "Share in channel" on a private `/ask` answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Final

from handlers.answer_render import SHARE_ACTION
from handlers.shortcuts import CANNOT_READ, RESEARCH_THIS, RESEARCH_THIS_VIEW
from tests.conftest import Harness
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    clarification_script,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import (
    block_action,
    message,
    message_shortcut,
    modal_state,
    next_ts,
    view_submission,
)
from tests.test_e2e_answers import buttons, markdown, slash
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS

PEOPLE: Final = (
    ("UOTHER", "Our churn rose 4% after the price change &amp; the redesign."),
    ("UUSER", "Is that typical for SaaS companies?"),
)


def people_thread(
    slack: object, channel: str = "C1", said: Sequence[tuple[str, str]] = PEOPLE
) -> tuple[dict[str, object], str]:
    """A thread of people's messages in `channel`, as Slack holds it: (the last, root)."""
    stamps = [next_ts() for _ in said]
    root = stamps[0]
    for ts, (user, text) in zip(stamps, said, strict=True):
        message = {"channel": channel, "ts": ts, "text": text, "user": user, "thread_ts": root}
        slack.messages[ts] = message  # type: ignore[attr-defined]
    user, text = said[-1]
    return {"ts": stamps[-1], "text": text, "user": user, "thread_ts": root}, root


async def open_options(bot: Harness, msg: dict[str, object], channel: str = "C1") -> dict:
    await bot.send(message_shortcut(RESEARCH_THIS, msg, channel_id=channel), "interactive")
    [opened] = await bot.slack.wait_for_call("views.open")
    view = opened.args["view"]
    assert view["callback_id"] == RESEARCH_THIS_VIEW
    return dict(view)


async def test_research_this_researches_the_message_and_its_thread(bot: Harness) -> None:
    msg, root = people_thread(bot.slack)
    view = await open_options(bot, msg)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    values = modal_state(view, {"length": "model_summary_report", "clarify": []})
    await bot.send(view_submission(view, values), "interactive")
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)

    [request] = bot.dashscope.requests
    [topic] = request.body["input"]["messages"]
    assert topic["content"] == (
        "Our churn rose 4% after the price change & the redesign.\n\n"
        "Is that typical for SaaS companies?"
    )
    assert request.body["parameters"]["output_format"] == "model_summary_report"
    [upload] = bot.slack.uploads.values()
    assert (upload.channel_id, upload.thread_ts) == ("C1", root)  # in the message's thread


async def test_research_this_takes_others_words_as_a_topic_not_as_options(bot: Harness) -> None:
    """Someone else's `--word` is part of the topic, not an option the bot refuses: the
    options are the form's, and the text reaches the model as written."""
    said = (
        ("UOTHER", "Should we run the migration with --force on Friday?"),
        ("UOTHER", "\u2014no-clarify is what the old runbook says, --summary of risks below"),
    )
    msg, root = people_thread(bot.slack, said=said)
    view = await open_options(bot, msg)
    bot.dashscope.enqueue(clarification_script(QUESTION))
    values = modal_state(view, {"length": "model_summary_report", "clarify": ["ask"]})
    await bot.send(view_submission(view, values), "interactive")
    # The form asked for a clarifying question first, whatever the words say.
    await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == root and "Which aspects" in json.dumps(c.args),
    )
    [request] = bot.dashscope.requests
    [topic] = request.body["input"]["messages"]
    assert topic["content"] == "\n\n".join(text for _, text in said)
    posts = json.dumps([c.args for c in bot.slack.calls_to("chat.postMessage")])
    assert "know the option" not in posts

    # The answer starts research in the length the form chose.
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    await bot.send_event(message("The rollback plan", thread_ts=root))
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    assert bot.dashscope.requests[1].body["parameters"]["output_format"] == "model_summary_report"


async def test_research_this_where_the_bot_cannot_read(bot: Harness) -> None:
    bot.slack.outside_channels.add("C9")
    msg, _ = people_thread(bot.slack, "C9")
    view = await open_options(bot, msg, channel="C9")
    await bot.send(view_submission(view, modal_state(view)), "interactive")
    [told] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args["channel"] == "UUSER"
    )
    assert told.args["text"] == CANNOT_READ
    assert not bot.dashscope.requests


async def test_a_private_answer_can_be_shared_by_its_asker(bot: Harness) -> None:
    bot.dashscope.enqueue(thinking_script(["Hmm."], ["Blue light scatters most."]))
    _, url = await slash(bot, "/ask", "--private Why is the sky blue?")
    _, answer = await bot.slack.wait_for_responses(url, 2)
    assert answer.body["response_type"] == "ephemeral"
    value = buttons(answer.body["blocks"])[SHARE_ACTION]

    def press(user: str) -> dict[str, object]:
        payload = block_action(SHARE_ACTION, value, user_id=user, channel_id="COUT")
        payload["response_url"] = bot.slack.response_url(f"share-{user}")
        return payload

    await bot.send(press("UOTHER"), "interactive")  # not theirs to share
    await bot.send(press("UUSER"), "interactive")
    shared, deleted = await bot.slack.wait_for_responses("share-UUSER", 2)
    assert shared.body["response_type"] == "in_channel"
    assert markdown(shared) == "Blue light scatters most."
    assert ">Why is the sky blue?" in json.dumps(shared.body["blocks"])
    assert deleted.body.get("delete_original") is True  # the private copy goes
    await asyncio.sleep(0.2)  # time for a wrongful share to show
    assert not bot.slack.responses_to("share-UOTHER")
