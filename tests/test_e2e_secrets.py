"""A workspace's MCP bearer token stays out of the log even when DashScope echoes it back
(issue 10, item 10), end to end over signed HTTP and Socket Mode: the admin saves the token in
the settings modal, research sends it to DashScope, DashScope's error repeats the request, and
the log (formatted as `configure_logging` formats it) shows "[redacted]"."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.logs import REDACTED, RedactingFormatter
from bot.workspace_settings import SNAPSHOT
from handlers.render import RETRY_ACTION
from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import FakeDashScope, HttpError
from tests.fakes.slack_payloads import app_mention
from tests.fakes.slack_server import FakeSlack
from tests.test_e2e_settings import SECRET_KEY, open_modal, submit


@pytest.fixture(params=["http", "socket"])
async def keyed_bot(
    request: pytest.FixtureRequest, slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> AsyncIterator[Harness]:
    runtime = await start_bot(slack, dashscope, tmp_path, request.param, SECRET_KEY=SECRET_KEY)
    async with aiohttp.ClientSession() as session:
        try:
            yield Harness(runtime, slack, dashscope, request.param, session)
        finally:
            await runtime.stop()


@pytest.fixture
def log_output(keyed_bot: Harness) -> Iterator[io.StringIO]:
    """Everything logged during the test, through the bot's redacting formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        RedactingFormatter(
            "%(levelname)s %(name)s: %(message)s", keyed_bot.runtime.settings.secrets
        )
    )
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_an_upstream_error_echoing_the_mcp_token_is_redacted_in_the_log(
    keyed_bot: Harness, log_output: io.StringIO
) -> None:
    bot = keyed_bot
    token = f"mcp-{uuid.uuid4().hex}"  # not token-shaped: only knowing it can hide it
    form = {
        "model": SNAPSHOT,
        "mcp_label": "knowledge-base",
        "mcp_url": "https://mcp.example.com/sse",
        "mcp_tools": "search, fetch",
        "mcp_token": token,
    }
    assert (await submit(bot, await open_modal(bot), form))["response_action"] == "update"

    echo = (
        "InvalidParameter: research_tools[0] rejected: "
        f'{{"authentication": {{"bearer": "{token}"}}}} (Authorization: Bearer {token})'
    )
    bot.dashscope.enqueue([HttpError(400, "InvalidParameter", echo)])
    mention = app_mention("<@UBOT> --no-clarify what does the knowledge base say")
    await bot.send_event(mention)
    await bot.slack.wait_for_call(  # the failure, with a Retry button
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == mention["ts"] and RETRY_ACTION in json.dumps(c.args),
    )
    request = bot.dashscope.requests[-1].body
    assert request["parameters"]["research_tools"][0]["authentication"] == {"bearer": token}

    logged = log_output.getvalue()
    assert "research_tools[0] rejected" in logged  # the upstream message was logged …
    assert f'"bearer": "{REDACTED}"' in logged  # … with the token hidden
    assert token not in logged
    assert token not in json.dumps([c.args for c in bot.slack.calls])
