"""Button clicks: Stop and Retry on research runs.

Stop acts only when the button pressed is on the conversation's own live progress message,
and only for the person who started the run or a workspace admin; anyone else is told, in a
message only they see, who can stop it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationKey
from bot.i18n import N_
from bot.services import Services
from handlers.admins import is_workspace_admin
from handlers.i18n import translations
from handlers.render import RETRY_ACTION, STOP_ACTION, key_from_value

logger = logging.getLogger(__name__)

WHO_CAN_STOP: Final = N_(
    "Only <@{starter}>, who started this research, or a workspace admin can stop it."
)
ADMIN_UNKNOWN: Final = N_(
    "Only <@{starter}>, who started this research, or a workspace admin can stop it, and I "
    "couldn't check with Slack just now whether you are an admin. Please try again in a moment."
)


def register(app: AsyncApp, services: Services) -> None:
    research = services.research

    @app.action(STOP_ACTION)
    async def on_stop(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        key = key_from_value(team_of(body), str(action.get("value", "")))
        if key is None:
            return
        presser = _field(body.get("user"), "id")
        conversation = await services.conversations.get(key)
        channel, message_ts = pressed_on(body)
        if (
            conversation is None
            or conversation.progress_ts is None
            or channel != key.channel_id
            or message_ts != conversation.progress_ts
        ):
            # A button copied onto another message, or an old progress message: not this
            # run's Stop.
            logger.info("ignored a Stop by %s: not the live progress message of %s", presser, key)
            return
        if presser != conversation.user_id:
            admin = await is_workspace_admin(client, presser)
            if admin is not True:
                logger.info("refused a Stop by %s in %s: not the starter or an admin", presser, key)
                sentence = WHO_CAN_STOP if admin is False else ADMIN_UNKNOWN
                t = translations(await services.languages.language(presser, key.team_id))
                text = t.gettext(sentence).format(starter=conversation.user_id)
                await tell_privately(client, key, presser, text)
                return
        await research.stop(key)

    @app.action(RETRY_ACTION)
    async def on_retry(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        key = key_from_value(team_of(body), str(action.get("value", "")))
        if key is not None:
            await research.retry(key)


async def tell_privately(
    client: AsyncWebClient, key: ConversationKey, user: str, sentence: str
) -> None:
    """A message in the thread that only `user` sees."""
    try:
        await client.chat_postEphemeral(
            channel=key.channel_id, user=user, thread_ts=key.thread_ts, text=sentence
        )
    except Exception:
        logger.warning("could not tell %s who can stop the run in %s", user, key, exc_info=True)


def _field(value: Any, name: str) -> str:
    return str(value.get(name) or "") if isinstance(value, Mapping) else ""


def team_of(body: Mapping[str, Any]) -> str:
    # Org-wide installs may leave `team` null; the person's own team is the workspace then.
    return _field(body.get("team"), "id") or _field(body.get("user"), "team_id")


def pressed_on(body: Mapping[str, Any]) -> tuple[str, str]:
    """(channel, message ts) of the message whose button was pressed."""
    container = body.get("container")
    channel = _field(container, "channel_id") or _field(body.get("channel"), "id")
    message_ts = _field(container, "message_ts") or _field(body.get("message"), "ts")
    return channel, message_ts
