"""Event listeners: mentions and thread replies, filtered and de-duplicated before any work."""

from __future__ import annotations

import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationKey
from bot.images import Image, accept_images
from bot.services import Services
from handlers.slack_sink import SlackThreadSink

logger = logging.getLogger(__name__)

# Message subtypes that carry a person's words; everything else (edits, deletions, joins,
# bot posts, the bot's own chat.update echoes) is dropped on purpose.
HUMAN_SUBTYPES: Final = frozenset({None, "file_share", "thread_broadcast"})
SOMETHING_WRONG: Final = (
    "Something went wrong on my side while handling that message. Please try again in a "
    "moment; if it keeps happening, tell the bot's admin."
)


def register(app: AsyncApp, services: Services) -> None:
    research = services.research
    recent_events = RecentIds()

    @app.middleware
    async def drop_redeliveries_and_noise(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        body = req.body
        if body.get("type") != "event_callback":
            await next()
            return None
        event = body.get("event") or {}
        if event.get("type") == "message" and not _from_a_person(event):
            return BoltResponse(status=200, body="")
        if _retry_num(req) > 0:
            logger.info("ignoring redelivery %s of event %s", _retry_num(req), body.get("event_id"))
            return BoltResponse(status=200, body="")
        # Nothing here may wait on storage: this runs before Slack's 3-second ack. Messages are
        # claimed in the database after the ack; this only spares redelivered ids that work.
        event_id = body.get("event_id")
        if event_id and not recent_events.first_time(event_id):
            logger.info("ignoring event %s seen before", event_id)
            return BoltResponse(status=200, body="")
        await next()
        return None

    @app.event("app_mention")
    async def on_mention(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        await _deliver(research.mention, _thread_key(body, event), event, context, client)

    @app.event("message")
    async def on_message(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        if event.get("user") == context.bot_user_id:
            return
        key = _thread_key(body, event)
        if event.get("thread_ts") not in (None, event.get("ts")):
            if (
                await services.conversations.get(key) is not None
            ):  # else a thread the bot is not part of
                await _deliver(research.reply, key, event, context, client)
        elif event.get("channel_type") == "im":
            # In a DM every top-level message is meant for the bot: no mention needed.
            await _deliver(research.mention, key, event, context, client)

    async def _deliver(
        entry: Callable[..., Awaitable[None]],
        key: ConversationKey,
        event: Mapping[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        # A thread reply that mentions the bot arrives as app_mention and as message.
        if not await services.claims.claim(_message_claim(key, event)):
            return
        text = strip_mentions(event.get("text", ""), context.bot_user_id)
        async with _guarded(client, key):
            images, refusals = await _images(event)
            await entry(key, event.get("user", ""), text, images=images, refusals=refusals)

    async def _images(event: Mapping[str, Any]) -> tuple[list[Image], list[str]]:
        files = event.get("files") or []
        if not isinstance(files, list) or not files:
            return [], []
        attachments, unread = await services.files.attachments(files)
        images, refused = accept_images(attachments)
        return images, [*unread, *refused]


@contextlib.asynccontextmanager
async def _guarded(client: AsyncWebClient, key: ConversationKey) -> AsyncIterator[None]:
    """A failure the domain did not handle still gets a sentence in the thread."""
    try:
        yield
    except Exception:
        logger.exception("handling a message in %s failed", key)
        with contextlib.suppress(Exception):
            await SlackThreadSink(client, key).post_notice(SOMETHING_WRONG)


class RecentIds:
    """The last `size` ids seen, in memory."""

    def __init__(self, size: int = 10_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def first_time(self, value: str) -> bool:
        if value in self._seen:
            return False
        self._seen[value] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


def strip_mentions(text: str, bot_user_id: str | None) -> str:
    """The text without the bot's own `<@U…>` markup (other people's mentions stay)."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _from_a_person(event: Mapping[str, Any]) -> bool:
    return (
        event.get("subtype") in HUMAN_SUBTYPES
        and not event.get("bot_id")
        and bool(event.get("user"))
    )


def _retry_num(req: AsyncBoltRequest) -> int:
    # Socket Mode deliveries carry the header too, as "0" the first time: compare the number.
    values = req.headers.get("x-slack-retry-num") or []
    try:
        return int(values[0]) if values else 0
    except ValueError:
        return 0


def _thread_key(body: Mapping[str, Any], event: Mapping[str, Any]) -> ConversationKey:
    team = body.get("team_id") or event.get("team") or ""
    return ConversationKey(
        team_id=str(team),
        channel_id=str(event.get("channel", "")),
        thread_ts=str(event.get("thread_ts") or event.get("ts", "")),
    )


def _message_claim(key: ConversationKey, event: Mapping[str, Any]) -> str:
    # app_mention and message deliveries of one message share its ts, not their event ids.
    return f"message:{key.team_id}:{key.channel_id}:{event.get('ts')}"
