"""Workspace settings on a real SQLite file: the service stores ciphertext, decrypts for the
research call, and degrades cleanly when the key cannot open a saved token."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.research_options import SUMMARY, ResearchOptions, WorkspaceResearch
from bot.secrets_box import SecretBox
from bot.workspace_settings import (
    MAINLINE,
    SNAPSHOT,
    SettingsForm,
    TokenState,
    WorkspaceSettings,
    WorkspaceSettingsService,
)
from storage.sqlite import Store
from storage.workspace_settings import WorkspaceSettingsStore

KEY = "first-secret-key-0123456789abcdefghij"
TOKEN = "tok_live_0123456789abcdef"
FORM = SettingsForm(
    model=SNAPSHOT,
    output_format=SUMMARY,
    clarify=False,
    mcp_label="kb",
    mcp_url="https://mcp.example.com/sse",
    mcp_tools="search",
    mcp_token=TOKEN,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "bot.sqlite3")
    try:
        yield store
    finally:
        await store.close()


async def service(store: Store, key: str | None = KEY) -> WorkspaceSettingsService:
    return WorkspaceSettingsService(
        await WorkspaceSettingsStore.attach(store),
        default_model=MAINLINE,
        box=SecretBox(key) if key else None,
    )


async def test_nothing_saved_means_no_defaults(store: Store) -> None:
    settings = await service(store)
    assert await settings.current("T1") == WorkspaceSettings()
    assert await settings.research("T1") == WorkspaceResearch()


async def test_save_stores_ciphertext_and_research_gets_the_token(
    store: Store, tmp_path: Path
) -> None:
    settings = await service(store)
    saved = await settings.save("T1", "UADMIN", FORM)
    assert saved.mcp is not None and saved.mcp.token is TokenState.SAVED
    assert saved.updated_by == "UADMIN" and saved.saved

    research = await settings.research("T1")
    assert research.defaults == ResearchOptions(
        output_format=SUMMARY, clarify=False, model=SNAPSHOT
    )
    assert research.research_tools == (
        {
            "type": "mcp",
            "server_label": "kb",
            "server_url": "https://mcp.example.com/sse",
            "allowed_tools": ["search"],
            "authentication": {"bearer": TOKEN},
        },
    )
    assert await settings.research("T2") == WorkspaceResearch()

    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        [(sealed,)] = db.execute("SELECT mcp_token_sealed FROM workspace_settings").fetchall()
    assert sealed and TOKEN not in sealed
    row = await WorkspaceSettingsStore(store).get("T1")
    assert row is not None and "<sealed>" in repr(row) and sealed not in repr(row)


async def test_another_key_cannot_open_the_token_and_research_goes_ahead_without_it(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await (await service(store)).save("T1", "UADMIN", FORM)
    rotated = await service(store, "second-secret-key-0123456789abcdefghij")
    current = await rotated.current("T1")
    assert current.mcp is not None and current.mcp.token is TokenState.UNREADABLE
    research = await rotated.research("T1")
    assert research.research_tools == ()
    assert research.defaults.model == SNAPSHOT
    assert "cannot be decrypted" in caplog.text and TOKEN not in caplog.text

    # Without any key, the same: no tools, a clear state, no crash.
    keyless = await service(store, None)
    assert (await keyless.research("T1")).research_tools == ()
    assert not keyless.can_save_tokens


async def test_a_row_copied_to_another_workspace_does_not_decrypt(store: Store) -> None:
    settings = await service(store)
    await settings.save("T1", "UADMIN", FORM)
    table = WorkspaceSettingsStore(store)
    row = await table.get("T1")
    assert row is not None
    await table.put(replace(row, team_id="T2"))
    assert (await settings.research("T2")).research_tools == ()


async def test_settings_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "reopen.sqlite3"
    first = await Store.open(path)
    try:
        await (await service(first)).save("T1", "UADMIN", FORM)
    finally:
        await first.close()
    second = await Store.open(path)
    try:
        research = await (await service(second)).research("T1")
    finally:
        await second.close()
    assert research.research_tools[0]["authentication"] == {"bearer": TOKEN}
