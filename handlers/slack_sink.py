"""The ThreadSink the domain writes to, implemented with the Slack Web API."""

from __future__ import annotations

import logging
from typing import Any, Final

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationKey
from bot.progress import ProgressView
from bot.report import Report
from bot.sink import SinkFactory
from handlers import render

logger = logging.getLogger(__name__)

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
    def __init__(self, client: AsyncWebClient, key: ConversationKey) -> None:
        self._client = client
        self._key = key

    async def post_markdown(self, text: str) -> str:
        ts = ""
        for message in render.markdown_messages(text):
            response = await self._post(message)
            ts = ts or str(response.get("ts", ""))
        return ts

    async def post_notice(self, sentence: str, *, retry: bool = False) -> None:
        await self._post(render.notice_message(sentence, self._key, retry=retry))

    async def show_progress(self, view: ProgressView, message_ts: str | None) -> str:
        message = render.progress_message(view, self._key)
        if message_ts is None:
            response = await self._post(message)
            return str(response["ts"])
        await self._client.chat_update(channel=self._key.channel_id, ts=message_ts, **message)
        return message_ts

    async def set_status(self, status: str) -> None:
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._key.channel_id, thread_ts=self._key.thread_ts, status=status
            )
        except SlackApiError as exc:
            # The status line is decoration: a workspace without the feature still works.
            logger.info("thread status not set: %s", exc.response.get("error"))

    async def deliver_report(self, report: Report) -> None:
        await self._client.files_upload_v2(
            channel=self._key.channel_id,
            thread_ts=self._key.thread_ts,
            content=report.markdown(),
            filename=report.filename,
            title=report.title,
        )
        await self._post(render.report_summary(report))

    async def _post(self, message: render.Message) -> dict:
        return await post_message(
            self._client, message, channel=self._key.channel_id, thread_ts=self._key.thread_ts
        )


def slack_sinks(client: AsyncWebClient) -> SinkFactory:
    def make(key: ConversationKey) -> SlackThreadSink:
        return SlackThreadSink(client, key)

    return make
