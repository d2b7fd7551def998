"""Workspaces, their own model keys and the deletion of an uninstalled one's content, on both
engines: the purge removes every content row of that workspace and no other's, and the ledger
becomes exact anonymous totals per model, kind and month."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from bot.conversation import ConversationKey
from bot.records import SettingsRow, StoredAnswer, WorkspaceRecord
from storage import Storage
from storage.tables import usage as usage_table
from storage.workspaces import count_rows
from tests.storage.conftest import count
from tests.storage.data import conversation, usage

JAN = datetime(2026, 1, 15, tzinfo=UTC).timestamp()
FEB = datetime(2026, 2, 3, tzinfo=UTC).timestamp()


async def fill(storage: Storage, team: str) -> None:
    key = ConversationKey(team, "C1", "1700000000.000100")
    await storage.conversations.create(conversation(key))
    await storage.answers.add(
        StoredAnswer("a-" + team, team, "U1", "C1", "", "ask", "qwen-plus", "q?", "a.")
    )
    await storage.settings.put(SettingsRow(team, mcp_token_sealed="sealed-token"))
    await storage.kept.keep(key, "U1", "a question kept", "1700000000.000200")
    await storage.ledger.record(
        [
            replace(usage(team, created_at=JAN, user_id="U1"), call_id=f"{team}-1"),
            replace(usage(team, created_at=JAN + 60, user_id="U2"), call_id=f"{team}-2"),
            replace(
                usage(team, created_at=FEB, cost_usd=None, kind="clarify"), call_id=f"{team}-3"
            ),
        ]
    )


async def test_purge_deletes_one_workspaces_content_and_keeps_anonymous_totals(
    storage: Storage,
) -> None:
    await fill(storage, "TA")
    await fill(storage, "TB")
    await storage.workspaces.purge("TA")

    gone = await count_rows(storage.database, "TA")
    assert {name: n for name, n in gone.items() if name != "usage"} == {
        "conversations": 0,
        "answers": 0,
        "workspace_settings": 0,
        "kept_questions": 0,
        "inbox": 0,
        "pacing": 0,
    }
    kept = await count_rows(storage.database, "TB")
    assert kept["conversations"] == 1 and kept["answers"] == 1 and kept["usage"] == 3

    totals = sorted(await storage.ledger.records("TA"), key=lambda r: r.created_at)
    assert [(t.kind, t.input_tokens, t.output_tokens, t.cost_usd) for t in totals] == [
        ("research", 200, 100, Decimal("1")),
        ("clarify", 100, 50, None),
    ]
    assert {(t.user_id, t.channel_id, t.thread_ts, t.request_id) for t in totals} == {
        ("", "", "", "")
    }
    assert [t.created_at for t in totals] == [
        datetime(2026, 1, 1, tzinfo=UTC).timestamp(),
        datetime(2026, 2, 1, tzinfo=UTC).timestamp(),
    ]
    assert await count(storage, usage_table, usage_table.c.user_id == "U2") == 1  # TB's only


async def test_purge_twice_changes_nothing_more(storage: Storage) -> None:
    await fill(storage, "TA")
    await storage.workspaces.purge("TA")
    first = await storage.ledger.records("TA")
    await storage.workspaces.purge("TA")
    assert await storage.ledger.records("TA") == first


async def test_uninstall_marks_and_reinstall_clears_the_deletion(storage: Storage) -> None:
    workspaces = storage.workspaces
    await workspaces.installed(WorkspaceRecord("TA", name="Alpha", installed_at=100.0))
    await workspaces.uninstalled("TA", at=200.0, purge_at=300.0)
    assert await workspaces.due(299.0) == []
    assert await workspaces.due(300.0) == ["TA"]

    await workspaces.installed(WorkspaceRecord("TA", installed_at=250.0))
    again = await workspaces.get("TA")
    assert again is not None
    assert (again.uninstalled_at, again.purge_at, again.name) == (None, None, "Alpha")
    assert again.installed_at == 100.0
    assert await workspaces.due(1e12) == []


async def test_uninstall_of_a_workspace_never_recorded_still_schedules_it(
    storage: Storage,
) -> None:
    await storage.workspaces.uninstalled("TOLD", at=10.0, purge_at=20.0)
    assert await storage.workspaces.due(20.0) == ["TOLD"]


async def test_org_members_and_billed_workspaces(storage: Storage) -> None:
    workspaces = storage.workspaces
    for team in ("T5", "T6"):
        await workspaces.installed(WorkspaceRecord(team, "E1", enterprise_install=True))
    await workspaces.installed(WorkspaceRecord("TSOLO"))
    assert sorted(w.team_id for w in await workspaces.of_enterprise("E1")) == ["T5", "T6"]
    await storage.ledger.record([usage("TLEDGER")])
    assert await workspaces.billed() == ["TLEDGER"]


async def test_forgetting_secrets_removes_the_key_and_the_mcp_token_only(
    storage: Storage,
) -> None:
    keys = storage.workspace_keys
    await keys.put("TA", "sealed-key-a", "UADMIN")
    await keys.put("TB", "sealed-key-b", "UADMIN")
    await storage.settings.put(SettingsRow("TA", model="m", mcp_token_sealed="sealed-token"))
    await keys.forget_secrets("TA")
    assert await keys.get("TA") is None and await keys.get("TB") == "sealed-key-b"
    row = await storage.settings.get("TA")
    assert row is not None and row.mcp_token_sealed is None and row.model == "m"
