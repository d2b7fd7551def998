"""Block Kit for a workspace's usage: `/research usage` and the App Home tab, in the reader's
language (figures written as that language writes them)."""

from __future__ import annotations

from typing import Any, Final

from bot.i18n import N_, Day, say, say_n
from bot.records import Totals
from bot.usage_report import Period, WorkspaceUsage, total_of
from handlers.i18n import ENGLISH_TEXT, Translations, show
from handlers.render import SECTION_LIMIT, Message, clip, escaped, estimate, split_text

NO_PRICE: Final = N_("no price set")
HEADER: Final = N_("Usage in this workspace")
NOTHING_YET: Final = N_("Nothing used yet.")
TOP_USERS: Final = N_("Top users")
ESTIMATES: Final = N_(
    "Reasoning tokens are part of the output tokens. Costs are estimates from the bot's "
    "price table; models without a price show tokens only."
)
BUDGET: Final = N_("Monthly budget: {used} of {limit} tokens used ({share}); resets on {day}.")
PAUSED: Final = N_("New research and answers are paused until then.")
THIS_MONTH: Final = N_("Usage this month: {tokens} tokens, {cost}")
# Models listed per period; the rest are summed in one line, so the blocks stay within a
# message's 50 and the Home tab's 100 however many models a workspace tried.
MAX_LISTED_MODELS: Final = 10


def cost(totals: Totals, t: Translations = ENGLISH_TEXT) -> str:
    if totals.cost_usd is None:
        return t.gettext(NO_PRICE)
    text = estimate(totals.cost_usd, t)
    if totals.unpriced_calls:
        unpriced = say_n("{count} unpriced call", "{count} unpriced calls", totals.unpriced_calls)
        text += " + " + show(t, unpriced)
    return text


def tokens(totals: Totals, t: Translations = ENGLISH_TEXT) -> str:
    fields = {"input": totals.input_tokens, "output": totals.output_tokens}
    if totals.reasoning_tokens:
        sentence = N_("{input} in / {output} out ({reasoning} reasoning) tokens")
        return show(t, say(sentence, **fields, reasoning=totals.reasoning_tokens))
    return show(t, say(N_("{input} in / {output} out tokens"), **fields))


def _calls(n: int, t: Translations) -> str:
    return show(t, say_n("{count} call", "{count} calls", n))


def period_blocks(period: Period, t: Translations = ENGLISH_TEXT) -> list[dict[str, Any]]:
    label = show(t, period.label)
    if not period.by_model:
        return [_section(f"*{label}*\n{t.gettext(NOTHING_YET)}")]
    total = period.total
    lines = [f"*{label}*: {_calls(total.calls, t)} · {tokens(total, t)} · {cost(total, t)}"]
    listed, rest = period.by_model[:MAX_LISTED_MODELS], period.by_model[MAX_LISTED_MODELS:]
    lines += [
        f"• `{escaped(m.name, 100)}`: {_calls(m.calls, t)} · {tokens(m, t)} · {cost(m, t)}"
        for m in listed
    ]
    if rest:
        others = total_of(rest)
        models = show(t, say_n("{count} more model", "{count} more models", len(rest)))
        lines.append(
            f"• {models}: {_calls(others.calls, t)} · {tokens(others, t)} · {cost(others, t)}"
        )
    if period.top_users:
        lines.append(f"_{t.gettext(TOP_USERS)}_")
        for rank, user in enumerate(period.top_users, start=1):
            used = show(t, say_n("{count} token", "{count} tokens", user.tokens))
            lines.append(f"{rank}. <@{escaped(user.name, 30)}>: {used} · {cost(user, t)}")
    return [_section(chunk) for chunk in split_text("\n".join(lines), SECTION_LIMIT)]


def usage_blocks(usage: WorkspaceUsage, t: Translations = ENGLISH_TEXT) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": t.gettext(HEADER)}}
    ]
    blocks += period_blocks(usage.month, t)
    blocks += period_blocks(usage.all_time, t)
    notes = [t.gettext(ESTIMATES)]
    budget = usage.budget
    if budget is not None:
        share = min(budget.used / budget.limit, 9.99) if budget.limit else 0
        note = show(
            t,
            say(
                BUDGET,
                used=budget.used,
                limit=budget.limit,
                share=f"{share:.0%}",
                day=Day(budget.resets_at),
            ),
        )
        if budget.exhausted:
            note += " " + t.gettext(PAUSED)
        notes.insert(0, note)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": n} for n in notes]})
    return blocks


def usage_message(usage: WorkspaceUsage, t: Translations = ENGLISH_TEXT) -> Message:
    total = usage.month.total
    text = show(t, say(THIS_MONTH, tokens=total.tokens, cost=cost(total, t)))
    return {"text": text, "blocks": usage_blocks(usage, t)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}}
