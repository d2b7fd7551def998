"""Slack's requests are acknowledged on a thread of their own (handlers/front.py): an event
that causes work is recorded and acknowledged even while the main event loop, which reads
the research streams, is busy; it is handled once the loop is free."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.runtime import EVENTS_PATH, BotRuntime
from tests.conftest import SIGNING_SECRET, start_bot
from tests.fakes.dashscope_server import FakeDashScope, clarification_script
from tests.fakes.slack_payloads import app_mention, event_callback, signed_headers
from tests.fakes.slack_server import FakeSlack
from tests.postgres import fresh_database
from tests.test_e2e_research import QUESTION, TOPIC

BUSY_SECONDS = 1.5


@pytest.fixture(params=["sqlite", "postgresql"])
async def http_bot(
    request: pytest.FixtureRequest, slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> AsyncIterator[BotRuntime]:
    if request.param == "postgresql":
        async with fresh_database() as url:
            runtime = await start_bot(slack, dashscope, tmp_path, "http", database_url=url)
            try:
                yield runtime
            finally:
                await runtime.stop()
        return
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        yield runtime
    finally:
        await runtime.stop()


def _post(url: str, body: str, delay: float) -> tuple[int, float]:
    """Slack's side, on a thread of its own: wait, POST the signed event, time the answer."""
    time.sleep(delay)
    request = urllib.request.Request(
        url, data=body.encode(), headers=signed_headers(SIGNING_SECRET, body), method="POST"
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, time.perf_counter() - started


async def test_an_event_is_acknowledged_while_the_main_loop_is_busy(
    http_bot: BotRuntime, slack: FakeSlack, dashscope: FakeDashScope
) -> None:
    dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    body = json.dumps(event_callback(mention))
    url = f"http://127.0.0.1:{http_bot.http_port}{EVENTS_PATH}"
    sender = asyncio.get_running_loop().run_in_executor(None, _post, url, body, 0.2)
    # The main loop (the bot's listeners, and the fakes, which share it in this test) does
    # nothing else for 1.5 s, as a loop reading hundreds of streams might for a moment.
    time.sleep(BUSY_SECONDS)  # noqa: ASYNC251 - blocking the loop is the point
    status, latency = await asyncio.wait_for(sender, 10)
    assert status == 200
    assert latency < BUSY_SECONDS - 0.5, f"acknowledged after {latency:.2f} s"
    # Recorded before the ack, handled once the loop was free: the clarifying question.
    [question] = await slack.wait_for_call(
        "chat.postMessage", lambda c: QUESTION in str(c.args.get("text"))
    )
    assert question.args["thread_ts"] == mention["ts"]
    assert len(dashscope.requests) == 1
