"""bot/workspace_settings.py: validation of the settings form, with a sentence per field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.research_options import DETAILED, SUMMARY
from bot.workspace_settings import (
    MAINLINE,
    OTHER_MODEL,
    SNAPSHOT,
    Field,
    McpServer,
    SettingsForm,
    SettingsInvalid,
    TokenChange,
    TokenState,
    ValidSettings,
    WorkspaceSettings,
    validate,
)

TOKEN = "tok_0123456789abcdef"
MCP = SettingsForm(
    model=SNAPSHOT,
    mcp_label="kb",
    mcp_url="https://mcp.example.com/sse",
    mcp_tools="search, fetch",
    mcp_token=TOKEN,
)
SAVED_WITH_TOKEN = WorkspaceSettings(
    model=SNAPSHOT,
    mcp=McpServer("kb", "https://mcp.example.com/sse", ("search",), TokenState.SAVED),
    updated_at=1.0,
)


def ok(
    form: SettingsForm, saved: WorkspaceSettings | None = None, *, seal: bool = True
) -> ValidSettings:
    return validate(form, saved=saved or WorkspaceSettings(), can_seal=seal)


def errors(
    form: SettingsForm, saved: WorkspaceSettings | None = None, *, seal: bool = True
) -> dict[Field, str]:
    with pytest.raises(SettingsInvalid) as info:
        ok(form, saved, seal=seal)
    return {field: str(sentence) for field, sentence in info.value.errors.items()}  # English


def test_plain_settings_without_mcp() -> None:
    valid = ok(SettingsForm(model=MAINLINE, output_format=SUMMARY, clarify=False))
    assert (valid.model, valid.output_format, valid.clarify) == (MAINLINE, SUMMARY, False)
    assert valid.mcp is None and valid.token_change is TokenChange.REMOVE


def test_mcp_on_the_snapshot_with_a_new_token() -> None:
    valid = ok(MCP)
    assert valid.mcp == McpServer("kb", "https://mcp.example.com/sse", ("search", "fetch"))
    assert valid.token_change is TokenChange.REPLACE and valid.new_token == TOKEN
    assert TOKEN not in repr(valid) and TOKEN not in repr(MCP)


def test_a_pasted_bearer_prefix_and_repeated_tools_are_tidied() -> None:
    valid = ok(replace(MCP, mcp_token=f"Bearer {TOKEN}", mcp_tools="search,\nfetch search"))
    assert valid.new_token == TOKEN
    assert valid.mcp is not None and valid.mcp.allowed_tools == ("search", "fetch")


def test_mcp_on_a_model_without_tools_is_refused_on_the_url() -> None:
    for model in (MAINLINE, OTHER_MODEL):
        form = replace(MCP, model=model, custom_model="qwen-deep-research-latest")
        found = errors(form)
        assert set(found) == {Field.MCP_URL}
        assert f"only with the `{SNAPSHOT}` model" in found[Field.MCP_URL]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://mcp.example.com/sse", "must start with https://"),
        ("ftp://mcp.example.com", "must start with https://"),
        ("mcp.example.com/sse", "must start with https://"),
        ("https:///sse", "no host name"),
        ("https://user:pw@mcp.example.com/sse", "Leave credentials out"),
        ("https://mcp.example.com:99999/sse", "doesn't look like a URL"),
        ("https://mcp.example.com/a b", "doesn't look like a URL"),
        ("https://mcp.example.com/" + "a" * 2100, "doesn't look like a URL"),
        ("", "starting with https://"),
    ],
)
def test_bad_urls(url: str, words: str) -> None:
    found = errors(replace(MCP, mcp_url=url))
    assert set(found) == {Field.MCP_URL}
    assert words in found[Field.MCP_URL]


def test_label_and_tools_are_needed_and_checked() -> None:
    found = errors(replace(MCP, mcp_label="", mcp_tools=""))
    assert set(found) == {Field.MCP_LABEL, Field.MCP_TOOLS}
    found = errors(replace(MCP, mcp_label="my server!", mcp_tools="search; drop"))
    assert set(found) == {Field.MCP_LABEL, Field.MCP_TOOLS}
    assert "`search;` isn't a tool name" in found[Field.MCP_TOOLS]


def test_only_a_token_is_not_a_server() -> None:
    found = errors(SettingsForm(model=SNAPSHOT, mcp_token=TOKEN))
    assert {Field.MCP_LABEL, Field.MCP_URL, Field.MCP_TOOLS} <= set(found)


def test_without_a_key_a_token_is_refused_but_a_server_without_one_is_fine() -> None:
    found = errors(MCP, seal=False)
    assert set(found) == {Field.MCP_TOKEN} and "SECRET_KEY" in found[Field.MCP_TOKEN]
    valid = ok(replace(MCP, mcp_token=""), seal=False)
    assert valid.mcp is not None and valid.token_change is TokenChange.REMOVE


@pytest.mark.parametrize("token", ["two words", "x" * 3001, "line\nbreak", "ünïcode"])
def test_malformed_tokens(token: str) -> None:
    found = errors(replace(MCP, mcp_token=token))
    assert set(found) == {Field.MCP_TOKEN}
    assert token not in found[Field.MCP_TOKEN]


def test_an_empty_token_keeps_the_saved_one_for_the_same_server() -> None:
    form = replace(MCP, mcp_token="", mcp_url="https://MCP.example.com:443/other-path")
    assert ok(form, SAVED_WITH_TOKEN).token_change is TokenChange.KEEP


def test_a_saved_token_does_not_follow_the_server_elsewhere() -> None:
    form = replace(MCP, mcp_token="", mcp_url="https://evil.example.net/sse")
    found = errors(form, SAVED_WITH_TOKEN)
    assert set(found) == {Field.MCP_TOKEN} and "enter the token again" in found[Field.MCP_TOKEN]
    moved = ok(replace(form, remove_token=True), SAVED_WITH_TOKEN)
    assert moved.token_change is TokenChange.REMOVE
    assert ok(replace(form, mcp_token=TOKEN), SAVED_WITH_TOKEN).token_change is TokenChange.REPLACE


def test_clearing_the_mcp_fields_removes_server_and_token() -> None:
    valid = ok(SettingsForm(model=SNAPSHOT), SAVED_WITH_TOKEN)
    assert valid.mcp is None and valid.token_change is TokenChange.REMOVE


def test_models() -> None:
    assert ok(SettingsForm(model=OTHER_MODEL, custom_model=" qwen-dr-x ")).model == "qwen-dr-x"
    assert set(errors(SettingsForm(model=OTHER_MODEL))) == {Field.CUSTOM_MODEL}
    assert set(errors(SettingsForm(model=OTHER_MODEL, custom_model="a b"))) == {Field.CUSTOM_MODEL}
    assert set(errors(SettingsForm(model=""))) == {Field.MODEL}
    # A name typed while a listed model is chosen is ignored.
    assert ok(SettingsForm(model=MAINLINE, custom_model="other-name")).model == MAINLINE


def test_report_length() -> None:
    assert ok(SettingsForm(model=MAINLINE, output_format=DETAILED)).output_format == DETAILED
    assert set(errors(SettingsForm(model=MAINLINE, output_format="long"))) == {Field.LENGTH}


def test_errors_name_fields_never_values() -> None:
    with pytest.raises(SettingsInvalid) as info:
        ok(replace(MCP, mcp_token="has space " + TOKEN))
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
