"""The app's AI surface: the assistant view's threads (suggested prompts, a title, the first
message routed), and Slack's own Stop button on agent sessions.

Bolt's AsyncAssistant middleware is not used on purpose: it hands the view's messages to
listeners of its own, past the inbox that records every event before its ack and the
per-message claims that keep a redelivered event from starting research twice. The view's
messages are `message` events in the app's DM with a `thread_ts`; events.py delivers them here
(`entry`) exactly as it delivers mentions."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.answers import AskRequest
from bot.conversation import ConversationKey
from bot.flags import FlagError, parse_ask
from bot.i18n import N_
from bot.images import Image
from bot.services import Services
from handlers.actions import WHO_CAN_STOP, tell_privately
from handlers.admins import is_workspace_admin
from handlers.answer_sinks import SlackThreadAnswerSink
from handlers.help import HELP, help_blocks
from handlers.i18n import Translations, translations
from handlers.render import clip, one_line
from handlers.slack_sink import ACTIVE, post_message, set_session
from handlers.usage_render import usage_message

logger = logging.getLogger(__name__)

# What a message in the view may start with to get a quick answer instead of research.
QUICK_PREFIX: Final = "ask:"
USAGE_WORD: Final = "usage"
HELP_WORD: Final = "help"
PROMPTS_TITLE: Final = N_("Research something, or ask a quick question:")
# Up to four; a prompt's `message` is sent as the user's message when it is picked.
SUGGESTED_PROMPTS: Final = (
    {
        "title": N_("Research a topic"),
        "message": N_("Research the state of solid-state batteries in electric cars"),
    },
    {
        "title": N_("Quick answer"),
        "message": N_("ask: What is the difference between RAG and fine-tuning?"),
    },
    # The words the bot recognises stay as they are in every language.
    {"title": N_("My workspace's usage"), "message": USAGE_WORD},
    {"title": N_("How to use this"), "message": HELP_WORD},
)
TITLE_CHARS: Final = 60
USAGE_FAILED: Final = N_(
    "I couldn't read the usage figures just now. Please try again in a minute."
)

Entry = Callable[..., Awaitable[None]]


def register(app: AsyncApp, services: Services) -> None:
    @app.event("assistant_thread_started")
    async def on_thread_started(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        thread = event.get("assistant_thread") or {}
        channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
        if not channel or not thread_ts:
            return
        team = str(context.team_id or body.get("team_id") or "")
        user = str(thread.get("user_id") or "")
        t = translations(await services.languages.language(user, team))
        try:
            await client.assistant_threads_setSuggestedPrompts(
                channel_id=channel,
                thread_ts=thread_ts,
                title=t.gettext(PROMPTS_TITLE),
                prompts=suggested_prompts(t),
            )
        except SlackApiError as exc:
            logger.info("suggested prompts not set: %s", exc.response.get("error"))

    @app.event("assistant_thread_context_changed")
    async def on_context_changed() -> None:
        """The channel the user looks at beside the view changed: nothing depends on it."""

    @app.event("agent_session_stopped")
    async def on_session_stopped(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        """Slack's own Stop on a research run's agent session: the same rules as the
        progress message's Stop button. Slack does not move the session out of `processing`
        itself: the run's end does, or this handler when nothing was running."""
        team = str(context.team_id or body.get("team_id") or "")
        key = ConversationKey(team, str(event.get("channel", "")), str(event.get("thread_ts", "")))
        presser = str(event.get("user") or "")
        conversation = await services.conversations.get(key)
        if conversation is not None and presser != conversation.user_id:
            admin = await is_workspace_admin(client, presser)
            if admin is not True:
                logger.info("refused a session stop by %s in %s", presser, key)
                t = translations(await services.languages.language(presser, team))
                sentence = t.gettext(WHO_CAN_STOP).format(starter=conversation.user_id)
                await tell_privately(client, key, presser, sentence)
                return
        if not await services.research.stop(key):
            await set_session(client, key, ACTIVE)


def suggested_prompts(t: Translations) -> list[dict[str, str]]:
    return [{k: t.gettext(v) for k, v in p.items()} for p in SUGGESTED_PROMPTS]


def entry(services: Services, client: AsyncWebClient, *, titled: bool) -> Entry:
    """What a message in the app's DM starts: usage, help, a quick answer (`ask: …`), or a
    research conversation as a mention does. `titled`: the message is in an assistant thread,
    whose title becomes the topic."""

    async def start(
        key: ConversationKey,
        user_id: str,
        text: str,
        *,
        ts: str = "",
        images: Sequence[Image] = (),
        refusals: Sequence[str] = (),
    ) -> None:
        word = text.strip().lower()
        if word == USAGE_WORD and not images:
            await _post_usage(services, client, key, user_id)
        elif word == HELP_WORD and not images:
            t = translations(await services.languages.language(user_id, key.team_id))
            await _post(client, key, {"text": t.gettext(HELP), "blocks": help_blocks(t)})
        elif word.startswith(QUICK_PREFIX) and not images:
            await _quick_answer(services, client, key, user_id, text.strip()[len(QUICK_PREFIX) :])
        else:
            if titled and text.strip():
                await _set_title(client, key, text)
            await services.research.mention(
                key, user_id, text, ts=ts, images=images, refusals=refusals
            )

    return start


async def _quick_answer(
    services: Services, client: AsyncWebClient, key: ConversationKey, user: str, question: str
) -> None:
    sink = SlackThreadAnswerSink(client, key, services.languages)
    try:
        options = parse_ask(question)
    except FlagError as exc:
        await sink.notice(exc.usage)
        return
    request = AskRequest(
        team_id=key.team_id, user_id=user, channel_id=key.channel_id, options=options
    )
    await services.answers.ask(request, sink)


async def _post_usage(
    services: Services, client: AsyncWebClient, key: ConversationKey, user: str
) -> None:
    t = translations(await services.languages.language(user, key.team_id))
    try:
        usage = await services.usage.workspace(key.team_id)
    except Exception:
        logger.exception("usage figures for %s failed", key.team_id)
        await _post(client, key, {"text": t.gettext(USAGE_FAILED)})
        return
    await _post(client, key, usage_message(usage, t))


async def _post(client: AsyncWebClient, key: ConversationKey, message: dict[str, Any]) -> None:
    await post_message(client, message, channel=key.channel_id, thread_ts=key.thread_ts)


async def _set_title(client: AsyncWebClient, key: ConversationKey, topic: str) -> None:
    """The view lists its threads by title: the topic, on one line and short."""
    try:
        await client.assistant_threads_setTitle(
            channel_id=key.channel_id,
            thread_ts=key.thread_ts,
            title=clip(one_line(topic), TITLE_CHARS),
        )
    except SlackApiError as exc:
        logger.info("thread title not set: %s", exc.response.get("error"))
