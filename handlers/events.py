"""Event listeners: mentions and thread replies, filtered and de-duplicated before any work."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationKey
from bot.front import Loop
from bot.i18n import N_, Text
from bot.images import Image, accept_images
from bot.logs import log_context
from bot.ports import Inbox, Languages, OrphanEvent
from bot.research import Deferred, ResearchService
from bot.research_options import OptionError, parse_research_options
from bot.services import Services
from handlers import assistant
from handlers.slack_sink import SlackThreadSink

logger = logging.getLogger(__name__)

# Message subtypes that carry a person's words; everything else (edits, deletions, joins,
# bot posts, the bot's own chat.update echoes) is dropped on purpose.
HUMAN_SUBTYPES: Final = frozenset({None, "file_share", "thread_broadcast"})
# Events that cause work: recorded in the inbox before they are acknowledged (an uninstall
# too: its tokens and keys must go even if the process dies right after the ack).
WORK_EVENTS: Final = frozenset({"app_mention", "message", "app_uninstalled", "tokens_revoked"})
SOMETHING_WRONG: Final = N_(
    "Something went wrong on my side while handling that message. Please try again in a "
    "moment; if it keeps happening, tell the bot's admin."
)


def register(app: AsyncApp, services: Services) -> None:
    research = services.research

    @app.event("app_mention")
    async def on_mention(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        key = _thread_key(body, event)
        await _handled(body, _deliver(research.mention, key, body, context, client))

    @app.event("message")
    async def on_message(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        await _handled(body, _on_message(event, body, context, client))

    async def _on_message(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        if event.get("user") == context.bot_user_id:
            return
        key = _thread_key(body, event)
        in_thread = event.get("thread_ts") not in (None, event.get("ts"))
        if in_thread and await services.conversations.get(key) is not None:
            await _deliver(research.reply, key, body, context, client)
        elif event.get("channel_type") == "im":
            # In the app's DM every message is meant for the bot, no mention needed: a
            # top-level one, or the first in a thread of the assistant view (which is how
            # the view delivers messages).
            start = assistant.entry(services, client, titled=in_thread)
            await _deliver(start, key, body, context, client)
        elif event.get("channel_type") == "mpim" and not in_thread:
            # A group DM the bot is in works like its DM: a top-level message starts a
            # research conversation (or usage, help, `ask:`), no mention needed. One that
            # mentions the bot also arrives as app_mention; the message claim lets one of
            # the two through. Replies in its thread need no mention, as everywhere; other
            # threads there are people talking to each other.
            await _deliver(
                assistant.entry(services, client, titled=False), key, body, context, client
            )

    async def _handled(body: Mapping[str, Any], work: Awaitable[None]) -> None:
        """Run the listener's work, then mark its event done. If the work is cut (the process
        stopping), the event stays in the inbox for the process that takes over."""
        try:
            await work
        except Deferred:
            logger.info("event %s left for the process that takes over", body.get("event_id"))
            return
        event_id = body.get("event_id")
        if event_id:
            await services.inbox.done(_team(body, body.get("event") or {}), str(event_id))

    async def _deliver(
        entry: Callable[..., Awaitable[None]],
        key: ConversationKey,
        body: Mapping[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        event: Mapping[str, Any] = body.get("event") or {}
        # A thread reply that mentions the bot arrives as app_mention and as message; the
        # event that claimed the message may claim it again (handled again after a crash).
        claim = _message_claim(key, event)
        if not await services.claims.claim(claim, holder=str(body.get("event_id") or "")):
            return
        services.languages.note_starter(key, str(event.get("user") or ""))
        raw = event.get("text")
        text = request_text(raw if isinstance(raw, str) else "", context.bot_user_id)
        async with _guarded(client, key, services.languages):
            images, refusals = await _images(event, context.bot_token)
            await entry(
                key,
                event.get("user", ""),
                text,
                ts=str(event.get("ts") or ""),
                images=images,
                refusals=refusals,
            )

    async def _images(
        event: Mapping[str, Any], token: str | None
    ) -> tuple[list[Image], list[Text]]:
        files = event.get("files") or []
        if not isinstance(files, list) or not files:
            return [], []
        # The workspace's own token (multi-workspace mode): Slack serves its files only to it.
        attachments, unread = await services.files.attachments(files, token=token)
        images, refused = accept_images(attachments)
        return images, [*unread, *refused]


@contextlib.asynccontextmanager
async def _guarded(
    client: AsyncWebClient, key: ConversationKey, languages: Languages
) -> AsyncIterator[None]:
    """A failure the domain did not handle still gets a sentence in the thread. Log lines
    written meanwhile name the conversation."""
    with log_context(team=key.team_id, conversation=key.label):
        try:
            yield
        except Deferred:
            raise
        except Exception:
            logger.exception("handling a message in %s failed", key)
            with contextlib.suppress(Exception):
                await SlackThreadSink(client, key, languages).post_notice(SOMETHING_WRONG)


@dataclass(frozen=True, slots=True)
class WorkEvent:
    team_id: str
    event_id: str


IGNORED: Final = "ignored"


def work_event(body: Mapping[str, Any]) -> WorkEvent | str | None:
    """What an acknowledgement must do first with this request: a WorkEvent for an event
    that causes work (recorded in the inbox before the ack, so a process killed after the ack
    loses nothing), IGNORED for a message that is not a person's words (acknowledged and
    dropped), None for anything else (Bolt answers it)."""
    if body.get("type") != "event_callback":
        return None
    event = body.get("event") or {}
    if event.get("type") == "message" and not _from_a_person(event):
        return IGNORED
    event_id = body.get("event_id")
    if not event_id or event.get("type") not in WORK_EVENTS:
        return None
    return WorkEvent(_team(body, event), str(event_id))


def recorded_handler(
    app: AsyncApp, services: Services
) -> Callable[[dict[str, Any]], Coroutine[Any, Any, None]]:
    """Hands an event recorded in the inbox to this process's listeners, as Slack would have
    (its signature was checked when it was received): one the front has just acknowledged,
    or one a process that died left behind."""

    async def handle(body: dict[str, Any]) -> None:
        await services.inbox.commit()
        if not services.research.accepting:
            return  # shutting down: recorded, and left for the process that takes over
        request = AsyncBoltRequest(body=body, mode="socket_mode")
        await app.async_dispatch(request)
        if request.context.authorize_result is None:
            # No installation for its workspace (uninstalled meanwhile): nobody handles it.
            logger.info("event %s from a workspace without an installation", body.get("event_id"))
            event = body.get("event") or {}
            await services.inbox.done(_team(body, event), str(body.get("event_id")))

    return handle


class EventIntake:
    """Events that cause work, on the front: recorded in the inbox, acknowledged, and handed
    to the main loop's listeners. Redeliveries are known by what was recorded."""

    def __init__(
        self,
        inbox: Inbox,
        process_id: str,
        main: Loop,
        handle: Callable[[dict[str, Any]], Coroutine[Any, Any, None]],
    ) -> None:
        self._inbox = inbox
        self._process_id = process_id
        self._main = main
        self._handle = handle
        self._recent = RecentIds()  # recorded by this process: spares the database

    async def take(self, body: Mapping[str, Any], retry: object = None) -> bool:
        """True when the event is acknowledged here (recorded now, recorded before, or not
        work); False when Bolt must answer the request (on the main loop)."""
        target = work_event(body)
        if not isinstance(target, WorkEvent):
            return target == IGNORED
        team, event_id = target.team_id, target.event_id
        seen = f"{team}:{event_id}"
        if self._recent.seen(seen):
            logger.info("ignoring event %s seen before", event_id)
            return True
        accepted = await self._inbox.accept(
            team, event_id, json.dumps(body, ensure_ascii=False), self._process_id
        )
        self._recent.add(seen)
        if not accepted:
            logger.info("ignoring event %s recorded before (retry %s)", event_id, retry)
            return True
        self._main.spawn(self._handle(dict(body)), f"handling event {event_id}")
        return True


class RecentIds:
    """The last `size` ids recorded by this process, in memory."""

    def __init__(self, size: int = 10_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def seen(self, value: str) -> bool:
        return value in self._seen

    def add(self, value: str) -> None:
        self._seen[value] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)


def replayer(app: AsyncApp, services: Services) -> Callable[[OrphanEvent], Awaitable[None]]:
    """An event accepted by a process that died, handled here."""
    handle = recorded_handler(app, services)

    async def replay(orphan: OrphanEvent) -> None:
        await handle(json.loads(orphan.body))

    return replay


def abandoner(research: ResearchService) -> Callable[[OrphanEvent], Awaitable[None]]:
    """Tells the thread of a mention or message that was cut too many times to try again."""

    async def give_up(orphan: OrphanEvent) -> None:
        body = json.loads(orphan.body)
        event = body.get("event") or {}
        if event.get("type") in ("app_mention", "message") and event.get("channel"):
            try:
                await research.give_up(_thread_key(body, event))
            except Exception:
                logger.exception("could not tell a thread its message was given up")

    return give_up


def strip_mentions(text: str, bot_user_id: str | None) -> str:
    """The text without the bot's own `<@U…>` markup (other people's mentions stay)."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


_ENTITIES: Final = re.compile(r"&(amp|lt|gt);")
_UNESCAPED: Final = {"amp": "&", "lt": "<", "gt": ">"}


def unescape(text: str) -> str:
    """Slack's text as typed: Slack sends `&`, `<` and `>` as `&amp;`, `&lt;` and `&gt;`
    (and nothing else escaped). Undone once, in one pass, so `&amp;lt;` (someone typing
    `&lt;`) stays `&lt;`."""
    return _ENTITIES.sub(lambda m: _UNESCAPED[m.group(1)], text)


# Slack markup that names people or places but asks nothing: user, group and broadcast
# mentions, channel links.
_ADDRESSING: Final = re.compile(
    r"<(?:@[UW][A-Z0-9]+|!subteam\^[A-Z0-9]+|!here|!channel|!everyone|#C[A-Z0-9]+)(?:\|[^>]*)?>"
)
# Letters that render as nothing (Hangul fillers).
_BLANK_LETTERS: Final = frozenset("\u115f\u1160\u3164\uffa0")


def has_substance(text: str, *, options: bool = True) -> bool:
    """Whether Slack message text asks something: a letter or a digit left once mentions,
    options (unless `options` is False: text whose options were chosen elsewhere),
    whitespace, zero-width and other invisible characters, punctuation and emoji are set
    aside. "<@U123>" alone, or only zero-width spaces, is nothing to research."""
    if options:
        with contextlib.suppress(OptionError):  # the domain answers with the option's sentence
            _, text = parse_research_options(text)
    text = unescape(_ADDRESSING.sub(" ", text))  # `&amp;` alone is not the word "amp"
    return any(unicodedata.category(c)[0] in "LN" and c not in _BLANK_LETTERS for c in text)


def request_text(raw: str, bot_user_id: str | None) -> str:
    """What the person asked, for the domain: the bot's mention removed, Slack's escaping
    undone once; empty when nothing is left to research (the domain then answers with how to
    use the bot, or nothing, and calls no model)."""
    text = strip_mentions(raw, bot_user_id)
    if not has_substance(text):
        return ""
    return unescape(text)


def _from_a_person(event: Mapping[str, Any]) -> bool:
    return (
        event.get("subtype") in HUMAN_SUBTYPES
        and not event.get("bot_id")
        and bool(event.get("user"))
    )


def _team(body: Mapping[str, Any], event: Mapping[str, Any]) -> str:
    return str(body.get("team_id") or event.get("team") or "")


def _thread_key(body: Mapping[str, Any], event: Mapping[str, Any]) -> ConversationKey:
    return ConversationKey(
        team_id=_team(body, event),
        channel_id=str(event.get("channel", "")),
        thread_ts=str(event.get("thread_ts") or event.get("ts", "")),
    )


def _message_claim(key: ConversationKey, event: Mapping[str, Any]) -> str:
    # app_mention and message deliveries of one message share its ts, not their event ids.
    return f"message:{key.team_id}:{key.channel_id}:{event.get('ts')}"
