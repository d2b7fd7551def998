"""Faults end to end: model errors, Stop, Retry, restarts, duplicates, Slack rate limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.conversation import ConversationKey, State
from handlers.render import RETRY_ACTION, STOP_ACTION, key_value
from tests.conftest import SIGNING_SECRET, Harness, start_bot
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    Gate,
    HttpError,
    MidStreamError,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import app_mention, block_action, message, post_signed
from tests.fakes.slack_server import FakeSlack
from tests.test_e2e_research import QUESTION, REPORT, REPORT_CHUNKS, TOPIC, start_conversation

REPO = Path(__file__).resolve().parent.parent


def key(thread: str) -> ConversationKey:
    return ConversationKey("T1", "C1", thread)


def notices(slack: FakeSlack, thread: str) -> str:
    return json.dumps(
        [c.args for c in slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == thread]
    )


async def click(bot: Harness, action_id: str, thread: str) -> None:
    # Stop is pressed on the run's own progress message (anywhere else it does nothing).
    message_ts = None
    if action_id == STOP_ACTION:
        conversation = await bot.services.conversations.get(key(thread))
        message_ts = conversation.progress_ts if conversation is not None else None
    payload = block_action(
        action_id, key_value(key(thread)), thread_ts=thread, message_ts=message_ts
    )
    await bot.send(payload, "interactive")


async def test_model_throttling_is_retried_before_anything_reached_slack(bot: Harness) -> None:
    bot.dashscope.enqueue([HttpError(429, "Throttling.RateQuota", "Requests rate limit exceeded")])
    bot.dashscope.enqueue([HttpError(503, "ServiceUnavailable", "busy")])
    thread = await start_conversation(bot)
    assert len(bot.dashscope.requests) == 3
    state = await bot.services.conversations.get(key(thread))
    assert state is not None and state.state is State.AWAITING_CLARIFICATION
    assert "Throttling" not in notices(bot.slack, thread)


async def test_invalid_api_key_says_what_to_fix_without_a_retry_storm(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    runtime = await start_bot(slack, dashscope, tmp_path, "http", DASHSCOPE_API_KEY="sk-wrong")
    try:
        async with aiohttp.ClientSession() as session:
            bot = Harness(runtime, slack, dashscope, "http", session)
            mention = app_mention(f"<@UBOT> {TOPIC}")
            await bot.send_event(mention)
            [notice] = await slack.wait_for_call(
                "chat.postMessage", lambda c: c.args.get("thread_ts") == mention["ts"]
            )
    finally:
        await runtime.stop()
    assert len(dashscope.requests) == 1
    assert "API key was rejected" in notice.args["text"]
    assert "DASHSCOPE_API_KEY" in notice.args["text"]
    assert RETRY_ACTION in json.dumps(notice.args["blocks"])
    assert "Invalid API-key provided" not in json.dumps([c.args for c in slack.calls])


async def test_mid_stream_error_keeps_history_and_retry_finishes(bot: Harness) -> None:
    thread = await start_conversation(bot)
    broken = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1)[:8]
    bot.dashscope.enqueue([*broken, MidStreamError("InternalError", "internal failure", 500)])
    await bot.send_event(message("Personalised learning", thread_ts=thread))
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "internal error" in c.args.get("text", "")
    )
    assert len(bot.dashscope.requests) == 2  # never retried once output was shown
    conversation = await bot.services.conversations.get(key(thread))
    assert conversation is not None and conversation.state is State.FAILED
    assert len(conversation.history) == 3

    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    await click(bot, RETRY_ACTION, thread)
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    assert bot.dashscope.requests[2].body["input"] == bot.dashscope.requests[1].body["input"]
    assert next(iter(bot.slack.uploads.values())).content.decode().startswith(REPORT)
    records = await bot.services.ledger.records("T1")
    assert [r.kind for r in records] == ["clarify", "research", "research"]


async def test_stop_closes_the_stream_and_records_usage(bot: Harness) -> None:
    thread = await start_conversation(bot)
    gate = Gate()
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    bot.dashscope.enqueue([*script[:6], gate, *script[6:]])
    await bot.send_event(message("Personalised learning", thread_ts=thread))
    await gate.wait_reached()
    await bot.slack.wait_for_call("chat.postMessage", lambda c: STOP_ACTION in json.dumps(c.args))

    await click(bot, STOP_ACTION, thread)
    await bot.dashscope.wait_for_disconnects(1)
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "Research stopped" in c.args.get("text", "")
    )
    conversation = await bot.services.conversations.get(key(thread))
    assert conversation is not None and conversation.state is State.CANCELLED
    records = await bot.services.ledger.records("T1")
    assert [r.kind for r in records] == ["clarify", "research"]
    assert records[1].output_tokens > 0

    # A second click does nothing; Retry afterwards runs the research again.
    await click(bot, STOP_ACTION, thread)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    await click(bot, RETRY_ACTION, thread)
    await click(bot, RETRY_ACTION, thread)  # double click: acts once
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    await asyncio.sleep(0.3)
    assert len(bot.dashscope.requests) == 3


async def test_two_replies_at_once_start_one_run(bot: Harness) -> None:
    thread = await start_conversation(bot)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1, pause=0.05))
    bot.dashscope.enqueue(thinking_script(["thinking"], ["Here is the answer."]))
    await asyncio.gather(
        bot.send_event(message("Personalised learning", thread_ts=thread)),
        bot.send_event(message("and assessment too", thread_ts=thread)),
    )
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    # The reply that lost the race is kept, and answered as a follow-up after the report.
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "once the report is in" in c.args.get("text", "")
    )
    await bot.dashscope.wait_for_requests(3)
    models = [r.body["model"] for r in bot.dashscope.requests]
    assert models == ["qwen-deep-research", "qwen-deep-research", "qwen-plus"]
    assert len(bot.slack.uploads) == 1


async def test_slack_rate_limit_on_progress_edits_is_honoured(bot: Harness) -> None:
    thread = await start_conversation(bot)
    bot.slack.fail_next("chat.update", status=429, retry_after=1, times=1)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2, pause=0.1))
    await bot.send_event(message("Personalised learning", thread_ts=thread))
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    await bot.slack.wait_for_call(
        "chat.update", lambda c: "Research complete" in json.dumps(c.args), timeout=15
    )
    updates = bot.slack.calls_to("chat.update")
    limited = [i for i, c in enumerate(updates) if c.error == "ratelimited"]
    assert limited == [0]
    assert updates[1].at - updates[0].at >= 0.95  # waited for Retry-After
    assert "Research complete" in json.dumps(updates[-1].args)


async def test_bad_or_stale_signature_is_rejected_and_changes_nothing(bot: Harness) -> None:
    if bot.mode != "http":
        pytest.skip("signatures exist only in HTTP mode")
    payload: dict[str, Any] = {"type": "event_callback", "team_id": "T1", "event_id": "EvBAD"}
    payload["event"] = app_mention(f"<@UBOT> {TOPIC}")
    status, _, _ = await post_signed(
        bot.session, bot.url, SIGNING_SECRET, payload, bad_signature=True
    )
    assert status == 401
    from tests.fakes.slack_payloads import signed_headers

    body = json.dumps(payload)
    stale = signed_headers(SIGNING_SECRET, body, timestamp=1_600_000_000)
    async with bot.session.post(bot.url, data=body, headers=stale) as resp:
        assert resp.status == 401
    await asyncio.sleep(0.2)
    assert bot.dashscope.requests == []
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_pending_clarification_survives_a_restart(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http")
        try:
            thread = await start_conversation(Harness(runtime, slack, dashscope, "http", session))
        finally:
            await runtime.stop()
        runtime = await start_bot(slack, dashscope, tmp_path, "http")
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
            await bot.send_event(message("Personalised learning", thread_ts=thread))
            await slack.wait_for_call("files.completeUploadExternal", timeout=20)
        finally:
            await runtime.stop()
    assert dashscope.requests[1].body["input"]["messages"][1]["content"] == QUESTION


async def test_a_question_in_a_thread_whose_run_failed_is_answered_after_retry(
    bot: Harness,
) -> None:
    bot.slack.streaming = False  # answers as whole messages, counted by their posts
    thread = await start_conversation(bot)
    broken = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1)[:8]
    bot.dashscope.enqueue([*broken, MidStreamError("InternalError", "internal failure", 500)])
    await bot.send_event(message("Personalised learning", thread_ts=thread))
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "internal error" in c.args.get("text", "")
    )
    await bot.send_event(message("Which source is newest?", thread_ts=thread))
    [notice] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "answer your question" in c.args.get("text", "")
    )
    assert RETRY_ACTION in json.dumps(notice.args["blocks"])

    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    bot.dashscope.enqueue(thinking_script(["Checking dates."], ["Source 1.1 is newest."]))
    await click(bot, RETRY_ACTION, thread)
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == thread and "Source 1.1 is newest" in str(c.args),
        timeout=20,
    )
    assert bot.dashscope.requests[-1].body["input"]["messages"][-1] == {
        "role": "user",
        "content": "Which source is newest?",
    }
