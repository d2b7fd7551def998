"""handlers/settings_render.py: the modal, what it submits, and the Home tab summary."""

from __future__ import annotations

import json

from bot.research_options import SUMMARY
from bot.workspace_settings import (
    MAINLINE,
    NO_SECRET_KEY,
    SNAPSHOT,
    Field,
    McpServer,
    SettingsForm,
    TokenState,
    WorkspaceSettings,
)
from handlers.settings_render import (
    KEEP_TOKEN_HINT,
    OPEN_SETTINGS_ACTION,
    form_from_state,
    home_blocks,
    settings_modal,
    view_errors,
)
from tests.fakes.slack_payloads import modal_state

SAVED = WorkspaceSettings(
    model=SNAPSHOT,
    output_format=SUMMARY,
    clarify=False,
    mcp=McpServer("kb", "https://mcp.example.com/sse?a=1&b=<2>", ("search",), TokenState.SAVED),
    updated_by="UADMIN",
    updated_at=1_760_000_000.0,
)


def test_the_modal_round_trips_through_slack_state() -> None:
    view = settings_modal(SAVED, default_model=MAINLINE, can_save_tokens=True)
    assert len(view["blocks"]) <= 100
    form = form_from_state(modal_state(view))
    assert form == SettingsForm(
        model=SNAPSHOT,
        output_format=SUMMARY,
        clarify=False,
        mcp_label="kb",
        mcp_url="https://mcp.example.com/sse?a=1&b=<2>",
        mcp_tools="search",
    )
    changed = form_from_state(
        modal_state(view, {"mcp_token": "t0k", "clarify": ["ask"], "mcp_token_remove": ["remove"]})
    )
    assert changed.mcp_token == "t0k" and changed.clarify and changed.remove_token
    canvas_only = form_from_state(modal_state(view, {"delivery": "canvas"}))
    assert canvas_only.delivery == "canvas"


def test_a_saved_token_is_never_an_initial_value() -> None:
    view = settings_modal(SAVED, default_model=MAINLINE, can_save_tokens=True)
    [token] = [b for b in view["blocks"] if b.get("block_id") == Field.MCP_TOKEN]
    assert "initial_value" not in token["element"]
    assert token["hint"]["text"] == KEEP_TOKEN_HINT


def test_without_a_key_the_token_field_gives_way_to_a_sentence() -> None:
    view = settings_modal(WorkspaceSettings(), default_model=MAINLINE, can_save_tokens=False)
    ids = {b.get("block_id") for b in view["blocks"]}
    assert Field.MCP_TOKEN not in ids and Field.MCP_TOKEN_REMOVE not in ids
    assert NO_SECRET_KEY in json.dumps(view)


def test_an_unlisted_default_model_shows_as_another_model() -> None:
    view = settings_modal(WorkspaceSettings(), default_model="qwen-dr-x", can_save_tokens=True)
    form = form_from_state(modal_state(view))
    assert (form.model, form.custom_model) == ("other", "qwen-dr-x")


def test_errors_for_missing_blocks_go_on_the_model_field() -> None:
    view = settings_modal(WorkspaceSettings(), default_model=MAINLINE, can_save_tokens=False)
    result = view_errors({Field.MCP_TOKEN: "no key", Field.MCP_URL: "bad url"}, view)
    assert result == {"model": "no key", "mcp_url": "bad url"}


def test_form_from_garbage_state_is_an_empty_form() -> None:
    assert form_from_state({"model": "x", "length": {"input": None}}) == SettingsForm(
        model="", output_format="", clarify=False
    )


def test_home_summary_escapes_and_never_shows_a_token() -> None:
    text = json.dumps(home_blocks(SAVED, default_model=MAINLINE, can_change=True))
    assert "a=1&amp;b=&lt;2&gt;" in text and "token saved" in text
    assert "<@UADMIN>" in text and "<!date^1760000000^" in text
    assert OPEN_SETTINGS_ACTION in text
    plain = json.dumps(home_blocks(WorkspaceSettings(), default_model=MAINLINE, can_change=False))
    assert "(the bot's default)" in plain and "none" in plain
    assert OPEN_SETTINGS_ACTION not in plain
