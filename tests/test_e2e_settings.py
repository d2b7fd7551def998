"""Per-workspace research settings end to end: `/research settings` and the Home tab button,
the admin check, the modal's validation, MCP tokens encrypted at rest and decrypted into the
research request. The real Bolt app, slack_sdk and dashscope SDK against the local fakes, over
signed HTTP and over Socket Mode."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.research_options import SUMMARY
from bot.workspace_settings import MAINLINE, NO_SECRET_KEY, SNAPSHOT
from handlers.settings import NOT_ADMIN
from handlers.settings_render import KEEP_TOKEN_HINT, OPEN_SETTINGS_ACTION
from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    research_script,
)
from tests.fakes.slack_payloads import (
    app_mention,
    home_block_action,
    modal_state,
    slash_command,
    view_submission,
)
from tests.fakes.slack_server import FakeSlack
from tests.test_e2e_research import REPORT_CHUNKS

SECRET_KEY = "test-secret-key-0123456789abcdefghijklmnop"
TOKEN = "mcp-bearer-7f3a9c1e5b2d4f6a8c0e"
MCP_URL = "https://mcp.example.com/sse"
MCP_FORM = {
    "model": SNAPSHOT,
    "mcp_label": "knowledge-base",
    "mcp_url": MCP_URL,
    "mcp_tools": "search, fetch",
    "mcp_token": TOKEN,
}
EXPECTED_TOOL = {
    "type": "mcp",
    "server_label": "knowledge-base",
    "server_url": MCP_URL,
    "allowed_tools": ["search", "fetch"],
    "authentication": {"bearer": TOKEN},
}


@pytest.fixture(params=["http", "socket"])
async def keyed_bot(
    request: pytest.FixtureRequest, slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> AsyncIterator[Harness]:
    """The bot with a SECRET_KEY, so MCP tokens can be saved."""
    runtime = await start_bot(slack, dashscope, tmp_path, request.param, SECRET_KEY=SECRET_KEY)
    async with aiohttp.ClientSession() as session:
        try:
            yield Harness(runtime, slack, dashscope, request.param, session)
        finally:
            await runtime.stop()


# --- helpers ----------------------------------------------------------------------------------


def ack_body(bot: Harness, result: Any) -> dict[str, Any]:
    """What the bot put in its ack: the HTTP response body or the Socket Mode ack's payload."""
    if bot.mode == "http":
        body = result[1]
        return json.loads(body) if body else {}
    return dict(result.get("payload") or {})


async def settings_command(bot: Harness, user: str) -> str:
    """Run `/research settings` as `user`; returns the command's response_url."""
    url = bot.slack.response_url()
    await bot.send(
        slash_command("/research", "settings", user_id=user, response_url=url), "command"
    )
    return url


async def open_modal(bot: Harness, user: str = "UADMIN") -> dict[str, Any]:
    """Open the settings modal as an admin; returns the view passed to views.open."""
    before = len(bot.slack.calls_to("views.open"))
    await settings_command(bot, user)
    opened = await bot.slack.wait_for_call("views.open", count=before + 1)
    call = opened[-1]
    assert call.error is None
    return dict(call.args["view"])


async def submit(
    bot: Harness, view: dict[str, Any], changes: dict[str, Any], user: str = "UADMIN"
) -> dict[str, Any]:
    payload = view_submission(view, modal_state(view, changes), user_id=user)
    return ack_body(bot, await bot.send(payload, "interactive"))


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def sqlite_path(bot: Harness) -> Path:
    url = bot.runtime.settings.database_url
    assert url.startswith("sqlite+aiosqlite:///"), "keyed_bot runs on SQLite"
    return Path(url.removeprefix("sqlite+aiosqlite:///"))


async def database_bytes(bot: Harness) -> bytes:
    """Everything the database holds: its files on SQLite, every row on PostgreSQL."""
    url = bot.runtime.settings.database_url
    if url.startswith("postgresql"):
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql", 1))
        try:
            tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            rows = [await conn.fetch(f'SELECT * FROM "{t[0]}"') for t in tables]
        finally:
            await conn.close()
        return repr(rows).encode()
    path = sqlite_path(bot)
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def settings_rows(bot: Harness) -> list[dict[str, Any]]:
    with sqlite3.connect(sqlite_path(bot)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM workspace_settings").fetchall()
    return [dict(r) for r in rows]


async def research_request(bot: Harness, text: str, *, snapshot: bool) -> dict[str, Any]:
    """Mention the bot with `text` (no clarifying question) and return the research request."""
    before = len(bot.dashscope.requests)
    uploads = len(bot.slack.calls_to("files.completeUploadExternal"))
    bot.dashscope.enqueue(
        research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1, snapshot=snapshot)
    )
    await bot.send_event(app_mention(f"<@UBOT> {text}"))
    await bot.slack.wait_for_call("files.completeUploadExternal", count=uploads + 1, timeout=20)
    assert len(bot.dashscope.requests) == before + 1
    return dict(bot.dashscope.requests[-1].body)


# --- who may change them ----------------------------------------------------------------------


async def test_non_admin_is_refused_and_no_modal_opens(bot: Harness) -> None:
    url = await settings_command(bot, "UUSER")
    [refusal] = await bot.slack.wait_for_responses(url)
    assert refusal.body["response_type"] == "ephemeral"
    assert refusal.body["text"] == NOT_ADMIN
    # Asked of Slack: whether they are an admin (and, beside it, their language).
    [check] = [c for c in bot.slack.calls_to("users.info") if not c.args.get("include_locale")]
    assert check.args["user"] == "UUSER"
    assert bot.slack.calls_to("views.open") == []


async def test_an_owner_who_is_not_flagged_admin_may_open_them(bot: Harness) -> None:
    bot.slack.users["UUSER"]["is_owner"] = True
    view = await open_modal(bot, "UUSER")
    assert view["callback_id"] == "workspace_settings"


async def test_a_submission_from_a_non_admin_is_refused_and_nothing_is_stored(
    keyed_bot: Harness,
) -> None:
    bot = keyed_bot
    view = await open_modal(bot)
    ack = await submit(bot, view, MCP_FORM, user="UUSER")
    assert ack["response_action"] == "update"
    assert NOT_ADMIN in json.dumps(ack["view"])
    assert settings_rows(bot) == []


async def test_when_slack_cannot_say_who_is_admin_the_user_is_told(bot: Harness) -> None:
    # Slack fails both questions asked of it: whether they are an admin, and their language.
    bot.slack.fail_next("users.info", status=200, error="internal_error", times=2)
    url = await settings_command(bot, "UADMIN")
    [reply] = await bot.slack.wait_for_responses(url)
    assert "couldn't check your permissions" in reply.body["text"]
    assert "internal_error" not in reply.body["text"]
    assert bot.slack.calls_to("views.open") == []


# --- the modal --------------------------------------------------------------------------------


async def test_admin_saves_mcp_settings_and_research_carries_the_decrypted_token(
    keyed_bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    bot = keyed_bot
    caplog.set_level(logging.DEBUG)
    view = await open_modal(bot)

    # The modal opens with the current values: nothing saved yet, so the bot's defaults.
    fields = inputs(view)
    assert fields["model"]["element"]["initial_option"]["value"] == MAINLINE
    assert fields["length"]["element"]["initial_option"]["value"] == "model_detailed_report"
    assert fields["clarify"]["element"]["initial_options"]  # ticked: ask first
    assert "initial_value" not in fields["mcp_url"]["element"]
    assert "initial_value" not in fields["mcp_token"]["element"]

    ack = await submit(bot, view, MCP_FORM)
    assert ack["response_action"] == "update"
    saved_view = json.dumps(ack["view"])
    assert "Saved." in saved_view and "knowledge-base" in saved_view
    assert "token saved" in saved_view and TOKEN not in saved_view

    # At rest: ciphertext only, in the row and anywhere in the database's files.
    [row] = settings_rows(bot)
    assert row["team_id"] == "T1" and row["model"] == SNAPSHOT
    assert row["mcp_token_sealed"] and TOKEN not in row["mcp_token_sealed"]
    assert TOKEN not in json.dumps(row)
    assert TOKEN.encode() not in await database_bytes(bot)

    # The next research request carries the tools with the token in the clear.
    request = await research_request(
        bot, "--no-clarify product update announcements", snapshot=True
    )
    assert request["model"] == SNAPSHOT
    assert request["parameters"]["research_tools"] == [EXPECTED_TOOL]
    assert request["parameters"]["enable_feedback"] is False

    # The token went to DashScope and nowhere else: not to Slack, not to the log.
    assert TOKEN not in json.dumps([c.args for c in bot.slack.calls])
    assert TOKEN not in json.dumps(bot.slack.views)
    assert TOKEN not in caplog.text


async def test_reopening_leaves_the_token_empty_and_an_empty_token_keeps_it(
    keyed_bot: Harness,
) -> None:
    bot = keyed_bot
    await submit(bot, await open_modal(bot), MCP_FORM)
    [before] = settings_rows(bot)

    view = await open_modal(bot)
    fields = inputs(view)
    assert fields["model"]["element"]["initial_option"]["value"] == SNAPSHOT
    assert fields["mcp_url"]["element"]["initial_value"] == MCP_URL
    assert fields["mcp_tools"]["element"]["initial_value"] == "search, fetch"
    assert "initial_value" not in fields["mcp_token"]["element"]
    assert fields["mcp_token"]["hint"]["text"] == KEEP_TOKEN_HINT
    assert "mcp_token_remove" in fields
    assert TOKEN not in json.dumps(view)

    ack = await submit(bot, view, {"length": SUMMARY})
    assert ack["response_action"] == "update"
    [after] = settings_rows(bot)
    assert after["mcp_token_sealed"] == before["mcp_token_sealed"]
    assert after["output_format"] == SUMMARY

    request = await research_request(bot, "--no-clarify release notes", snapshot=True)
    assert request["parameters"]["research_tools"] == [EXPECTED_TOOL]
    assert request["parameters"]["output_format"] == SUMMARY

    # A request for the mainline model gets no MCP tools: it does not take them.
    request = await research_request(
        bot, f"--no-clarify --model {MAINLINE} release notes", snapshot=False
    )
    assert request["model"] == MAINLINE
    assert "research_tools" not in request["parameters"]


async def test_a_new_server_address_needs_the_token_again(keyed_bot: Harness) -> None:
    bot = keyed_bot
    await submit(bot, await open_modal(bot), MCP_FORM)
    [before] = settings_rows(bot)
    view = await open_modal(bot)
    ack = await submit(bot, view, {"mcp_url": "https://elsewhere.example.net/sse"})
    assert ack["response_action"] == "errors"
    assert "enter the token again" in ack["errors"]["mcp_token"]
    assert settings_rows(bot) == [before]

    # Ticking "Remove the saved token" moves the server without a token.
    ack = await submit(
        bot, view, {"mcp_url": "https://elsewhere.example.net/sse", "mcp_token_remove": ["remove"]}
    )
    assert ack["response_action"] == "update"
    [after] = settings_rows(bot)
    assert after["mcp_url"] == "https://elsewhere.example.net/sse"
    assert after["mcp_token_sealed"] is None


async def test_an_mcp_server_on_the_mainline_model_is_rejected_on_the_field(
    keyed_bot: Harness,
) -> None:
    bot = keyed_bot
    view = await open_modal(bot)
    ack = await submit(bot, view, {**MCP_FORM, "model": MAINLINE})
    assert ack["response_action"] == "errors"
    assert set(ack["errors"]) == {"mcp_url"}
    assert f"only with the `{SNAPSHOT}` model" in ack["errors"]["mcp_url"]
    assert settings_rows(bot) == []


async def test_a_url_that_is_not_https_is_rejected(keyed_bot: Harness) -> None:
    bot = keyed_bot
    view = await open_modal(bot)
    ack = await submit(bot, view, {**MCP_FORM, "mcp_url": "http://mcp.example.com/sse"})
    assert ack["response_action"] == "errors"
    assert set(ack["errors"]) == {"mcp_url"}
    assert "https://" in ack["errors"]["mcp_url"]
    assert settings_rows(bot) == []


async def test_summary_and_no_clarify_defaults_reach_the_request(bot: Harness) -> None:
    view = await open_modal(bot)
    ack = await submit(bot, view, {"length": SUMMARY, "clarify": []})
    assert ack["response_action"] == "update"

    request = await research_request(bot, "AI tutoring evidence", snapshot=False)
    assert request["model"] == MAINLINE
    assert request["parameters"]["output_format"] == "model_summary_report"
    assert request["parameters"]["enable_feedback"] is False
    assert "research_tools" not in request["parameters"]
    assert request["input"]["messages"] == [{"role": "user", "content": "AI tutoring evidence"}]

    # Options in the request still win over the workspace's defaults.
    request = await research_request(bot, "--detailed AI tutoring evidence", snapshot=False)
    assert request["parameters"]["output_format"] == "model_detailed_report"
    assert request["parameters"]["enable_feedback"] is False


async def test_another_model_by_name(bot: Harness) -> None:
    view = await open_modal(bot)
    ack = await submit(bot, view, {"model": "other", "custom_model": "qwen-deep-research-latest"})
    assert ack["response_action"] == "update"
    view = await open_modal(bot)
    fields = inputs(view)
    assert fields["model"]["element"]["initial_option"]["value"] == "other"
    assert fields["custom_model"]["element"]["initial_value"] == "qwen-deep-research-latest"

    ack = await submit(bot, view, {"custom_model": "not a model!"})
    assert ack["response_action"] == "errors" and set(ack["errors"]) == {"custom_model"}


async def test_without_a_secret_key_the_modal_says_tokens_cannot_be_saved(bot: Harness) -> None:
    view = await open_modal(bot)
    assert "mcp_token" not in inputs(view)
    assert NO_SECRET_KEY in json.dumps(view)

    # An MCP server without a token still works.
    form = {k: v for k, v in MCP_FORM.items() if k != "mcp_token"}
    ack = await submit(bot, view, form)
    assert ack["response_action"] == "update"
    request = await research_request(bot, "--no-clarify knowledge base", snapshot=True)
    tool = {k: v for k, v in EXPECTED_TOOL.items() if k != "authentication"}
    assert request["parameters"]["research_tools"] == [tool]

    # A token smuggled into the submission is refused, not stored in the clear.
    values = modal_state(view, form)
    values["mcp_token"] = {"input": {"type": "plain_text_input", "value": TOKEN}}
    ack = ack_body(
        bot, await bot.send(view_submission(view, values, user_id="UADMIN"), "interactive")
    )
    assert ack["response_action"] == "errors"
    assert "SECRET_KEY" in json.dumps(ack["errors"])
    assert TOKEN.encode() not in await database_bytes(bot)


# --- the Home tab -----------------------------------------------------------------------------


async def test_home_tab_shows_the_settings_without_the_token(keyed_bot: Harness) -> None:
    bot = keyed_bot
    await submit(bot, await open_modal(bot), MCP_FORM)

    await bot.send_event({"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
    published = await bot.slack.wait_for_call(
        "views.publish", lambda c: c.args.get("user_id") == "UADMIN"
    )
    home = json.dumps(published[-1].args["view"])
    assert SNAPSHOT in home and "knowledge-base" in home and MCP_URL in home
    assert "`search`, `fetch`" in home and "token saved" in home
    assert TOKEN not in home
    assert OPEN_SETTINGS_ACTION in home

    await bot.send_event({"type": "app_home_opened", "user": "UUSER", "tab": "home"})
    [user_home] = await bot.slack.wait_for_call(
        "views.publish", lambda c: c.args.get("user_id") == "UUSER"
    )
    text = json.dumps(user_home.args["view"])
    assert "token saved" in text and TOKEN not in text
    assert OPEN_SETTINGS_ACTION not in text
    assert "/research settings" in text


async def test_home_button_opens_the_modal_for_admins_and_a_sentence_for_others(
    bot: Harness,
) -> None:
    await bot.send(home_block_action(OPEN_SETTINGS_ACTION, "open", user_id="UADMIN"), "interactive")
    [opened] = await bot.slack.wait_for_call("views.open")
    assert opened.args["view"]["callback_id"] == "workspace_settings"

    await bot.send(home_block_action(OPEN_SETTINGS_ACTION, "open", user_id="UUSER"), "interactive")
    [_, refused] = await bot.slack.wait_for_call("views.open", count=2)
    assert NOT_ADMIN in json.dumps(refused.args["view"])
    assert "callback_id" not in refused.args["view"]
