"""Slack's requests are acknowledged on a thread of their own (bot/front.py): an event
that causes work is recorded and acknowledged even while the main event loop, which reads
the research streams, is busy; it is handled once the loop is free.

The port opens before the bot is built (issue 13, "start faster"): while it starts, health
answers, readiness says "starting", and Slack's requests wait for the bot instead of being
refused."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot import front
from bot.front import HEALTH_PATH, READY_PATH, CannotListen, FrontThread
from bot.runtime import EVENTS_PATH, BotRuntime
from storage import Storage
from tests.conftest import SIGNING_SECRET, start_bot
from tests.fakes.dashscope_server import FakeDashScope, clarification_script
from tests.fakes.slack_payloads import app_mention, event_callback, signed_headers, slash_command
from tests.fakes.slack_server import FakeSlack
from tests.postgres import fresh_database
from tests.test_e2e_research import QUESTION, TOPIC
from tests.test_process_slack_start import assert_no_traceback, bot_process

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


# --- the port opens first ----------------------------------------------------------------------


@pytest.fixture
async def door_front() -> AsyncIterator[FrontThread]:
    thread = FrontThread()
    await thread.open("127.0.0.1", 0)
    try:
        yield thread
    finally:
        await thread.stop()


def _base(thread: FrontThread) -> str:
    assert thread.door is not None and thread.door.port
    return f"http://127.0.0.1:{thread.door.port}"


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text="served " + await request.text())


async def test_before_the_routes_health_answers_readiness_says_starting_and_requests_wait(
    door_front: FrontThread,
) -> None:
    base = _base(door_front)
    async with aiohttp.ClientSession() as http:
        async with http.get(base + HEALTH_PATH) as response:
            assert response.status == 200
        async with http.get(base + READY_PATH) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert list((await response.json())["not_ready"]) == ["starting"]

        async def post() -> tuple[int, str]:
            async with http.post(base + EVENTS_PATH, data=b"payload") as response:
                return response.status, await response.text()

        waiting = asyncio.create_task(post())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # held at the door, not refused
        routes = web.Application()
        routes.router.add_post(EVENTS_PATH, _echo)
        assert door_front.door is not None
        await door_front.run(door_front.door.serve(routes))
        assert await asyncio.wait_for(waiting, 5) == (200, "served payload")
        # From now on the routes answer everything, unknown paths and methods included.
        assert await post() == (200, "served payload")
        async with http.get(base + "/nowhere") as response:
            assert response.status == 404
        async with http.get(base + EVENTS_PATH) as response:
            assert response.status == 405


async def test_a_request_still_waiting_after_the_wait_is_answered_503_to_retry(
    door_front: FrontThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(front, "START_WAIT_SECONDS", 0.3)
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.post(_base(door_front) + EVENTS_PATH, data=b"x") as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
        assert time.monotonic() - started < 3


async def test_a_port_in_use_is_named_in_a_sentence() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        thread = FrontThread()
        try:
            with pytest.raises(CannotListen) as refused:
                await thread.open("127.0.0.1", port)
        finally:
            await thread.stop()
    assert f"Cannot listen on 127.0.0.1:{port}" in str(refused.value)
    assert "set PORT" in str(refused.value)


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _post_form(url: str, fields: dict[str, str]) -> tuple[int, dict[str, object]]:
    body = urllib.parse.urlencode(fields)
    headers = {
        **signed_headers(SIGNING_SECRET, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read() or b"{}")


async def test_a_command_sent_while_the_bot_starts_is_answered_once_it_is_ready(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    # A restart: the database exists already; Slack is slow to answer auth.test.
    storage = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}")
    await storage.close()
    held = slack.hold_next("auth.test")
    env = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "PORT": "0", "HOST": "127.0.0.1"}
    async with bot_process(slack, dashscope, tmp_path, "--http", **env) as bot:
        await bot.wait_for_line(r"port \d+ open")
        found = re.search(r"port (\d+) open", bot.log)
        assert found is not None
        base = f"http://127.0.0.1:{found.group(1)}"
        await held.wait_reached()
        assert await asyncio.to_thread(_get, base + HEALTH_PATH) == (200, {"status": "ok"})
        status, body = await asyncio.to_thread(_get, base + READY_PATH)
        assert (status, list(body["not_ready"])) == (503, ["starting"])  # type: ignore[call-overload]
        command = asyncio.create_task(
            asyncio.to_thread(_post_form, base + EVENTS_PATH, slash_command("/research", "help"))
        )
        await asyncio.sleep(0.3)
        assert not command.done()
        held.release()
        status, answer = await asyncio.wait_for(command, 10)
        assert status == 200
        assert "/research" in str(answer.get("text"))  # the help, in the command's answer
        await bot.wait_for_line("bot started")
        assert await asyncio.to_thread(_get, base + READY_PATH) == (200, {"status": "ready"})
        assert "event loop: uvloop" in bot.log  # the loop it was measured on (bench/)
        assert await bot.stop() == 0
    assert_no_traceback(bot)


async def test_a_port_in_use_stops_the_start_with_a_sentence(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "PORT": port, "HOST": "127.0.0.1"}
        async with bot_process(slack, dashscope, tmp_path, "--http", **env) as bot:
            assert await bot.exit_code(15) == 2
    assert "Cannot start the bot." in bot.log
    assert f"Cannot listen on 127.0.0.1:{port}" in bot.log
    assert_no_traceback(bot)
