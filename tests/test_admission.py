"""Admission, fair and bounded: research beyond a person's or a workspace's cap waits in a
durable queue and starts by itself; a budget is held by running calls so a burst cannot
overshoot it; Model Studio's throttling puts research back in the queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from bot import research as research_module
from bot.conversation import State
from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    Gate,
    HttpError,
    clarification_script,
    research_script,
)
from tests.fakes.slack_payloads import app_mention, message
from tests.fakes.slack_server import FakeSlack
from tests.test_durability import posts_saying, uploads
from tests.test_e2e_faults import key
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS, TOPIC

FAST = {"RUN_LEASE_SECONDS": "1"}  # supervisor ticks three times a second


async def clarified(bot: Harness, topic: str = TOPIC, *, user: str = "UUSER") -> str:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {topic}", user=user)
    await bot.send_event(mention)
    thread = str(mention["ts"])
    await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == thread and "Which aspects" in str(c.args),
    )
    return thread


async def test_research_over_the_users_cap_waits_in_a_queue_that_survives_a_restart(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    env = {**FAST, "USER_MAX_RUNNING": "1"}
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http", **env)
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            first, second = await clarified(bot), await clarified(bot, "AI in hospitals")
            gate = Gate()
            script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
            dashscope.enqueue([*script[:6], gate, *script[6:]])
            await bot.send_event(message("Personalised learning", thread_ts=first))
            await gate.wait_reached()
            await bot.send_event(message("Diagnosis", thread_ts=second))
            await slack.wait_for_call(
                "chat.postMessage",
                lambda c: c.args.get("thread_ts") == second and "1st in line" in str(c.args),
            )
            queued = await runtime.services.conversations.get(key(second))  # type: ignore[union-attr]
            assert queued is not None and queued.state is State.QUEUED
            assert len(dashscope.requests) == 3  # two questions, one research
        finally:
            await runtime.stop()  # the running one is cut; the queued one waits on disk

    dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    runtime = await start_bot(slack, dashscope, tmp_path, "http", **env)
    try:
        await slack.wait_for_call("files.completeUploadExternal", count=2, timeout=30)
        for thread in (first, second):
            done = await runtime.services.conversations.get(key(thread))  # type: ignore[union-attr]
            assert done is not None and done.state is State.DONE
    finally:
        await runtime.stop()
    assert uploads(slack) == 2
    # The queued thread's research went out only after the first one's finished.
    bodies = [r.body["input"]["messages"] for r in dashscope.requests]
    assert bodies[-1][-1]["content"] == "Diagnosis"


async def test_a_burst_cannot_overshoot_the_monthly_budget(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    env = {**FAST, "WORKSPACE_MONTHLY_TOKEN_BUDGET": "2000"}
    gate = Gate()
    dashscope.enqueue([gate, *clarification_script(QUESTION)])
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http", **env)
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            mentions = [app_mention(f"<@UBOT> topic {i}") for i in range(20)]
            await asyncio.gather(*(bot.send_event(m) for m in mentions))
            await gate.wait_reached()
            await slack.wait_for_call(
                "chat.postMessage", lambda c: "taken up by research" in str(c.args), count=19
            )
            gate.release()
            await slack.wait_for_call("chat.postMessage", lambda c: "Which aspects" in str(c.args))
        finally:
            await runtime.stop()
    assert len(dashscope.requests) == 1  # one call held the budget; nineteen were refused


async def test_throttling_before_output_puts_research_back_in_the_queue(
    bot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(research_module, "THROTTLE_WAIT", 0.2)
    thread = await clarified(bot)
    for _ in range(3):  # every attempt of the client's retry policy is refused
        bot.dashscope.enqueue([HttpError(429, "Throttling", "Requests throttling triggered.")])
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    await bot.send_event(message("Personalised learning", thread_ts=thread))
    await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == thread and "back in the queue" in str(c.args),
    )
    # Admitted again once its wait is over.
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=30)
    assert posts_saying(bot.slack, thread, "model service is busy") == 0  # never failed
    conversation = await bot.services.conversations.get(key(thread))
    assert conversation is not None and conversation.state is State.DONE
