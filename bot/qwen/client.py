"""Thin async client over the dashscope SDK: one model call in, typed events out.

It uses the SDK's 1.x-style async path (the 2.0 client drops the deep-research fields) at the
level below `AioGeneration`, because `AioGeneration` turns a frame whose `output` is null into a
TypeError that kills the stream. The SDK's other quirks are guarded here too: errors are
classified by code, not by the 400 it reports mid-stream; an error frame without a code raises
KeyError inside the SDK; the SDK never retries; and a burst of buffered frames would otherwise
starve the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import aiohttp
from dashscope.client.base_api import BaseAioApi
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from bot.qwen.errors import is_transient
from bot.qwen.events import STILL_ALIVE, Event, PhaseStatus, StreamError, Usage
from bot.qwen.interpreter import UsagePeak, interpret

logger = logging.getLogger(__name__)

# Long research runs go quiet between phases (KeepAlive frames arrive, but not often).
STREAM_IDLE_TIMEOUT_SECONDS: Final = 600


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One request to the text-generation endpoint."""

    model: str
    messages: tuple[Mapping[str, Any], ...]
    # May hold MCP bearer tokens in the clear: never part of a repr or a log line.
    parameters: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # The workspace's own Model Studio key; None: the client's (DASHSCOPE_API_KEY).
    api_key: str | None = field(default=None, repr=False, compare=False)


def research_call(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    enable_feedback: bool | None = None,
    output_format: str | None = None,
    research_tools: Sequence[Mapping[str, Any]] = (),
) -> ModelCall:
    params: dict[str, Any] = {}
    if enable_feedback is not None:
        params["enable_feedback"] = enable_feedback
    if output_format:
        params["output_format"] = output_format
    if research_tools:
        params["research_tools"] = [dict(t) for t in research_tools]
    return ModelCall(model, tuple(messages), params)


def thinking_call(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    enable_thinking: bool | None = True,
    thinking_budget: int | None = None,
) -> ModelCall:
    params: dict[str, Any] = {"result_format": "message"}
    if enable_thinking is not None:
        params["enable_thinking"] = enable_thinking
    if thinking_budget:
        params["thinking_budget"] = thinking_budget
    return ModelCall(model, tuple(messages), params)


class ModelClient(Protocol):
    """What domain code needs from a model: a stream of events for a call."""

    def stream(self, call: ModelCall) -> AsyncIterator[Event]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded in attempts and in total time, exponential backoff with jitter."""

    attempts: int = 4
    max_seconds: float = 60.0
    wait: wait_base = field(default_factory=lambda: wait_exponential_jitter(initial=1, max=20))


class _Transient(Exception):
    """A retryable failure before the call produced anything."""

    def __init__(self, error: StreamError) -> None:
        super().__init__(error.code)
        self.error = error


class _SdkStream(Protocol):
    def __aiter__(self) -> AsyncIterator[Any]: ...


class QwenClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        session: aiohttp.ClientSession,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._session = session
        self._retry = retry or RetryPolicy()

    async def stream(self, call: ModelCall) -> AsyncIterator[Event]:
        """Events of one call. Errors arrive as a final StreamError event, never raised.

        A transient failure is retried only while nothing of the call has been yielded, so a
        stream whose output may already be in Slack is never started again behind its back.
        Usage events carry the highest figures the stream reported so far (UsagePeak), so the
        last one is never less than any seen before it.
        """
        frames: AsyncIterator[Any] | None = None
        first: list[Event] = []
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry.attempts)
            | stop_after_delay(self._retry.max_seconds),
            wait=self._retry.wait,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    frames, first = await self._open(call)
        except _Transient as exc:
            yield exc.error
            return
        assert frames is not None
        peak = UsagePeak()
        try:
            for event in first:
                yield peak(event)
            if any(isinstance(e, StreamError) for e in first):
                return
            async for event in self._events(frames):
                yield peak(event)
                if isinstance(event, StreamError):
                    return
        finally:
            await _close(frames)

    async def _open(self, call: ModelCall) -> tuple[AsyncIterator[Any], list[Event]]:
        """Start the call and read up to its first meaningful events."""
        try:
            sdk_stream: _SdkStream = await BaseAioApi.call(
                model=call.model,
                input={"messages": [dict(m) for m in call.messages]},
                task_group="aigc",
                task="text-generation",
                function="generation",
                api_key=call.api_key or self._api_key,
                stream=True,
                incremental_output=True,
                base_address=self._base_url,
                session=self._session,
                request_timeout=STREAM_IDLE_TIMEOUT_SECONDS,
                **call.parameters,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Transient(_connection_error(exc)) from exc
        frames = aiter(sdk_stream)
        collected: list[Event] = []
        while (batch := await _next_batch(frames)) is not None:
            collected.extend(batch)
            error = next((e for e in batch if isinstance(e, StreamError)), None)
            if error is not None:
                if is_transient(error):
                    await _close(frames)
                    raise _Transient(error)
                break
            if not all(isinstance(e, (PhaseStatus, Usage)) for e in batch):
                break
        return frames, collected

    async def _events(self, frames: AsyncIterator[Any]) -> AsyncIterator[Event]:
        while (batch := await _next_batch(frames)) is not None:
            if not batch:
                # A KeepAlive or metadata-only frame: nothing to show, but the stream lives
                # (a run's idle limit counts it).
                yield STILL_ALIVE
            for event in batch:
                yield event
            # A burst of buffered frames never suspends the SDK's loop; let Slack acks through.
            await asyncio.sleep(0)


async def _next_batch(frames: AsyncIterator[Any]) -> list[Event] | None:
    """The events of the next frame; None when the stream has ended."""
    try:
        response = await anext(frames)
    except StopAsyncIteration:
        return None
    except KeyError:
        # The SDK indexes msg["code"] on error frames; one without a code lands here.
        logger.warning("model stream sent an error frame without a code")
        return [StreamError(code="UnknownError", message="error frame without code")]
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("model stream connection failed", exc_info=True)
        return [_connection_error(exc)]
    return interpret(_frame(response))


def _frame(response: Any) -> dict[str, Any]:
    """The wire-shaped dict of one SDK response object."""
    status = getattr(response, "status_code", 200)
    frame: dict[str, Any] = {
        "request_id": getattr(response, "request_id", "") or "",
        "status_code": status,
    }
    if status == 200:
        frame["output"] = getattr(response, "output", None)
        frame["usage"] = getattr(response, "usage", None)
    else:
        frame["code"] = getattr(response, "code", "") or f"HTTP{status}"
        frame["message"] = getattr(response, "message", "") or ""
    return frame


def _connection_error(exc: BaseException) -> StreamError:
    return StreamError(code="ConnectionError", message=type(exc).__name__)


async def _close(frames: AsyncIterator[Any] | None) -> None:
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream must not mask the original outcome
            logger.debug("closing model stream failed", exc_info=True)
