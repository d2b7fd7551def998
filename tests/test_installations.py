"""What multi-workspace mode takes from outside the code stays in step with it: the scopes the
OAuth flow asks for are manifest.yml's, and migration 0004's tables are the ones slack_sdk's
SQLAlchemy stores read and write."""

from __future__ import annotations

import re
from pathlib import Path

from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import MetaData, inspect

from handlers.installations import authorize_url
from handlers.scopes import BOT_SCOPES
from storage.database import Database

ROOT = Path(__file__).resolve().parents[1]


def manifest_bot_scopes() -> list[str]:
    text = (ROOT / "manifest.yml").read_text(encoding="utf-8")
    block = text.split("    bot:\n", 1)[1]
    scopes = []
    for line in block.splitlines():
        match = re.fullmatch(r"\s+- ([a-z_:.]+)", line)
        if match is None:
            break
        scopes.append(match.group(1))
    return scopes


def test_the_install_link_asks_for_the_manifests_scopes() -> None:
    assert sorted(BOT_SCOPES) == sorted(manifest_bot_scopes())


def test_the_manifest_declares_the_oauth_redirect_and_events_for_uninstalls() -> None:
    text = (ROOT / "manifest.yml").read_text(encoding="utf-8")
    assert "/slack/oauth_redirect" in text
    for event in ("app_uninstalled", "tokens_revoked"):
        assert f"- {event}" in text


def test_slacks_consent_page_is_on_the_web_apis_host() -> None:
    assert authorize_url("https://slack.com/api/") == "https://slack.com/oauth/v2/authorize"
    assert authorize_url("https://slack-gov.com/api/") == "https://slack-gov.com/oauth/v2/authorize"


async def test_migration_0004_creates_the_tables_slack_sdk_uses(database_url: str) -> None:
    from bot.config import database_url as normalised

    expected = MetaData()
    SQLAlchemyInstallationStore.build_installations_table(expected, "slack_installations")
    SQLAlchemyInstallationStore.build_bots_table(expected, "slack_bots")
    SQLAlchemyOAuthStateStore.build_oauth_states_table(expected, "slack_oauth_states")
    db = await Database.open(normalised(database_url))
    try:
        async with db.read() as conn:
            actual = await conn.run_sync(
                lambda sync: {
                    name: {c["name"] for c in inspect(sync).get_columns(name)}
                    for name in expected.tables
                }
            )
    finally:
        await db.close()
    assert actual == {name: {c.name for c in t.columns} for name, t in expected.tables.items()}
