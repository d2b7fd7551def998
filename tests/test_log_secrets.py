"""Every secret the process knows stays out of the log (issue 10, item 10): settings, and the
workspace MCP tokens it learns while it runs, in whatever escaping a log line holds them."""

from __future__ import annotations

import io
import json
import logging
import uuid
from dataclasses import replace
from urllib.parse import quote

import pytest

from bot.logs import REDACTED, RedactingFormatter, SecretRegistry, remember_secret
from bot.records import SettingsRow
from bot.secrets_box import SecretBox
from bot.workspace_settings import (
    SNAPSHOT,
    SettingsForm,
    SettingsInvalid,
    WorkspaceSettingsService,
)

SECRET_KEY = "k" * 40
FORM = SettingsForm(
    model=SNAPSHOT,
    mcp_label="kb",
    mcp_url="https://mcp.example.com/sse",
    mcp_tools="search, fetch",
)


class MemoryStore:
    """The settings repository port, in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, SettingsRow] = {}

    async def get(self, team_id: str) -> SettingsRow | None:
        return self.rows.get(team_id)

    async def put(self, row: SettingsRow) -> SettingsRow:
        self.rows[row.team_id] = replace(row, updated_at=1.0)
        return self.rows[row.team_id]


def capture(
    secrets: list[str], known: SecretRegistry | None = None
) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s", secrets, known=known))
    logger = logging.getLogger(f"test-secrets-{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.handlers[:] = [handler]
    return logger, stream


def test_a_secret_learned_after_start_is_redacted_in_every_escaping() -> None:
    known = SecretRegistry()
    logger, stream = capture([], known)
    token = 'opaque"token\\with/odd chars'
    logger.error("before: %s", token)
    assert token in stream.getvalue()  # nobody said it was a secret yet

    known.add(token)
    logger.error("echo: %s", token)
    logger.error("as JSON: %s", json.dumps({"authentication": {"bearer": token}}))
    logger.error("as repr: %r", {"bearer": token})
    logger.error("in a URL: https://x.example/?t=%s", quote(token, safe=""))
    after = stream.getvalue().split("\n", 1)[1]
    assert token not in after
    assert json.dumps(token)[1:-1] not in after and quote(token, safe="") not in after
    assert after.count(REDACTED) == 4


def test_a_secret_inside_a_longer_one_is_hidden_whole() -> None:
    known = SecretRegistry()
    known.add("abcdef123", "abcdef123456789")
    logger, stream = capture([], known)
    logger.info("abcdef123456789 then abcdef123")
    assert stream.getvalue().strip() == f"INFO {REDACTED} then {REDACTED}"


def test_short_values_are_not_treated_as_secrets() -> None:
    known = SecretRegistry()
    known.add("abc", "", None)
    logger, stream = capture([], known)
    logger.info("abc stays")
    assert "abc stays" in stream.getvalue()


async def test_the_settings_service_registers_tokens_it_decrypts_or_is_given() -> None:
    store = MemoryStore()
    service = WorkspaceSettingsService(store, default_model=SNAPSHOT, box=SecretBox(SECRET_KEY))
    logger, stream = capture([])  # the process-wide registry, as configure_logging uses

    entered = f"tok-{uuid.uuid4().hex}"
    await service.save("T1", "UADMIN", replace(FORM, mcp_token=f"Bearer {entered}"))
    logger.error("saved with %s", entered)

    # Saved by an earlier process: this one learns it only by decrypting it for research.
    sealed_only = f"tok-{uuid.uuid4().hex}"
    store.rows["T2"] = SettingsRow(
        team_id="T2",
        model=SNAPSHOT,
        mcp_label="kb",
        mcp_url="https://mcp.example.com/sse",
        mcp_allowed_tools=("search",),
        mcp_token_sealed=SecretBox(SECRET_KEY).encrypt(sealed_only, context="T2"),
    )
    logger.error("before decrypting: %s", sealed_only)
    research = await service.research("T2")
    assert research.research_tools[0]["authentication"]["bearer"] == sealed_only
    logger.error("DashScope said: invalid bearer %s", sealed_only)

    # A token that fails validation was still typed in: it is a secret too.
    refused = f"tok-{uuid.uuid4().hex}"
    with pytest.raises(SettingsInvalid):
        await service.save("T1", "UADMIN", replace(FORM, mcp_url="http://x", mcp_token=refused))
    logger.error("form had %s", refused)

    before, after = stream.getvalue().split("before decrypting: ")
    assert after.startswith(sealed_only)  # not known until it was decrypted
    after = after.removeprefix(sealed_only)
    for token in (entered, sealed_only, refused):
        assert token not in before + after
    assert (before + after).count(REDACTED) == 3


def test_remember_secret_reaches_a_formatter_made_before_it() -> None:
    logger, stream = capture([])
    token = f"late-{uuid.uuid4().hex}"
    remember_secret(token)
    logger.warning("late %s", token)
    assert token not in stream.getvalue() and REDACTED in stream.getvalue()
