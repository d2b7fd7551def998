"""The long-lived objects handlers need, built once in main() and passed in."""

from __future__ import annotations

from dataclasses import dataclass

from bot.answers import AnswerService
from bot.budget import BudgetGuard
from bot.images import AttachmentReader
from bot.ports import (
    Conversations,
    DeliveryClaims,
    FeedbackRatings,
    Inbox,
    Languages,
    UsageLedger,
)
from bot.research import ResearchService
from bot.usage_report import UsageReporter
from bot.workspace_settings import WorkspaceSettingsService
from bot.workspaces import ModelKeys


@dataclass(frozen=True, slots=True)
class Services:
    conversations: Conversations
    claims: DeliveryClaims
    inbox: Inbox
    process_id: str  # owns what this process accepts
    ledger: UsageLedger
    research: ResearchService
    answers: AnswerService
    usage: UsageReporter
    budget: BudgetGuard
    files: AttachmentReader
    settings: WorkspaceSettingsService
    model_keys: ModelKeys
    feedback: FeedbackRatings
    languages: Languages
