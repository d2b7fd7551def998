"""Databases upgrade in place: one written by the release before versioned migrations keeps
every row, and a new database gets the whole schema, once, even with several processes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path

from bot.conversation import ConversationKey, State
from bot.research_options import SUMMARY
from bot.secrets_box import SecretBox
from storage import Storage
from storage.database import Database
from tests.conftest import start_bot
from tests.fakes.dashscope_server import FakeDashScope
from tests.fakes.slack_server import FakeSlack
from tests.postgres import fresh_database

LEGACY_SCHEMA = Path(__file__).parent / "fixtures" / "legacy_schema.sql"
SECRET_KEY = "k" * 40
HEAD = "0005"
DONE_KEY = ConversationKey("T1", "C1", "1700000000.000100")
WAITING_KEY = ConversationKey("T1", "C2", "1700000000.000200")
HISTORY = [
    {"role": "user", "content": [{"image": "data:image/png;base64,iVBO"}, {"text": "教育 & AI"}]},
    {"role": "assistant", "content": "Which years?"},
    {"role": "user", "content": "2010 to 2024 \u2013 ¿años?"},
    {"role": "assistant", "content": "# Report\n\nFindings [1]."},
]
REFS = [{"index": 1, "title": "OECD", "url": "https://example.org/oecd"}]


def write_legacy_database(path: Path, *, with_options_column: bool = True) -> None:
    """A database as the release before migrations left it, with a row in every table."""
    schema = LEGACY_SCHEMA.read_text(encoding="utf-8")
    if not with_options_column:  # the first release had no options column
        schema = schema.replace(
            "    options      TEXT NOT NULL DEFAULT '{}',  -- JSON of the request's research "
            "options\n",
            "",
        )
        assert "options" not in schema.split("CREATE TABLE IF NOT EXISTS usage")[0]
    sealed = SecretBox(SECRET_KEY).encrypt("mcp-bearer-token", context="T1")
    with sqlite3.connect(path) as db:
        db.executescript(schema)
        columns = "team_id, channel_id, thread_ts, user_id, state, model, history, report, refs"
        columns += ", progress_ts, created_at, updated_at"
        values = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
        options = json.dumps({"output_format": SUMMARY, "clarify": False, "model": None})
        if with_options_column:
            columns += ", options"
            values += ", ?"
        for key, state, report, extra in (
            (DONE_KEY, "done", HISTORY[-1]["content"], [options]),
            (WAITING_KEY, "awaiting_clarification", None, ["{}"]),
        ):
            row = [
                key.team_id,
                key.channel_id,
                key.thread_ts,
                "U1",
                state,
                "qwen-deep-research",
                json.dumps(HISTORY if report else HISTORY[:2], ensure_ascii=False),
                report,
                json.dumps(REFS if report else []),
                "1700000001.000100" if report else None,
                1_700_000_000.5,
                1_700_000_100.25,
            ]
            if with_options_column:
                row += extra
            db.execute(f"INSERT INTO conversations ({columns}) VALUES ({values})", row)
        usage = (
            "INSERT INTO usage (team_id, user_id, channel_id, thread_ts, model, kind, "
            "input_tokens, output_tokens, reasoning_tokens, request_id, cost_usd, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        for i, cost in enumerate((0.1, 0.1, 0.1, None, 0.03963904000000001)):
            db.execute(
                usage,
                ("T1", f"U{i % 2}", "C1", DONE_KEY.thread_ts, "qwen-deep-research", "research",
                 1000 + i, 2000 + i, i, f"req-{i}", cost, 1_700_000_000.0 + i),
            )  # fmt: skip
        db.execute("INSERT INTO claims (key, claimed_at) VALUES ('message:T1:C1:1.1', 1.0)")
        db.execute(
            "INSERT INTO answers (id, team_id, user_id, channel_id, thread_ts, kind, model, "
            "question, answer, reasoning, created_at) VALUES "
            "('a1', 'T1', 'U1', 'C1', ?, 'follow_up', 'qwen-plus', 'Why?', 'Because.', 'Hmm.', "
            "5.0)",
            (DONE_KEY.thread_ts,),
        )
        db.execute(
            "INSERT INTO workspace_settings (team_id, model, output_format, clarify, mcp_label, "
            "mcp_url, mcp_allowed_tools, mcp_token_sealed, updated_by, updated_at) VALUES "
            "('T1', 'qwen-deep-research-2025-12-15', ?, 0, 'docs', 'https://mcp.example.com/sse',"
            " '[\"search\", \"fetch\"]', ?, 'UADMIN', 7.0)",
            (SUMMARY, sealed),
        )


async def test_a_database_from_before_migrations_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    write_legacy_database(path)
    storage = await Storage.open(f"sqlite+aiosqlite:///{path}")
    try:
        assert await storage.database.revision() == HEAD
        done = await storage.conversations.get(DONE_KEY)
        assert done is not None
        assert done.state is State.DONE
        assert list(done.history) == HISTORY
        assert list(done.references) == REFS
        assert done.report == HISTORY[-1]["content"]
        assert done.progress_ts == "1700000001.000100"
        assert (done.options.output_format, done.options.clarify) == (SUMMARY, False)
        assert (done.created_at, done.updated_at) == (1_700_000_000.5, 1_700_000_100.25)
        waiting = await storage.conversations.get(WAITING_KEY)
        assert waiting is not None and waiting.state is State.AWAITING_CLARIFICATION

        records = await storage.ledger.records("T1")
        assert [r.request_id for r in records] == [f"req-{i}" for i in range(5)]
        assert [r.cost_usd for r in records] == [
            Decimal("0.1"), Decimal("0.1"), Decimal("0.1"), None, Decimal("0.03963904"),
        ]  # fmt: skip
        [totals] = await storage.ledger.by_model("T1")
        assert totals.cost_usd == Decimal("0.33963904") and totals.unpriced_calls == 1
        assert (totals.calls, totals.input_tokens, totals.reasoning_tokens) == (5, 5010, 10)

        assert await storage.claims.claim("message:T1:C1:1.1") is False  # still claimed
        answer = await storage.answers.get("T1", "a1")
        assert answer is not None and (answer.answer, answer.reasoning) == ("Because.", "Hmm.")
        settings = await storage.settings.get("T1")
        assert settings is not None
        assert settings.mcp_allowed_tools == ("search", "fetch") and settings.clarify is False
        assert settings.mcp_token_sealed is not None
        assert SecretBox(SECRET_KEY).decrypt(settings.mcp_token_sealed, context="T1") == (
            "mcp-bearer-token"
        )
        # The upgraded conversation is writable: its version started at 0.
        saved = await storage.conversations.save(done.to(State.QUEUED))
        assert saved.version == done.version + 1
    finally:
        await storage.close()


async def test_the_first_release_without_options_upgrades_too(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    write_legacy_database(path, with_options_column=False)
    storage = await Storage.open(f"sqlite+aiosqlite:///{path}")
    try:
        done = await storage.conversations.get(DONE_KEY)
        assert done is not None and done.options.output_format is None
        assert list(done.history) == HISTORY
    finally:
        await storage.close()


async def test_the_bot_starts_on_an_old_database_and_serves_its_history(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    write_legacy_database(tmp_path / "bot.sqlite3")
    runtime = await start_bot(slack, dashscope, tmp_path, "http", SECRET_KEY=SECRET_KEY)
    try:
        services = runtime.services
        assert services is not None
        usage = await services.usage.workspace("T1")
        assert usage.all_time.total.cost_usd == Decimal("0.33963904")
        research = await services.settings.research("T1")
        assert research.research_tools[0]["authentication"] == {"bearer": "mcp-bearer-token"}
        done = await services.conversations.get(DONE_KEY)
        assert done is not None and done.state is State.DONE
    finally:
        await runtime.stop()


async def test_opening_twice_applies_nothing_twice(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}"
    for _ in range(2):
        storage = await Storage.open(url)
        try:
            assert await storage.database.revision() == HEAD
        finally:
            await storage.close()


async def test_processes_starting_together_on_postgresql_migrate_once() -> None:
    async with fresh_database() as url:
        driver_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
        code = (
            "import asyncio, sys\n"
            "from storage.database import Database\n"
            "async def main():\n"
            "    db = await Database.open(sys.argv[1])\n"
            "    print(await db.revision())\n"
            "    await db.close()\n"
            "asyncio.run(main())\n"
        )
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, driver_url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(3)
        ]  # fmt: skip
        outputs = [await asyncio.wait_for(p.communicate(), 60) for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0], [e[-800:] for _, e in outputs]
        assert [out.decode().strip() for out, _ in outputs] == [HEAD] * 3
        db = await Database.open(driver_url, migrate=False)
        try:
            assert await db.revision() == HEAD
        finally:
            await db.close()


def test_the_schema_head_a_start_checks_is_alembics_head() -> None:
    # A start whose database is at SCHEMA_HEAD does not load Alembic; a release that adds a
    # migration without moving SCHEMA_HEAD would leave databases behind.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from storage.database import MIGRATIONS, SCHEMA_HEAD

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD == HEAD
