"""Workspace settings on both engines: the service stores ciphertext, decrypts for the research
call, and degrades cleanly when the key cannot open a saved token."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from bot.records import SettingsRow
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
from storage import Storage
from storage.tables import workspace_settings as table

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


def service(storage: Storage, key: str | None = KEY) -> WorkspaceSettingsService:
    return WorkspaceSettingsService(
        storage.settings, default_model=MAINLINE, box=SecretBox(key) if key else None
    )


async def test_nothing_saved_means_no_defaults(storage: Storage) -> None:
    settings = service(storage)
    assert await settings.current("T1") == WorkspaceSettings()
    assert await settings.research("T1") == WorkspaceResearch()
    assert await storage.settings.get("T1") is None


async def test_save_stores_ciphertext_and_research_gets_the_token(storage: Storage) -> None:
    settings = service(storage)
    saved = await settings.save("T1", "UADMIN", FORM)
    assert saved.mcp is not None
    assert saved.mcp.token is TokenState.SAVED
    assert saved.updated_by == "UADMIN"
    assert saved.saved

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

    async with storage.database.read() as conn:
        [(sealed,)] = (await conn.execute(select(table.c.mcp_token_sealed))).all()
    assert sealed
    assert TOKEN not in sealed
    row = await storage.settings.get("T1")
    assert row is not None
    assert "<sealed>" in repr(row)
    assert sealed not in repr(row)


async def test_put_round_trips_and_replaces_the_row(storage: Storage) -> None:
    first = SettingsRow(
        team_id="T1",
        model=SNAPSHOT,
        output_format=SUMMARY,
        clarify=False,
        mcp_label="kb",
        mcp_url="https://mcp.example.com/sse",
        mcp_allowed_tools=("search", "fetch"),
        mcp_token_sealed="ciphertext",
        updated_by="UADMIN",
        updated_at=1000.0,
    )
    assert await storage.settings.put(first) == first
    assert await storage.settings.get("T1") == first

    cleared = SettingsRow(team_id="T1", clarify=True, updated_by="UOTHER")
    stored = await storage.settings.put(cleared)
    assert stored.updated_at > 0
    assert await storage.settings.get("T1") == stored
    assert stored == replace(cleared, updated_at=stored.updated_at)
    async with storage.database.read() as conn:
        assert len((await conn.execute(select(table))).all()) == 1


async def test_another_key_cannot_open_the_token_and_research_goes_ahead_without_it(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    await service(storage).save("T1", "UADMIN", FORM)
    rotated = service(storage, "second-secret-key-0123456789abcdefghij")
    current = await rotated.current("T1")
    assert current.mcp is not None
    assert current.mcp.token is TokenState.UNREADABLE
    research = await rotated.research("T1")
    assert research.research_tools == ()
    assert research.defaults.model == SNAPSHOT
    assert "cannot be decrypted" in caplog.text
    assert TOKEN not in caplog.text

    # Without any key, the same: no tools, a clear state, no crash.
    keyless = service(storage, None)
    assert (await keyless.research("T1")).research_tools == ()
    assert not keyless.can_save_tokens


async def test_a_row_copied_to_another_workspace_does_not_decrypt(storage: Storage) -> None:
    settings = service(storage)
    await settings.save("T1", "UADMIN", FORM)
    row = await storage.settings.get("T1")
    assert row is not None
    await storage.settings.put(replace(row, team_id="T2"))
    assert (await settings.research("T2")).research_tools == ()
    assert (await settings.research("T1")).research_tools != ()


async def test_settings_survive_a_reopen(url: str) -> None:
    first = await Storage.open(url)
    try:
        await service(first).save("T1", "UADMIN", FORM)
    finally:
        await first.close()
    second = await Storage.open(url)
    try:
        research = await service(second).research("T1")
    finally:
        await second.close()
    assert research.research_tools[0]["authentication"] == {"bearer": TOKEN}
