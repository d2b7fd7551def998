"""Where answers go in Slack: a slash command's response URL, or a research thread."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.answers import Answer, AnswerSinkFactory
from bot.conversation import ConversationKey
from bot.i18n import N_, Text, say
from bot.ports import Languages
from handlers import answer_render as render
from handlers.i18n import Translations, show, translations
from handlers.render import fallback_message
from handlers.slack_sink import post_message

logger = logging.getLogger(__name__)

# Slack takes five posts per response URL; the thinking status uses one of them.
MAX_RESPONSE_MESSAGES: Final = 4
# In a thread, an answer longer than this many messages is uploaded as a file instead.
MAX_THREAD_MESSAGES: Final = 3
# Streamed answers: sent to Slack in pieces of about this size or this often (appendStream is
# Tier 4), and a message is ended before Slack's cap (msg_too_long near 10.6-11.3 KB).
STREAM_FLUSH_CHARS: Final = 200
STREAM_FLUSH_SECONDS: Final = 1.0
STREAM_MESSAGE_BYTES: Final = 9_000
ANSWER_DETAILS: Final = N_("Answer details")
ANSWER_FILE_TITLE: Final = N_("Answer: {question}")
THINKING_STATUS: Final = N_("is thinking…")
THINKING_LOADING: Final = (N_("Thinking…"), N_("Writing the answer…"))
# Slack's answers when a stream can take no more: go on in a new message.
STREAM_ENDED: Final = frozenset({"msg_too_long", "message_not_in_streaming_state"})


class ResponseUrlSink:
    """Answers through the command's response URL, so channels the bot has not joined work."""

    def __init__(
        self,
        response_url: str,
        *,
        asker: str,
        private: bool,
        languages: Languages | None = None,
        team: str = "",
    ) -> None:
        self._languages = languages
        self._team = team
        self._t: Translations | None = None
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

    async def _translations(self) -> Translations:
        if self._t is None:
            language = "en"
            if self._languages is not None:
                language = await self._languages.language(self._asker, self._team)
            self._t = translations(language)
        return self._t

    async def thinking(self, question: str, model: str, asker: str = "") -> None:
        self._question = question
        t = await self._translations()
        status = render.status_message(self._asker, question, model, quote=True, t=t)
        self._status_shown = await self._send(status, response_type=self._response_type)

    async def partial(self, text: str) -> None:
        """A response URL takes whole messages only (five per command)."""

    async def deliver(self, answer: Answer) -> None:
        messages = render.answer_messages(
            answer,
            quote=True,
            max_messages=MAX_RESPONSE_MESSAGES,
            share=self._response_type == "ephemeral",
            t=await self._translations(),
        )
        for i, message in enumerate(messages):
            # The first part takes the place of the status, so the channel sees one answer.
            replace = i == 0 and self._status_shown
            await self._send(message, response_type=self._response_type, replace=replace)

    async def notice(self, sentence: Text) -> None:
        t = await self._translations()
        if self._status_shown:
            message = render.notice_message(
                sentence, asker=self._asker, question=self._question, t=t
            )
            await self._send(message, response_type=self._response_type, replace=True)
        else:  # refusals and usage errors are for the asker only
            await self._send(render.notice_message(sentence, t=t), response_type="ephemeral")

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
    """Answers in a thread (follow-ups, `/ask` where the bot can post, the assistant view),
    streamed as the model writes them with Slack's chat streaming.

    Streaming is best effort and never loses text: a stream Slack ends (`msg_too_long`, or
    expired after about five minutes) is finished and the answer goes on in a new streamed
    message; any other refusal (a channel the bot is not in, no streaming in the workspace)
    stops streaming, and `deliver` posts whatever was not streamed as whole messages, as it
    does when nothing was."""

    def __init__(
        self, client: AsyncWebClient, key: ConversationKey, languages: Languages | None = None
    ) -> None:
        self._client = client
        self._key = key
        self._languages = languages
        self._t: Translations | None = None
        self._asker = ""
        self._can_stream = True
        self._ts: str | None = None  # the message being streamed into
        self._bytes = 0  # of that message's text
        self._sent = ""  # the answer's text Slack has taken, over every streamed message
        self._buffer = ""
        self._last_flush = 0.0

    async def _translations(self) -> Translations:
        """A research thread's language is its conversation starter's; a thread with no
        conversation (an /ask question) speaks the asker's."""
        if self._t is None:
            language = "en"
            if self._languages is not None:
                language = await self._languages.of_thread(self._key, default_user=self._asker)
            self._t = translations(language)
        return self._t

    async def thinking(self, question: str, model: str, asker: str = "") -> None:
        self._asker = asker
        t = await self._translations()
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._key.channel_id,
                thread_ts=self._key.thread_ts,
                status=t.gettext(THINKING_STATUS),
                loading_messages=[t.gettext(m) for m in THINKING_LOADING],
            )
        except SlackApiError as exc:
            logger.info("thread status not set: %s", exc.response.get("error"))

    async def partial(self, text: str) -> None:
        if not self._can_stream:
            return
        self._buffer += text
        now = time.monotonic()
        if (
            len(self._buffer) >= STREAM_FLUSH_CHARS
            or now - self._last_flush >= STREAM_FLUSH_SECONDS
        ):
            await self._flush()

    async def deliver(self, answer: Answer) -> None:
        if self._can_stream and self._buffer:
            await self._flush()
        if self._sent:
            rest = _unsent(answer.text, self._sent)
            footer = render.footer_blocks(answer, overflow=False, t=await self._translations())
            if rest is not None and not rest.strip():
                # All of it streamed: its buttons end the stream, or follow in a message.
                if self._ts is not None and await self._stop(blocks=footer):
                    return
                t = await self._translations()
                await self._post({"text": t.gettext(ANSWER_DETAILS), "blocks": footer})
                return
            await self._stop()
            # What was not streamed follows whole (all of it, should the streamed text not
            # be what the answer turned out to be: twice rather than lost).
            answer = replace(answer, text=rest) if rest is not None else answer
        await self._deliver_whole(answer)

    async def notice(self, sentence: Text) -> None:
        await self._stop()  # a streamed start stays; the notice says why it ends there
        await self._post(render.notice_message(sentence, t=await self._translations()))

    async def _deliver_whole(self, answer: Answer) -> None:
        t = await self._translations()
        if len(render.answer_parts(answer.text)) > MAX_THREAD_MESSAGES:
            try:
                await self._client.files_upload_v2(
                    channel=self._key.channel_id,
                    thread_ts=self._key.thread_ts,
                    content=answer.text,
                    filename="answer.md",
                    title=show(
                        t, say(ANSWER_FILE_TITLE, question=render.clip(answer.question, 200))
                    ),
                )
            except SlackApiError as exc:
                logger.warning(
                    "answer upload failed (%s); posting it in parts", exc.response.get("error")
                )
            else:
                await self._post(render.file_message(answer, t))
                return
        for message in render.answer_messages(
            answer, quote=False, max_messages=MAX_THREAD_MESSAGES, t=t
        ):
            await self._post(message)

    async def _flush(self) -> None:
        piece = self._buffer
        if not piece.strip() and self._ts is None:
            return  # a stream cannot start with nothing to show
        self._last_flush = time.monotonic()
        size = len(piece.encode())
        try:
            if self._ts is None:
                await self._start(piece)
            elif self._bytes + size > STREAM_MESSAGE_BYTES:
                await self._stop()  # near Slack's cap: go on in a new message
                await self._start(piece)
            else:
                await self._client.chat_appendStream(
                    channel=self._key.channel_id, ts=self._ts, markdown_text=piece
                )
                self._bytes += size
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error not in STREAM_ENDED or self._ts is None or not await self._restart(piece):
                logger.info("answer streaming in %s stopped: %s", self._key, error)
                await self._give_up()
                return
        except (SlackClientError, OSError):
            logger.warning("answer streaming in %s failed", self._key, exc_info=True)
            await self._give_up()
            return
        self._sent += piece
        self._buffer = ""

    async def _restart(self, piece: str) -> bool:
        """Slack ended the stream (too long, or expired): finish it, continue in a new one."""
        await self._stop()
        try:
            await self._start(piece)
        except (SlackApiError, SlackClientError, OSError):
            return False
        return True

    async def _start(self, piece: str) -> None:
        response = await self._client.chat_startStream(
            channel=self._key.channel_id,
            thread_ts=self._key.thread_ts,
            markdown_text=piece,
            # Outside DMs Slack streams only with both.
            recipient_team_id=self._key.team_id or None,
            recipient_user_id=self._asker or None,
        )
        self._ts = str(response["ts"])
        self._bytes = len(piece.encode())

    async def _stop(self, blocks: list[dict[str, Any]] | None = None) -> bool:
        """Finish the open stream, if any; True when Slack took the end (and `blocks`)."""
        ts, self._ts = self._ts, None
        if ts is None:
            return False
        try:
            await self._client.chat_stopStream(channel=self._key.channel_id, ts=ts, blocks=blocks)
        except (SlackApiError, SlackClientError, OSError) as exc:
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else None
            logger.info("stopping an answer stream in %s failed: %s", self._key, error)
            return False
        return True

    async def _give_up(self) -> None:
        self._can_stream = False
        await self._stop()

    async def _post(self, message: dict[str, Any]) -> None:
        await post_message(
            self._client, message, channel=self._key.channel_id, thread_ts=self._key.thread_ts
        )


def _unsent(text: str, sent: str) -> str | None:
    """What of the answer `text` was not streamed, given the streamed `sent` (raw model
    deltas; the answer is their concatenation, stripped); None if they disagree."""
    shown = sent.strip()
    if not text.startswith(shown):
        return None
    return text[len(shown) :]


def thread_answer_sinks(
    client_for: Callable[[str], AsyncWebClient], languages: Languages | None = None
) -> AnswerSinkFactory:
    """Sinks posting with the client of the thread's workspace (`client_for(team_id)`)."""

    def make(key: ConversationKey) -> SlackThreadAnswerSink:
        return SlackThreadAnswerSink(client_for(key.team_id), key, languages)

    return make
