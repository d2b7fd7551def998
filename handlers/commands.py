"""Slash commands: `/ask` for quick answers and `/research` (a topic, `usage`, `settings` or
`help`)."""

from __future__ import annotations

import logging
from typing import Any, Final

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.answers import AnswerSink, AskRequest
from bot.conversation import ConversationKey
from bot.flags import NO_QUESTION, FlagError, parse_ask
from bot.i18n import N_, say
from bot.research import MAX_MESSAGE_CHARS
from bot.services import Services
from handlers.answer_render import QUESTION_LINE, question_block
from handlers.answer_sinks import ResponseUrlSink, SlackThreadAnswerSink
from handlers.events import has_substance, unescape
from handlers.help import HELP, help_blocks
from handlers.i18n import Translations, show, translations
from handlers.render import SECTION_LIMIT, TEXT_LIMIT, escape, escaped, split_text
from handlers.settings import open_settings
from handlers.slack_sink import post_message
from handlers.usage_render import usage_message

logger = logging.getLogger(__name__)

NOT_IN_CHANNEL: Final = N_(
    "I can't post in this conversation yet. Invite me first with "
    "`/invite @Qwen Deep Research`, then run the command again. (`/ask` works anywhere.)"
)
TOO_LONG: Final = say(
    N_("Please keep the topic under {limit} characters."), limit=MAX_MESSAGE_CHARS
)
STARTED: Final = N_(":mag: {user} started a research conversation:")
RESEARCH_LINE: Final = N_("Research: {topic}")
USAGE_FAILED: Final = N_(
    "I couldn't read the usage figures just now. Please try again in a minute."
)


def register(app: AsyncApp, services: Services) -> None:
    @app.command("/ask")
    async def on_ask(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
        try:
            # Slack sends the text HTML-escaped: undone once here, escaped once on the way
            # back when the question is quoted.
            options = parse_ask(unescape(command.get("text", "")))
            if not has_substance(options.question):  # zero-width characters only, say
                raise FlagError(NO_QUESTION)
        except FlagError as exc:
            t = await _language(services, command)
            # An ack's text is seen by the asker only.
            await ack(text=escape(show(t, exc.usage)))
            return
        await ack()
        user = command.get("user_id", "")
        sink: AnswerSink | None = None
        if not options.private:
            sink = await _answer_thread(client, services, command, options.question)
        if sink is None:  # private, or a conversation the bot cannot post in
            sink = ResponseUrlSink(
                command["response_url"],
                asker=user,
                private=options.private,
                languages=services.languages,
                team=command.get("team_id", ""),
            )
        request = AskRequest(
            team_id=command.get("team_id", ""),
            user_id=user,
            channel_id=command.get("channel_id", ""),
            options=options,
        )
        await services.answers.ask(request, sink)

    @app.command("/research")
    async def on_research(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        text = unescape(command.get("text", "")).strip()
        word = text.lower()
        team = command.get("team_id", "")
        # Everything here answers the person in their language (looked up once an hour).
        t = await _language(services, command)
        if word in ("", "help") or not has_substance(text):
            await ack(text=t.gettext(HELP), blocks=help_blocks(t))
        elif word == "usage":
            await ack()
            try:
                usage = await services.usage.workspace(team)
            except Exception:
                logger.exception("usage figures for %s failed", team)
                await respond(text=t.gettext(USAGE_FAILED), response_type="ephemeral")
                return
            await respond(response_type="ephemeral", **usage_message(usage, t))
        elif word == "settings":
            await ack()
            refused = await open_settings(
                client,
                services,
                team=team,
                user=command.get("user_id", ""),
                trigger_id=command.get("trigger_id", ""),
            )
            if refused is not None:
                await respond(text=refused, response_type="ephemeral")
        elif len(text) > MAX_MESSAGE_CHARS:
            await ack(text=show(t, TOO_LONG))
        elif (refusal := await services.budget.refusal(team)) is not None:
            await ack(text=show(t, refusal))
        else:
            await ack()
            await _start_research(services, command, text, respond, client, t)


async def _language(services: Services, command: dict[str, Any]) -> Translations:
    """The catalog of the person who ran the command."""
    user, team = command.get("user_id", ""), command.get("team_id", "")
    return translations(await services.languages.language(user, team))


async def _answer_thread(
    client: AsyncWebClient, services: Services, command: dict[str, Any], question: str
) -> SlackThreadAnswerSink | None:
    """Where the bot can post: the question as a message, its answer streamed into that
    message's thread. None where it cannot (a channel it has not joined, someone else's DM):
    the command's response URL answers there, as whole messages."""
    user, channel = command.get("user_id", ""), command.get("channel_id", "")
    t = await _language(services, command)
    blocks = [question_block(user, question, t)]
    text = show(t, say(QUESTION_LINE, question=escaped(question, TEXT_LIMIT - 100)))
    message = {"text": text, "blocks": blocks}
    try:
        root = await post_message(client, message, channel=channel, thread_ts=None)
    except SlackApiError as exc:
        logger.info("answering /ask through its response URL: %s", exc.response.get("error"))
        return None
    except (SlackClientError, OSError):
        logger.warning("answering /ask through its response URL", exc_info=True)
        return None
    key = ConversationKey(command.get("team_id", ""), channel, str(root["ts"]))
    return SlackThreadAnswerSink(client, key, services.languages)


async def _start_research(
    services: Services,
    command: dict[str, Any],
    topic: str,
    respond: AsyncRespond,
    client: AsyncWebClient,
    t: Translations,
) -> None:
    """Post the topic as a thread root; the conversation then lives in that thread."""
    user, channel = command.get("user_id", ""), command.get("channel_id", "")
    try:
        root = await post_message(
            client, topic_message(user, topic, t), channel=channel, thread_ts=None
        )
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("not_in_channel", "channel_not_found", "is_archived"):
            logger.info("cannot post a research topic in %s: %s", channel, error)
            await respond(text=t.gettext(NOT_IN_CHANNEL), response_type="ephemeral")
            return
        raise
    key = ConversationKey(command.get("team_id", ""), channel, str(root["ts"]))
    await services.research.mention(key, user, topic)


def topic_message(user: str, topic: str, t: Translations) -> dict[str, Any]:
    """The topic, quoted whole: escaped first, then split into sections that each fit."""
    header = show(t, say(STARTED, user=f"<@{user}>"))
    quoted = "\n".join(f">{line}" for line in escape(topic).splitlines())
    chunks = split_text(f"{header}\n{quoted}", SECTION_LIMIT)
    return {
        "text": show(t, say(RESEARCH_LINE, topic=escaped(topic, TEXT_LIMIT - 100))),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in chunks],
    }
