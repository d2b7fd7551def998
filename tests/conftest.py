"""Fixtures: local fakes of Slack and DashScope, and the real bot running against them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tenacity import wait_none

from bot.config import Settings, load_settings
from bot.front import new_event_loop
from bot.qwen.client import RetryPolicy
from bot.runtime import EVENTS_PATH, BotRuntime
from bot.services import Services
from tests.fakes.dashscope_server import FakeDashScope
from tests.fakes.slack_payloads import event_callback, post_signed
from tests.fakes.slack_server import FakeSlack
from tests.postgres import fresh_database


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every test on the event loop `python -m bot` runs on (uvloop; bot/front.py)."""
    return {"uvloop": new_event_loop}


SIGNING_SECRET = "test-signing-secret"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def dashscope() -> AsyncIterator[FakeDashScope]:
    async with FakeDashScope() as fake:
        yield fake


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A DATABASE_URL of a new, empty database on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.sqlite3'}"
        return
    async with fresh_database() as url:
        yield url


def bot_settings(
    slack: FakeSlack, dashscope: FakeDashScope, db: Path | str, *, mode: str, **extra: str
) -> Settings:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "DASHSCOPE_API_KEY": "sk-test",
        "DASHSCOPE_HTTP_BASE_URL": dashscope.base_url,
        "DATABASE_URL": db if isinstance(db, str) else f"sqlite:///{db}",
        "HOST": "127.0.0.1",
        "PORT": "0",
        "PROGRESS_UPDATE_SECONDS": "0.3",
        "DRAIN_SECONDS": "0",  # a test's bot stops at once unless the test says otherwise
        **extra,
    }
    if mode == "socket":
        env["SLACK_APP_TOKEN"] = "xapp-test"
    return load_settings(env, force_http=mode == "http", dotenv=None)


@dataclass
class Harness:
    """The real bot, and a way to send it what Slack would send over its transport."""

    runtime: BotRuntime
    slack: FakeSlack
    dashscope: FakeDashScope
    mode: str
    session: aiohttp.ClientSession

    @property
    def services(self) -> Services:
        assert self.runtime.services is not None
        return self.runtime.services

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.runtime.http_port}{EVENTS_PATH}"

    async def send_event(self, event: dict[str, Any], *, retry_num: int = 0, **kw: Any) -> Any:
        payload = event_callback(event, **kw)
        return await self.send(payload, "event", retry_num=retry_num)

    async def send(self, payload: dict[str, Any], kind: str, *, retry_num: int = 0) -> Any:
        """Deliver like Slack does; returns (status, body) over HTTP or the ack over Socket Mode."""
        if self.mode == "http":
            status, body, _ = await post_signed(
                self.session,
                self.url,
                SIGNING_SECRET,
                payload,
                kind=kind,  # type: ignore[arg-type]
                retry_num=retry_num or None,
            )
            assert status == 200, body
            return status, body
        envelope = {"event": "events_api", "command": "slash_commands"}.get(kind, "interactive")
        return await self.slack.socket_send(envelope, payload, retry_attempt=retry_num)


async def start_bot(
    slack: FakeSlack,
    dashscope: FakeDashScope,
    tmp_path: Path,
    mode: str,
    *,
    database_url: str | None = None,
    **extra: str,
) -> BotRuntime:
    db = database_url or tmp_path / "bot.sqlite3"
    settings = bot_settings(slack, dashscope, db, mode=mode, **extra)
    runtime = BotRuntime(
        settings, model_retry=RetryPolicy(attempts=3, max_seconds=10, wait=wait_none())
    )
    await runtime.start()
    if mode == "socket":
        await slack.wait_socket_connected()
    return runtime


@pytest.fixture(params=["http", "socket", "postgresql"])
async def bot(
    request: pytest.FixtureRequest, slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> AsyncIterator[Harness]:
    """The bot over signed HTTP and over Socket Mode on SQLite, and over HTTP on PostgreSQL."""
    if request.param == "postgresql":
        async with fresh_database() as url, _running(slack, dashscope, tmp_path, "http", url) as h:
            yield h
        return
    async with _running(slack, dashscope, tmp_path, request.param, None) as harness:
        yield harness


@asynccontextmanager
async def _running(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path, mode: str, url: str | None
) -> AsyncIterator[Harness]:
    runtime = await start_bot(slack, dashscope, tmp_path, mode, database_url=url)
    async with aiohttp.ClientSession() as session:
        try:
            yield Harness(runtime, slack, dashscope, mode, session)
        finally:
            await runtime.stop()
