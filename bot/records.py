"""The other shapes the domain stores: usage ledger rows and their sums, kept answers, a
workspace's saved settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

ASK: Final = "ask"
FOLLOW_UP: Final = "follow_up"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One model call in the ledger. Costs are exact decimals of US dollars."""

    team_id: str
    user_id: str
    channel_id: str
    thread_ts: str
    model: str
    kind: str  # clarify | research | answer
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0
    request_id: str = ""
    cost_usd: Decimal | None = None  # None when the model has no known price
    created_at: float = field(default=0.0)
    call_id: str = ""  # names the model call: the ledger records each call once


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over a group of ledger rows. Reasoning tokens are part of the output tokens."""

    name: str  # the model or the user id the rows share
    calls: int
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None  # over the priced calls; None when none had a price
    unpriced_calls: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A quick answer or a follow-up answer, kept so its reasoning can be shown on request
    later and so follow-ups become thread history."""

    id: str  # random; the value of the answer's buttons
    team_id: str
    user_id: str
    channel_id: str
    thread_ts: str  # the research thread of a follow-up; "" for /ask
    kind: str  # ASK | FOLLOW_UP
    model: str
    question: str
    answer: str
    reasoning: str = ""
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SettingsRow:
    """A workspace's saved research settings. The MCP bearer token is only ever ciphertext."""

    team_id: str
    model: str | None = None
    output_format: str | None = None
    clarify: bool | None = None
    mcp_label: str = ""
    mcp_url: str = ""
    mcp_allowed_tools: tuple[str, ...] = ()
    mcp_token_sealed: str | None = None
    report_delivery: str | None = None  # a Delivery value; None: canvas and file
    updated_by: str = ""
    updated_at: float = 0.0

    def __repr__(self) -> str:  # the ciphertext is no business of a log line either
        sealed = "<sealed>" if self.mcp_token_sealed else None
        return (
            f"SettingsRow(team_id={self.team_id!r}, model={self.model!r}, "
            f"output_format={self.output_format!r}, clarify={self.clarify!r}, "
            f"mcp_label={self.mcp_label!r}, mcp_url={self.mcp_url!r}, "
            f"mcp_allowed_tools={self.mcp_allowed_tools!r}, mcp_token_sealed={sealed}, "
            f"report_delivery={self.report_delivery!r}, "
            f"updated_by={self.updated_by!r}, updated_at={self.updated_at!r})"
        )


@dataclass(frozen=True, slots=True)
class WorkspaceRecord:
    """A workspace served in multi-workspace mode: its org (Enterprise Grid), whether the org's
    install serves it, and, once uninstalled, when its content is deleted."""

    team_id: str
    enterprise_id: str | None = None
    enterprise_install: bool = False
    name: str = ""
    installed_at: float = 0.0
    uninstalled_at: float | None = None
    purge_at: float | None = None  # None: kept (installed, or already deleted)
