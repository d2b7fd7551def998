"""Where answers go in Slack: a slash command's response URL, or a research thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.answers import Answer, AnswerSinkFactory
from bot.conversation import ConversationKey
from handlers import answer_render as render
from handlers.render import fallback_message
from handlers.slack_sink import post_message

logger = logging.getLogger(__name__)

# Slack takes five posts per response URL; the thinking status uses one of them.
MAX_RESPONSE_MESSAGES: Final = 4
# In a thread, an answer longer than this many messages is uploaded as a file instead.
MAX_THREAD_MESSAGES: Final = 3


class ResponseUrlSink:
    """Answers through the command's response URL, so channels the bot has not joined work."""

    def __init__(self, response_url: str, *, asker: str, private: bool) -> None:
        self._hook = AsyncWebhookClient(
            response_url,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=2),
                AsyncRateLimitErrorRetryHandler(max_retry_count=2),
                AsyncServerErrorRetryHandler(max_retry_count=2),
            ],
        )
        self._asker = asker
        self._response_type = "ephemeral" if private else "in_channel"
        self._question = ""
        self._status_shown = False

    async def thinking(self, question: str, model: str) -> None:
        self._question = question
        status = render.status_message(self._asker, question, model, quote=True)
        self._status_shown = await self._send(status, response_type=self._response_type)

    async def deliver(self, answer: Answer) -> None:
        messages = render.answer_messages(answer, quote=True, max_messages=MAX_RESPONSE_MESSAGES)
        for i, message in enumerate(messages):
            # The first part takes the place of the status, so the channel sees one answer.
            replace = i == 0 and self._status_shown
            await self._send(message, response_type=self._response_type, replace=replace)

    async def notice(self, sentence: str) -> None:
        if self._status_shown:
            message = render.notice_message(sentence, asker=self._asker, question=self._question)
            await self._send(message, response_type=self._response_type, replace=True)
        else:  # refusals and usage errors are for the asker only
            await self._send(render.notice_message(sentence), response_type="ephemeral")

    async def _send(
        self, message: dict[str, Any], *, response_type: str, replace: bool = False
    ) -> bool:
        """Post `message`; when Slack refuses it (its layout, its length), post its plain text
        instead, so the asker is never left with nothing. True once something was shown."""
        status = await self._post(message, response_type=response_type, replace=replace)
        fallback = fallback_message(message)
        if status == 400 and fallback != message:  # invalid_blocks, msg_too_long, …
            logger.warning("posting the plain text of a message Slack refused")
            status = await self._post(fallback, response_type=response_type, replace=replace)
        return status == 200

    async def _post(self, message: dict[str, Any], *, response_type: str, replace: bool) -> int:
        """The HTTP status of one post to the response URL (0 when it could not be sent)."""
        body = {**message, "response_type": response_type}
        if replace:
            body["replace_original"] = True
        try:
            response = await self._hook.send_dict(body)
        except Exception:
            logger.exception("posting to a response URL failed")
            return 0
        if response.status_code != 200:
            # The URL itself is a credential for this conversation: never log it.
            logger.error(
                "response URL refused a message: HTTP %s %s",
                response.status_code,
                (response.body or "")[:200],
            )
        return int(response.status_code)


class SlackThreadAnswerSink:
    """Follow-up answers in their research thread."""

    def __init__(self, client: AsyncWebClient, key: ConversationKey) -> None:
        self._client = client
        self._key = key

    async def thinking(self, question: str, model: str) -> None:
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._key.channel_id,
                thread_ts=self._key.thread_ts,
                status="is thinking…",
            )
        except SlackApiError as exc:
            logger.info("thread status not set: %s", exc.response.get("error"))

    async def deliver(self, answer: Answer) -> None:
        if len(render.answer_parts(answer.text)) > MAX_THREAD_MESSAGES:
            try:
                await self._client.files_upload_v2(
                    channel=self._key.channel_id,
                    thread_ts=self._key.thread_ts,
                    content=answer.text,
                    filename="answer.md",
                    title=f"Answer: {render.clip(answer.question, 200)}",
                )
            except SlackApiError as exc:
                logger.warning(
                    "answer upload failed (%s); posting it in parts", exc.response.get("error")
                )
            else:
                await self._post(render.file_message(answer))
                return
        for message in render.answer_messages(
            answer, quote=False, max_messages=MAX_THREAD_MESSAGES
        ):
            await self._post(message)

    async def notice(self, sentence: str) -> None:
        await self._post(render.notice_message(sentence))

    async def _post(self, message: dict[str, Any]) -> None:
        await post_message(
            self._client, message, channel=self._key.channel_id, thread_ts=self._key.thread_ts
        )


def thread_answer_sinks(client_for: Callable[[str], AsyncWebClient]) -> AnswerSinkFactory:
    """Sinks posting with the client of the thread's workspace (`client_for(team_id)`)."""

    def make(key: ConversationKey) -> SlackThreadAnswerSink:
        return SlackThreadAnswerSink(client_for(key.team_id), key)

    return make
