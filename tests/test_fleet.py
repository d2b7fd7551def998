"""Several bot processes on one PostgreSQL database: an event reaches any of them and is
handled once, two replies at two processes start one run, Stop works from any process, and a
killed process's research is taken over by a live one."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from bot.conversation import State
from handlers.render import STOP_ACTION
from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    Gate,
    clarification_script,
    research_script,
)
from tests.fakes.slack_payloads import app_mention, event_callback, message
from tests.fakes.slack_server import FakeSlack
from tests.postgres import fresh_database
from tests.test_durability import posts_saying, uploads
from tests.test_e2e_faults import REPO, click, key
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS, TOPIC

LEASE = 2.0


@asynccontextmanager
async def fleet(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path, size: int = 2
) -> AsyncIterator[tuple[str, list[Harness]]]:
    """`size` bot processes' worth of runtimes (HTTP) on one new PostgreSQL database."""
    async with fresh_database() as url, aiohttp.ClientSession() as session:
        runtimes = []
        try:
            for i in range(size):
                runtimes.append(
                    await start_bot(
                        slack,
                        dashscope,
                        tmp_path / f"p{i}",
                        "http",
                        database_url=url,
                        RUN_LEASE_SECONDS=str(LEASE),
                    )
                )
            yield url, [Harness(r, slack, dashscope, "http", session) for r in runtimes]
        finally:
            for runtime in runtimes:
                await runtime.stop()


async def asked(bots: list[Harness]) -> str:
    bots[0].dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await bots[0].send_event(mention, event_id="EvMENTION")
    # Slack thought the ack was late and redelivered it to the other process.
    await bots[1].send_event(mention, event_id="EvMENTION", retry_num=1)
    thread = str(mention["ts"])
    await bots[0].slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == thread and "Which aspects" in str(c.args),
    )
    return thread


async def test_a_redelivery_to_another_process_is_handled_once(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with fleet(slack, dashscope, tmp_path) as (_, bots):
        thread = await asked(bots)
        await asyncio.sleep(0.5)
    assert len(dashscope.requests) == 1
    assert posts_saying(slack, thread, "Which aspects") == 1


async def test_two_replies_at_two_processes_start_one_run(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with fleet(slack, dashscope, tmp_path) as (_, bots):
        thread = await asked(bots)
        dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1, pause=0.05))
        await asyncio.gather(
            bots[0].send_event(message("Personalised learning", thread_ts=thread)),
            bots[1].send_event(message("and assessment too", thread_ts=thread)),
        )
        await slack.wait_for_call("files.completeUploadExternal", timeout=20)
        await asyncio.sleep(0.5)
    research = [r for r in dashscope.requests if r.body["model"] == "qwen-deep-research"]
    assert len(research) == 2  # the question, then one research run
    assert uploads(slack) == 1


async def test_stop_pressed_on_another_process_ends_the_run_within_two_seconds(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with fleet(slack, dashscope, tmp_path) as (_, bots):
        thread = await asked(bots)
        gate = Gate(timeout=60)
        script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
        dashscope.enqueue([*script[:6], gate, *script[6:]])
        await bots[0].send_event(message("Personalised learning", thread_ts=thread))
        await gate.wait_reached()
        streaming = next(b for b in bots if b.services.research.is_running(key(thread)))
        other = next(b for b in bots if b is not streaming)
        pressed = time.monotonic()
        await click(other, STOP_ACTION, thread)
        deadline = pressed + 2.0
        while streaming.services.research.is_running(key(thread)):
            assert time.monotonic() < deadline, "the streaming process did not stop in 2 s"
            await asyncio.sleep(0.05)
        conversation = await other.services.conversations.get(key(thread))
        assert conversation is not None and conversation.state is State.CANCELLED
        records = await other.services.ledger.records("T1")
        assert [r.kind for r in records] == ["clarify", "research"]  # the cut run is paid for
        assert records[1].output_tokens > 0
    assert posts_saying(slack, thread, "Research stopped") == 1


async def test_a_killed_process_research_is_taken_over_by_a_live_one(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with fresh_database() as url:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_APP_TOKEN": "xapp-test",
            "SLACK_API_URL": slack.api_url,
            "DASHSCOPE_API_KEY": "sk-test",
            "DASHSCOPE_HTTP_BASE_URL": dashscope.base_url,
            "DATABASE_URL": url,
            "PROGRESS_UPDATE_SECONDS": "0.3",
            "RUN_LEASE_SECONDS": str(LEASE),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=REPO, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await slack.wait_socket_connected(timeout=20)
            dashscope.enqueue(clarification_script(QUESTION))
            mention = app_mention(f"<@UBOT> {TOPIC}")
            await slack.socket_send("events_api", event_callback(mention))
            thread = str(mention["ts"])
            await slack.wait_for_call(
                "chat.postMessage", lambda c: c.args.get("thread_ts") == thread, timeout=20
            )
            live = await start_bot(
                slack, dashscope, tmp_path, "http", database_url=url, RUN_LEASE_SECONDS=str(LEASE)
            )
            try:
                gate = Gate()
                script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
                dashscope.enqueue([*script[:6], gate, *script[6:]])
                reply = message("Personalised", thread_ts=thread)
                await slack.socket_send("events_api", event_callback(reply))
                await gate.wait_reached(timeout=10)
                assert not live.services.research.is_running(key(thread))  # type: ignore[union-attr]
                dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
                process.kill()
                killed = time.monotonic()
                await slack.wait_for_call(
                    "chat.postMessage",
                    lambda c: (
                        c.args.get("thread_ts") == thread and "running it again" in str(c.args)
                    ),
                    timeout=LEASE + 5,
                )
                assert time.monotonic() - killed <= LEASE + 5
                await slack.wait_for_call("files.completeUploadExternal", timeout=20)
            finally:
                await live.stop()
        finally:
            if process.returncode is None:
                process.kill()
            await asyncio.wait_for(process.wait(), 10)
    assert uploads(slack) == 1
