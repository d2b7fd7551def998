"""How to use the bot, in one place: `/research help` and the App Home tab show the same text."""

from __future__ import annotations

from typing import Any, Final

from bot.i18n import N_
from handlers.i18n import ENGLISH_TEXT, Translations

HELP: Final = N_("""*Qwen Deep Research: how to use it*
*Research*
• `/research <topic>` in a channel, or mention me with a topic: `@Qwen Deep Research the use of \
AI in education`. In a direct message or a group DM with me, or in my AI-app view, just \
write the topic.
• I ask one clarifying question in the thread; answer it there (no mention needed) and the \
research starts, with live progress and a *Stop* button.
• The report arrives in the thread as a canvas and a Markdown file with its sources (your \
workspace chooses which). If a run fails or is stopped, *Retry* runs that step again.
• On any message, *More actions → Research this* researches that message and its thread.
• Reply in the thread after the report to ask follow-up questions: a thinking model answers as \
it writes, with the report as context. *Research this deeper* on an answer starts a new \
research round with the whole thread.
*Quick answers*
• `/ask <question>`: a Qwen thinking model answers under your question, as it writes. *Show \
reasoning* opens the model's reasoning. In my DM or AI-app view, start a message with `ask:`.
• `/ask --private …` only you see the answer (*Share in channel* posts it) · `--fast` no \
thinking first (hybrid models) · `--budget 2000` at most 2,000 reasoning tokens · \
`--model qwq-plus` another thinking model.
*Usage*
• `/research usage`: this workspace's tokens and estimated cost, this month and all time, by \
model and top users (only you see it). The same is on my Home tab.
*Settings*
• `/research settings` (workspace admins and owners): the research model, report length, \
whether I ask a clarifying question first, how reports arrive (canvas, file or both), and an \
MCP server for the snapshot model. They apply to new conversations; my Home tab shows them.
• `/research help`: this text.""")


def help_blocks(t: Translations = ENGLISH_TEXT) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": t.gettext(HELP)}}]
