"""Block Kit for a workspace's usage: `/research usage` and the App Home tab."""

from __future__ import annotations

from typing import Any, Final

from bot.budget import reset_time
from bot.records import Totals
from bot.usage_report import Period, WorkspaceUsage, total_of
from handlers.render import SECTION_LIMIT, Message, clip, escaped, split_text

NO_PRICE: Final = "no price set"
# Models listed per period; the rest are summed in one line, so the blocks stay within a
# message's 50 and the Home tab's 100 however many models a workspace tried.
MAX_LISTED_MODELS: Final = 10


def cost(totals: Totals) -> str:
    if totals.cost_usd is None:
        return NO_PRICE
    text = f"est. ${totals.cost_usd:,.4f}"
    if totals.unpriced_calls:
        calls = "call" if totals.unpriced_calls == 1 else "calls"
        text += f" + {totals.unpriced_calls:,} unpriced {calls}"
    return text


def tokens(totals: Totals) -> str:
    text = f"{totals.input_tokens:,} in / {totals.output_tokens:,} out"
    if totals.reasoning_tokens:
        text += f" ({totals.reasoning_tokens:,} reasoning)"
    return f"{text} tokens"


def period_blocks(period: Period) -> list[dict[str, Any]]:
    if not period.by_model:
        return [_section(f"*{period.label}*\nNothing used yet.")]
    total = period.total
    lines = [
        f"*{period.label}*: {total.calls:,} call{'s' if total.calls != 1 else ''} · "
        f"{tokens(total)} · {cost(total)}"
    ]
    listed, rest = period.by_model[:MAX_LISTED_MODELS], period.by_model[MAX_LISTED_MODELS:]
    lines += [
        f"• `{escaped(m.name, 100)}`: {_calls(m.calls)} · {tokens(m)} · {cost(m)}" for m in listed
    ]
    if rest:
        others = total_of(rest)
        lines.append(
            f"• {len(rest):,} more models: {_calls(others.calls)} · {tokens(others)} · "
            f"{cost(others)}"
        )
    if period.top_users:
        lines.append("_Top users_")
        lines += [
            f"{rank}. <@{escaped(u.name, 30)}>: {u.tokens:,} tokens · {cost(u)}"
            for rank, u in enumerate(period.top_users, start=1)
        ]
    return [_section(chunk) for chunk in split_text("\n".join(lines), SECTION_LIMIT)]


def usage_blocks(usage: WorkspaceUsage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Usage in this workspace"}}
    ]
    blocks += period_blocks(usage.month)
    blocks += period_blocks(usage.all_time)
    notes = [
        "Reasoning tokens are part of the output tokens. Costs are estimates from the bot's "
        "price table; models without a price show tokens only."
    ]
    budget = usage.budget
    if budget is not None:
        share = min(budget.used / budget.limit, 9.99) if budget.limit else 0
        notes.insert(
            0,
            f"Monthly budget: {budget.used:,} of {budget.limit:,} tokens used ({share:.0%}); "
            f"resets on {reset_time(budget.resets_at)}."
            + (" New research and answers are paused until then." if budget.exhausted else ""),
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": n} for n in notes]})
    return blocks


def usage_message(usage: WorkspaceUsage) -> Message:
    total = usage.month.total
    text = f"Usage this month: {total.tokens:,} tokens, {cost(total)}"
    return {"text": text, "blocks": usage_blocks(usage)}


def _calls(n: int) -> str:
    return f"{n:,} call{'s' if n != 1 else ''}"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}}
