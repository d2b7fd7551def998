"""A research conversation end to end: the real Bolt app, slack_sdk and dashscope SDK against
local fakes of Slack and DashScope, over signed HTTP and over Socket Mode."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.conftest import Harness
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    clarification_script,
    research_script,
)
from tests.fakes.slack_payloads import app_mention, message
from tests.fakes.slack_server import Call

QUESTION = (
    "Which aspects of AI in education matter most to you: personalised learning or assessment?"
)
REPORT_CHUNKS = [
    "# AI in Education\n\n",
    "Adaptive tutoring systems raise outcomes in controlled trials [1]. ",
    "Automated assessment saves teachers time [2], ",
    "but equity concerns remain [3].\n\n## Findings\n\n- Tutoring works.\n",
]
REPORT = "".join(REPORT_CHUNKS)
TOPIC = "research the use of AI in education"


def in_thread(ts: str) -> Any:
    return lambda call: call.args.get("thread_ts") == ts


def thread_texts(calls: list[Call]) -> str:
    return json.dumps([c.args for c in calls])


async def start_conversation(bot: Harness) -> str:
    """Mention the bot and wait for the clarifying question; returns the thread ts."""
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await bot.send_event(mention)
    await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == mention["ts"] and "Which aspects" in str(c.args),
    )
    return str(mention["ts"])


async def test_mention_reply_progress_report_and_ledger(bot: Harness) -> None:
    thread = await start_conversation(bot)

    # Step 1 went to the model with the text minus the mention markup, incrementally.
    first = bot.dashscope.requests[0].body
    assert first["model"] == "qwen-deep-research"
    assert first["input"]["messages"] == [{"role": "user", "content": TOPIC}]
    assert first["parameters"]["incremental_output"] is True
    question_post = bot.slack.calls_to("chat.postMessage")[-1]
    assert question_post.args["blocks"][0]["text"] == QUESTION

    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=3, pause=0.08))
    await bot.send_event(message("Personalised learning, please", thread_ts=thread))
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)

    # Step 2 carried the whole history.
    second = bot.dashscope.requests[1].body
    assert second["input"]["messages"] == [
        {"role": "user", "content": TOPIC},
        {"role": "assistant", "content": QUESTION},
        {"role": "user", "content": "Personalised learning, please"},
    ]
    assert second["parameters"]["incremental_output"] is True

    # The report file is exactly what the model streamed, followed by every reference.
    [upload] = bot.slack.uploads.values()
    document = upload.content.decode()
    assert upload.thread_ts == thread and upload.channel_id == "C1"
    assert document.startswith(REPORT)
    for ref in DEFAULT_REFERENCES:
        assert f"{ref['index_number']}. [{ref['title']}]({ref['url']})" in document

    # Then a summary message with the sources as links and the cost footer.
    summary = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "AI in Education" in str(c.args.get("blocks"))
    )
    summary_text = json.dumps(summary[-1].args["blocks"])
    assert "Adaptive tutoring systems raise outcomes" in summary_text
    for ref in DEFAULT_REFERENCES:
        assert ref["url"] in summary_text
    assert "tokens" in summary_text and "est. $" in summary_text

    # Progress: one message, edited in place, live edits no faster than the configured interval.
    progress_posts = [
        c
        for c in bot.slack.calls_to("chat.postMessage")
        if "research_stop" in json.dumps(c.args.get("blocks"))
    ]
    assert len(progress_posts) == 1
    await bot.slack.wait_for_call(
        "chat.update", lambda c: "Research complete" in json.dumps(c.args), timeout=15
    )
    updates = bot.slack.calls_to("chat.update")
    assert len(updates) >= 3
    [progress_ts] = {u.args["ts"] for u in updates}
    assert bot.slack.messages[progress_ts]["thread_ts"] == thread
    gaps = [b.at - a.at for a, b in zip([progress_posts[0], *updates], updates, strict=False)]
    # The live edits keep the interval; the last one, saying how the run ended, does not wait
    # for it (a restart in between would leave a finished run showing Stop).
    assert min(gaps[:-1]) >= 0.3 * 0.95, gaps
    shown = thread_texts(updates)
    assert "Search round" in shown and "sources found" in shown
    assert "Research complete" in json.dumps(updates[-1].args)
    assert "KeepAlive" not in thread_texts(bot.slack.calls)
    assert bot.slack.calls_to("assistant.threads.setStatus")

    # The ledger holds both calls for this workspace, with the last cumulative usage.
    records = await bot.services.ledger.records("T1")
    assert [(r.kind, r.model, r.user_id) for r in records] == [
        ("clarify", "qwen-deep-research", "UUSER"),
        ("research", "qwen-deep-research", "UUSER"),
    ]
    assert records[0].input_tokens == 120 and records[0].request_id == "req-clarify"
    assert records[1].input_tokens == 900 and records[1].output_tokens > 0
    assert records[1].cost_usd is not None and records[1].cost_usd > 0
    assert await bot.services.ledger.records("T2") == []


async def test_redelivered_mention_and_own_messages_start_nothing(bot: Harness) -> None:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await bot.send_event(mention, event_id="EvFIRST")
    await bot.slack.wait_for_call("chat.postMessage", in_thread(mention["ts"]))

    # Slack retries the same event (it thought the ack was late), then sends it again with the
    # same event id; and the bot hears its own message and an edit of it.
    await bot.send_event(mention, event_id="EvRETRY", retry_num=1)
    await bot.send_event(mention, event_id="EvFIRST")
    await bot.send_event(message("a bot post", user="UBOT", bot_id="BBOT", thread_ts=mention["ts"]))
    await bot.send_event(message("", subtype="message_changed", thread_ts=mention["ts"]))
    await bot.send_event(message("someone else's thread", thread_ts="1.000001"))
    await asyncio.sleep(0.5)

    assert len(bot.dashscope.requests) == 1
    assert len(bot.slack.calls_to("chat.postMessage")) == 1


async def test_thread_reply_that_mentions_the_bot_counts_once(bot: Harness) -> None:
    thread = await start_conversation(bot)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    reply = message("<@UBOT> assessment, please", thread_ts=thread)
    as_mention = app_mention(reply["text"], ts=reply["ts"], thread_ts=thread)
    await asyncio.gather(bot.send_event(as_mention), bot.send_event(reply))
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    await asyncio.sleep(0.3)

    assert len(bot.dashscope.requests) == 2
    assert bot.dashscope.requests[1].body["input"]["messages"][-1] == {
        "role": "user",
        "content": "assessment, please",
    }
    assert len(bot.slack.uploads) == 1


async def test_empty_mention_gets_a_how_to_and_no_model_call(bot: Harness) -> None:
    mention = app_mention("<@UBOT>   ")
    await bot.send_event(mention)
    [notice] = await bot.slack.wait_for_call("chat.postMessage", in_thread(mention["ts"]))
    assert "Mention me with a topic" in notice.args["text"]
    assert bot.dashscope.requests == []


async def test_acks_within_three_seconds(bot: Harness) -> None:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    result = await bot.send_event(app_mention(f"<@UBOT> {TOPIC}"))
    if bot.mode == "socket":
        assert result["_elapsed"] < 3
    await bot.slack.wait_for_call("chat.postMessage")


async def test_oversized_message_gets_the_limit_and_no_model_call(bot: Harness) -> None:
    mention = app_mention("<@UBOT> " + "word " * 2000)
    await bot.send_event(mention)
    [notice] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == mention["ts"]
    )
    assert "under 8,000 characters" in notice.args["text"]
    assert bot.dashscope.requests == []


async def test_direct_message_starts_a_conversation_without_a_mention(bot: Harness) -> None:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    dm = message(TOPIC, channel="D1", channel_type="im")
    await bot.send_event(dm)
    [question] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == dm["ts"]
    )
    assert question.args["channel"] == "D1"
    assert bot.dashscope.requests[0].body["input"]["messages"][0]["content"] == TOPIC
