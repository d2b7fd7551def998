"""The ThreadSink the domain writes to, implemented with the Slack Web API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationKey
from bot.i18n import Text
from bot.ports import Languages
from bot.progress import ProgressView, Stage
from bot.report import Delivery, Report
from bot.sink import FILE, MESSAGE, SUMMARY, CanvasKeeper, DeliveryFailed, SinkFactory
from handlers import render
from handlers.i18n import Translations, show, translations

logger = logging.getLogger(__name__)

# canvases.create takes Markdown up to 1 MiB.
MAX_CANVAS_BYTES: Final = 1024 * 1024
MAX_CANVAS_TITLE: Final = 150
# Agent session statuses (agents.sessions.setStatus).
PROCESSING: Final = "processing"
ACTIVE: Final = "active"
# Message metadata naming the bot's deliveries (questions, report summaries) in a thread.
DELIVERY_EVENT: Final = "qdr_delivery"
MAX_REPLY_PAGES: Final = 20
# Errors a second try will not cure: the bot's admin must grant a scope or invite the bot.
LASTING_ERRORS: Final = frozenset(
    {
        "missing_scope",
        "not_in_channel",
        "channel_not_found",
        "is_archived",
        "restricted_action",
        "not_allowed_token_type",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
    }
)

# Slack's answers to a message whose layout or length it will not take. The same message as
# plain text (without its blocks) still reaches the reader.
REFUSED_LAYOUT: Final = frozenset(
    {"invalid_blocks", "invalid_blocks_format", "msg_too_long", "msg_blocks_too_long"}
)


async def post_message(
    client: AsyncWebClient, message: render.Message, *, channel: str, thread_ts: str | None
) -> dict[str, Any]:
    """chat.postMessage; when Slack refuses the message's layout, its plain text instead, so
    the reader is never left with nothing. Other failures raise as before."""
    where: dict[str, Any] = {"channel": channel}
    if thread_ts:
        where["thread_ts"] = thread_ts
    try:
        response = await client.chat_postMessage(**where, **message)
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error not in REFUSED_LAYOUT:
            raise
        logger.warning("Slack refused a message in %s (%s); posting its plain text", channel, error)
        response = await client.chat_postMessage(**where, **render.fallback_message(message))
    return dict(response.data) if isinstance(response.data, dict) else {}


class SlackThreadSink:
    def __init__(
        self, client: AsyncWebClient, key: ConversationKey, languages: Languages | None = None
    ) -> None:
        self._client = client
        self._key = key
        self._languages = languages
        self._t: Translations | None = None
        self._session_open = False

    async def _translations(self) -> Translations:
        """The thread's language: its conversation starter's (looked up once per sink)."""
        if self._t is None:
            language = await self._languages.of_thread(self._key) if self._languages else "en"
            self._t = translations(language)
        return self._t

    async def post_markdown(self, text: str, *, marker: str = "") -> str:
        ts = ""
        messages = render.markdown_messages(text)
        for i, message in enumerate(messages):
            if marker and i == len(messages) - 1:  # the last part arrived: all did
                message = {**message, "metadata": _metadata(marker)}
            response = await self._post(message)
            ts = ts or str(response.get("ts", ""))
        return ts

    async def post_notice(self, sentence: Text, *, retry: bool = False) -> None:
        t = await self._translations()
        await self._post(render.notice_message(show(t, sentence), self._key, retry=retry, t=t))

    async def show_progress(self, view: ProgressView, message_ts: str | None) -> str:
        message = render.progress_message(view, self._key, t=await self._translations())
        if message_ts is None:
            response = await self._post(message)
            return str(response["ts"])
        await self._client.chat_update(channel=self._key.channel_id, ts=message_ts, **message)
        return message_ts

    async def set_status(self, stage: Stage) -> None:
        if stage in render.RUNNING_STAGES and not self._session_open:
            self._session_open = True  # one try per run: a refusal is not retried each tick
            await set_session(self._client, self._key, PROCESSING)
        elif stage not in render.RUNNING_STAGES and stage is not Stage.CLARIFYING:
            await set_session(self._client, self._key, ACTIVE)
        status, loading = render.thread_status(stage, await self._translations())
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._key.channel_id,
                thread_ts=self._key.thread_ts,
                status=status,
                loading_messages=loading or None,
            )
        except SlackApiError as exc:
            # The status line is decoration: a workspace without the feature still works.
            logger.info("thread status not set: %s", exc.response.get("error"))

    async def deliver_report(
        self,
        report: Report,
        *,
        skip: frozenset[str] = frozenset(),
        delivery: Delivery = Delivery.CANVAS_AND_FILE,
        canvas: str = "",
        keep_canvas: CanvasKeeper | None = None,
    ) -> None:
        if SUMMARY in skip:
            return  # the summary goes last: everything before it is in the thread
        link: str | None = None
        if canvas:  # made by an earlier try: linked, never made twice
            link = await self._canvas_link(canvas)
        elif delivery.wants_canvas:
            link = await self._canvas(report, keep_canvas)
        if FILE not in skip and (delivery.wants_file or link is None):
            try:
                await self._client.files_upload_v2(
                    channel=self._key.channel_id,
                    thread_ts=self._key.thread_ts,
                    content=report.markdown(),
                    filename=report.filename,
                    title=report.title,
                )
            except (SlackApiError, SlackClientError, OSError) as exc:
                raise _failed(FILE, exc) from exc
        if SUMMARY not in skip:
            t = await self._translations()
            summary = render.report_summary(report, canvas_url=link, t=t)
            if report.marker:
                summary = {**summary, "metadata": _metadata(report.marker)}
            try:
                await self._post(summary)
            except (SlackApiError, SlackClientError, OSError) as exc:
                raise _failed(SUMMARY, exc) from exc

    async def _canvas(self, report: Report, keep: CanvasKeeper | None) -> str | None:
        """The report as a canvas for the thread's channel; its link, or None when Slack
        will not make one (a free plan's limit, a missing scope, any error): the file then
        stands in for it. A canvas made is recorded (`keep`) before anything links it, so a
        crash after this makes no second one; recording it failing fails the delivery."""
        markdown = report.markdown()
        if len(markdown.encode()) > MAX_CANVAS_BYTES:
            logger.info("report in %s too large for a canvas; file only", self._key)
            return None
        try:
            created = await self._client.canvases_create(
                title=render.clip(report.title, MAX_CANVAS_TITLE),
                document_content={"type": "markdown", "markdown": markdown},
                channel_id=self._key.channel_id,
            )
        except SlackApiError as exc:
            logger.info("no canvas for the report in %s: %s", self._key, exc.response.get("error"))
            return None
        except (SlackClientError, OSError):
            logger.warning("no canvas for the report in %s", self._key, exc_info=True)
            return None
        canvas_id = str(created.get("canvas_id") or "")
        if not canvas_id:
            return None
        if keep is not None:
            await keep(canvas_id)
        return await self._canvas_link(canvas_id)

    async def _canvas_link(self, canvas_id: str) -> str | None:
        """A canvas is a file: its permalink is what people open. None when Slack does not
        say (the file then stands in for the canvas)."""
        try:
            info = await self._client.files_info(file=canvas_id)
        except SlackApiError as exc:
            logger.info("no link to the canvas in %s: %s", self._key, exc.response.get("error"))
            return None
        except (SlackClientError, OSError):
            logger.warning("no link to the canvas in %s", self._key, exc_info=True)
            return None
        permalink = (info.get("file") or {}).get("permalink")
        return str(permalink) if permalink else None

    async def delivered(self, marker: str) -> frozenset[str]:
        found: set[str] = set()
        cursor: str | None = None
        for _ in range(MAX_REPLY_PAGES):
            response = await self._client.conversations_replies(
                channel=self._key.channel_id,
                ts=self._key.thread_ts,
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            for message in response.get("messages") or []:
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("marker") == marker:
                    found.add(MESSAGE)
                    found.add(SUMMARY)
                for f in message.get("files") or []:
                    if f"-{marker[:6]}." in str(f.get("name", "")):
                        found.add(FILE)
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return frozenset(found)

    async def _post(self, message: render.Message) -> dict:
        return await post_message(
            self._client, message, channel=self._key.channel_id, thread_ts=self._key.thread_ts
        )


async def set_session(client: AsyncWebClient, key: ConversationKey, status: str) -> None:
    """The thread's agent session: PROCESSING while research runs (Slack shows its own Stop
    button and sends agent_session_stopped), ACTIVE once it ended however it ended. Best
    effort: where the platform offers no sessions (an app not declared an agent, an older
    workspace) the run goes on with the progress message's own Stop button."""
    try:
        await client.agents_sessions_setStatus(
            channel_id=key.channel_id, thread_ts=key.thread_ts, status=status
        )
    except SlackApiError as exc:
        logger.info("agent session not set to %s: %s", status, exc.response.get("error"))
    except SlackClientError:
        logger.info("agent session not set to %s", status, exc_info=True)


def _metadata(marker: str) -> dict[str, Any]:
    return {"event_type": DELIVERY_EVENT, "event_payload": {"marker": marker}}


def _failed(part: str, exc: Exception) -> DeliveryFailed:
    error = exc.response.get("error") if isinstance(exc, SlackApiError) else None
    logger.warning("Slack did not take the report's %s (%s)", part, error or type(exc).__name__)
    return DeliveryFailed(part, lasting=error in LASTING_ERRORS)


def slack_sinks(
    client_for: Callable[[str], AsyncWebClient], languages: Languages | None = None
) -> SinkFactory:
    """Sinks posting with the client of the thread's workspace (`client_for(team_id)`)."""

    def make(key: ConversationKey) -> SlackThreadSink:
        return SlackThreadSink(client_for(key.team_id), key, languages)

    return make
