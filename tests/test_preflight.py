"""`python -m bot check` against the fakes: one line per check, each failing service on a line
of its own naming what to fix, exit status 1 when any failed."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest
import yaml
from alembic import command
from alembic.script import ScriptDirectory

from bot.runtime import check
from handlers.scopes import BOT_SCOPES
from storage.database import Database, _config
from tests.fakes.dashscope_server import FakeDashScope, thinking_script
from tests.fakes.slack_server import MANIFEST_BOT_SCOPES, FakeSlack

# The schema's revisions, oldest first (the newest is what a start migrates to).
REVISIONS = [
    r.revision for r in reversed(list(ScriptDirectory.from_config(_config(None)).walk_revisions()))
]

REPO = Path(__file__).resolve().parent.parent
SETTINGS = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
    "DASHSCOPE_API_KEY",
    "DASHSCOPE_HTTP_BASE_URL",
    "DATABASE_URL",
    "THINKING_MODEL",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
)
CLOSED_PORT_DB = "postgresql://postgres@127.0.0.1:9/nothing"


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slack: FakeSlack, dashscope: FakeDashScope
) -> dict[str, str]:
    """Settings that work against the fakes, in the environment of a fresh directory."""
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    values = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_API_URL": slack.api_url,
        "DASHSCOPE_API_KEY": dashscope.api_key,
        "DASHSCOPE_HTTP_BASE_URL": dashscope.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


async def run_check(**kw: bool) -> tuple[int, list[str]]:
    out = io.StringIO()
    status = await check(out=out, **kw)
    return status, out.getvalue().splitlines()


def line(lines: list[str], name: str) -> str:
    [found] = [entry for entry in lines if entry.split(":", 1)[0].split(None, 1)[1] == name]
    return found


async def migrated(url: str, revision: str = "head") -> None:
    database = await Database.open(url, migrate=False)
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_config(c), revision))
    finally:
        await database.close(grace=0)


async def test_every_check_passes_against_working_services(
    env: dict[str, str], dashscope: FakeDashScope, tmp_path: Path
) -> None:
    await migrated(f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}")
    dashscope.enqueue(thinking_script([], ["OK"]))
    status, lines = await run_check()
    assert status == 0, lines
    assert [entry.split(":", 1)[0] for entry in lines] == [
        "ok    settings",
        "ok    Slack bot token",
        "ok    Slack app token",
        "ok    DashScope API key",
        "ok    database",
    ]
    assert "bot user UBOT in workspace T1" in line(lines, "Slack bot token")
    assert "every scope" in line(lines, "Slack bot token")
    assert f"migrations applied (at {REVISIONS[-1]})" in line(lines, "database")
    # The cheapest call that proves the key: the thinking model, no thinking, one token.
    [request] = dashscope.requests
    assert request.body["model"] == "qwen-plus"
    assert request.body["parameters"]["max_tokens"] == 1
    assert request.body["parameters"]["enable_thinking"] is False


async def test_each_failing_service_has_a_line_of_its_own(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-revoked")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-revoked")
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-wrong")
    monkeypatch.setenv("DATABASE_URL", CLOSED_PORT_DB)
    status, lines = await run_check()
    assert status == 1
    assert len(lines) == 5 and lines[0].startswith("ok    settings")
    bot_token = line(lines, "Slack bot token")
    assert bot_token.startswith("FAIL") and "SLACK_BOT_TOKEN (invalid_auth)" in bot_token
    app_token = line(lines, "Slack app token")
    assert app_token.startswith("FAIL") and "SLACK_APP_TOKEN (invalid_auth)" in app_token
    key = line(lines, "DashScope API key")
    assert key.startswith("FAIL") and "DASHSCOPE_API_KEY (InvalidApiKey)" in key
    database = line(lines, "database")
    assert database.startswith("FAIL") and "check DATABASE_URL" in database
    assert "sk-wrong" not in "\n".join(lines) and "xoxb-revoked" not in "\n".join(lines)


async def test_one_failing_service_fails_the_check_alone(
    env: dict[str, str], dashscope: FakeDashScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", CLOSED_PORT_DB)
    dashscope.enqueue(thinking_script([], ["OK"]))
    status, lines = await run_check()
    assert status == 1
    failed = [entry for entry in lines if entry.startswith("FAIL")]
    assert len(failed) == 1 and "database" in failed[0]


async def test_missing_scopes_are_named(
    env: dict[str, str], slack: FakeSlack, dashscope: FakeDashScope
) -> None:
    slack.scopes = [s for s in slack.scopes if s not in ("files:write", "users:read")]
    dashscope.enqueue(thinking_script([], ["OK"]))
    status, lines = await run_check()
    assert status == 1
    scopes = line(lines, "Slack bot token")
    assert scopes.startswith("FAIL")
    assert "lacks scopes manifest.yml asks for: files:write, users:read" in scopes


async def test_missing_settings_fail_on_the_settings_line(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    status, lines = await run_check()
    assert status == 1
    assert lines[0].startswith("FAIL  settings: Missing settings")
    text = "\n".join(lines)
    assert "SLACK_BOT_TOKEN" in text and "DASHSCOPE_API_KEY" in text


async def test_pending_migrations_are_reported_not_failed(
    env: dict[str, str], dashscope: FakeDashScope, tmp_path: Path
) -> None:
    await migrated(f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}", "0002")
    dashscope.enqueue(thinking_script([], ["OK"]))
    status, lines = await run_check()
    assert status == 0, lines
    later = REVISIONS[REVISIONS.index("0002") + 1 :]
    expected = f"at 0002; the next start applies {len(later)} migration(s): {', '.join(later)}"
    assert expected in line(lines, "database")


async def test_a_database_not_made_yet_is_fine_and_not_created(
    env: dict[str, str], dashscope: FakeDashScope, tmp_path: Path
) -> None:
    dashscope.enqueue(thinking_script([], ["OK"]))
    status, lines = await run_check()
    assert status == 0, lines
    assert "does not exist yet" in line(lines, "database")
    assert not (tmp_path / "bot.sqlite3").exists()


async def test_the_command_line_exits_1_with_the_failing_line(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-wrong")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1, stderr.decode()
    lines = stdout.decode().splitlines()
    assert [entry.split(None, 1)[0] for entry in lines] == ["ok", "ok", "ok", "FAIL", "ok"]
    assert "DASHSCOPE_API_KEY" in line(lines, "DashScope API key")


def test_the_scopes_checked_are_the_manifests() -> None:
    manifest = yaml.safe_load((REPO / "manifest.yml").read_text(encoding="utf-8"))
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes == set(BOT_SCOPES)
    assert set(MANIFEST_BOT_SCOPES) == scopes


async def test_an_error_that_is_not_a_refused_token_is_not_called_one(
    env: dict[str, str], slack: FakeSlack, dashscope: FakeDashScope
) -> None:
    slack.fail_next("auth.test", status=200, error="team_access_not_granted")
    dashscope.enqueue(thinking_script([], ["OK"]))
    status, lines = await run_check()
    assert status == 1
    found = line(lines, "Slack bot token")
    assert found.startswith("FAIL") and "(team_access_not_granted)" in found
    assert "refused" not in found


async def test_many_workspaces_mode_has_no_bot_token_to_check_and_may_have_no_shared_key(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "DASHSCOPE_API_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("SLACK_CLIENT_ID", "1111.2222")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "client-secret")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret")
    status, lines = await run_check()
    assert status == 0, lines
    assert [entry.split(":", 1)[0] for entry in lines] == [
        "ok    settings",
        "ok    Slack",
        "ok    database",
    ]
    assert "/slack/install" in line(lines, "Slack")
