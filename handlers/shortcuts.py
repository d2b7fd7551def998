"""The "Research this" message shortcut: any message's text, and its thread's, becomes a research
topic in that message's thread, after a small modal for the options (summary or detailed, a
clarifying question first or not)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationKey
from bot.i18n import N_
from bot.research import MAX_MESSAGE_CHARS
from bot.research_options import DETAILED, SUMMARY, ResearchOptions
from bot.services import Services
from handlers.actions import team_of
from handlers.events import has_substance, unescape
from handlers.i18n import ENGLISH_TEXT, Translations, translations

logger = logging.getLogger(__name__)

RESEARCH_THIS: Final = "research_this"  # the shortcut's callback_id (manifest.yml)
RESEARCH_THIS_VIEW: Final = "research_this_options"
LENGTH_BLOCK: Final = "length"
CLARIFY_BLOCK: Final = "clarify"
INPUT: Final = "input"
ASK_FIRST: Final = "ask"
MAX_THREAD_MESSAGES: Final = 200
CANNOT_READ: Final = N_(
    "I can't read that conversation, so I can't research it: invite me with "
    "`/invite @Qwen Deep Research` first, then use *Research this* again."
)
NOTHING_TO_RESEARCH: Final = N_("That message has no text I could research.")
TITLE: Final = N_("Research this")  # a modal title: at most 24 characters
SUBMIT: Final = N_("Research")
CANCEL: Final = N_("Cancel")
EXPLAINED: Final = N_(
    "The message, and its thread, become the research topic. The research runs in that thread."
)
REPORT_LABEL: Final = N_("Report")
DETAILED_REPORT: Final = N_("Detailed report")
SUMMARY_REPORT: Final = N_("Summary")
CLARIFY_LABEL: Final = N_("Clarifying question")
ASK_ME_FIRST: Final = N_("Ask me one clarifying question first")


def register(app: AsyncApp, services: Services) -> None:
    @app.shortcut(RESEARCH_THIS)
    async def on_research_this(
        ack: AsyncAck, shortcut: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        user = str((shortcut.get("user") or {}).get("id") or "")
        t = translations(await services.languages.language(user, team_of(shortcut)))
        channel = str((shortcut.get("channel") or {}).get("id") or "")
        message = shortcut.get("message") or {}
        ts = str(message.get("ts") or shortcut.get("message_ts") or "")
        root = str(message.get("thread_ts") or ts)
        meta = json.dumps({"c": channel, "t": root})
        # The trigger lasts three seconds: open first, read the thread on submission.
        await client.views_open(trigger_id=shortcut["trigger_id"], view=options_modal(meta, t))

    @app.view(RESEARCH_THIS_VIEW)
    async def on_options(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            channel, root = str(meta["c"]), str(meta["t"])
        except (ValueError, KeyError, TypeError):
            logger.info("ignored a Research this submission without its message")
            return
        user = str((body.get("user") or {}).get("id") or "")
        key = ConversationKey(team_of(body), channel, root)
        try:
            texts = await _thread_texts(client, key)
        except SlackApiError as exc:
            logger.info("cannot read %s for Research this: %s", key, exc.response.get("error"))
            await _tell(client, services, key, user, CANNOT_READ)
            return
        # Other people's words are the topic, as they wrote them: a `--word` in them is not
        # an option (the form chose those).
        joined = "\n\n".join(texts)
        if not has_substance(joined, options=False):
            await _tell(client, services, key, user, NOTHING_TO_RESEARCH)
            return
        topic = unescape(joined).strip()[:MAX_MESSAGE_CHARS].rstrip()
        options = _options(view.get("state", {}).get("values") or {})
        await services.research.mention(key, user, topic, options=options)


def options_modal(meta: str, t: Translations = ENGLISH_TEXT) -> dict[str, Any]:
    ask = {"text": _plain(t.gettext(ASK_ME_FIRST)), "value": ASK_FIRST}
    lengths = [
        {"text": _plain(t.gettext(DETAILED_REPORT)), "value": DETAILED},
        {"text": _plain(t.gettext(SUMMARY_REPORT)), "value": SUMMARY},
    ]
    return {
        "type": "modal",
        "callback_id": RESEARCH_THIS_VIEW,
        "private_metadata": meta,
        "title": _plain(t.gettext(TITLE)),
        "submit": _plain(t.gettext(SUBMIT)),
        "close": _plain(t.gettext(CANCEL)),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": t.gettext(EXPLAINED)}},
            {
                "type": "input",
                "block_id": LENGTH_BLOCK,
                "label": _plain(t.gettext(REPORT_LABEL)),
                "element": {
                    "type": "radio_buttons",
                    "action_id": INPUT,
                    "options": lengths,
                    "initial_option": lengths[0],
                },
            },
            {
                "type": "input",
                "block_id": CLARIFY_BLOCK,
                "optional": True,
                "label": _plain(t.gettext(CLARIFY_LABEL)),
                "element": {
                    "type": "checkboxes",
                    "action_id": INPUT,
                    "options": [ask],
                    "initial_options": [ask],
                },
            },
        ],
    }


def _options(values: Mapping[str, Any]) -> ResearchOptions:
    """The modal's choices: the report's length, and whether to ask first."""
    length = ((values.get(LENGTH_BLOCK) or {}).get(INPUT) or {}).get("selected_option") or {}
    ticked = ((values.get(CLARIFY_BLOCK) or {}).get(INPUT) or {}).get("selected_options") or []
    return ResearchOptions(
        output_format=SUMMARY if length.get("value") == SUMMARY else DETAILED,
        clarify=any(isinstance(o, Mapping) and o.get("value") == ASK_FIRST for o in ticked),
    )


async def _thread_texts(client: AsyncWebClient, key: ConversationKey) -> list[str]:
    """The thread's messages from people, oldest first (the message alone if it has none)."""
    response = await client.conversations_replies(
        channel=key.channel_id, ts=key.thread_ts, limit=MAX_THREAD_MESSAGES
    )
    texts = []
    for message in response.get("messages") or []:
        text = message.get("text")
        if isinstance(text, str) and text.strip() and not message.get("bot_id"):
            texts.append(text.strip())
    return texts


async def _tell(
    client: AsyncWebClient, services: Services, key: ConversationKey, user: str, sentence: str
) -> None:
    """A sentence in the person's DM with the bot: the conversation itself may be closed to it."""
    try:
        t = translations(await services.languages.language(user, key.team_id))
        await client.chat_postMessage(channel=user, text=t.gettext(sentence))
    except Exception:
        logger.warning("could not tell %s about Research this", user, exc_info=True)


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}
