"""Conversations and ledger rows the storage tests write."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from bot.conversation import Conversation, ConversationKey, State
from bot.records import UsageRecord

KEY = ConversationKey("T1", "C1", "1700000000.000100")
IMAGE = "data:image/png;base64,iVBORw0KGgo="
HISTORY: tuple[dict[str, Any], ...] = (
    {"role": "user", "content": [{"image": IMAGE}, {"text": "Research this chart"}]},
    {"role": "assistant", "content": "Which years should I cover? ¿Años?"},
    {"role": "user", "content": "2010 to 2024"},
)
REFERENCES: tuple[dict[str, Any], ...] = (
    {"index": 1, "title": "Chart source", "url": "https://example.org/chart"},
)


def conversation(key: ConversationKey = KEY, **changes: Any) -> Conversation:
    """A draft, as the bot hands it to create()."""
    base = Conversation(
        key=key,
        user_id="U1",
        state=State.AWAITING_CLARIFICATION,
        model="qwen-deep-research",
        history=HISTORY,
    )
    return replace(base, **changes)


def usage(
    team_id: str = "T1",
    *,
    model: str = "qwen-deep-research",
    kind: str = "research",
    input_tokens: int = 100,
    output_tokens: int = 50,
    reasoning_tokens: int = 0,
    cost_usd: Decimal | None = Decimal("0.5"),
    created_at: float = 0.0,
    user_id: str = "U1",
    request_id: str = "req-1",
) -> UsageRecord:
    return UsageRecord(
        team_id=team_id,
        user_id=user_id,
        channel_id=KEY.channel_id,
        thread_ts=KEY.thread_ts,
        model=model,
        kind=kind,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens,
        request_id=request_id,
        cost_usd=cost_usd,
        created_at=created_at,
    )
