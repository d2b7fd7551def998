"""Async client of DashScope's native text-generation endpoint: one model call in, typed
events out.

It speaks the wire format itself (bot/qwen/wire.py) on the bot's aiohttp session, as the
dashscope SDK's 1.x-style async path did (the 2.0 client drops the deep-research fields), but
without the SDK's per-frame costs: its loop spent more CPU per frame than everything the bot
then does with the frame (bench/frames.py). The SDK's quirks that the bot relied on are kept
(wire.py says which); the ones it guarded against are gone with it: a frame whose `output` is
null no longer kills the stream, an error frame without a code is an error, not a KeyError,
and transport failures are not logged at ERROR. Transient failures are retried here, before
anything was yielded, and the streams of a process share the event loop in bounded slices
(FrameTurns), so Slack's requests never queue behind a burst of buffered frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from bot.qwen.errors import is_transient
from bot.qwen.events import STILL_ALIVE, Event, PhaseStatus, StillAlive, StreamError, Usage
from bot.qwen.interpreter import UsagePeak, interpret
from bot.qwen.wire import (
    SSE_CONTENT_TYPE,
    FrameDecoder,
    SseSplitter,
    request_body,
    request_headers,
    request_url,
)

logger = logging.getLogger(__name__)

# Long research runs go quiet between phases (KeepAlive frames arrive, but not often).
STREAM_IDLE_TIMEOUT_SECONDS: Final = 600
# Frame work (of all streams together) per event-loop iteration: a Slack request waits about
# this long for each loop iteration it needs, however many streams are open.
FRAME_SLICE_SECONDS: Final = 0.002


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


class FrameTurns:
    """Shares the event loop between the model streams of a process and everything else.

    A stream whose bytes are already buffered never has to wait, so without this a burst of
    frames keeps the loop from Slack's requests (and 400 streams that each yield after every
    frame still make every loop turn as long as 400 frames). Instead, all streams together do at
    most `slice_seconds` of frame work (reading plus whatever the caller does with the events)
    per loop iteration; a stream that finds the slice used up waits for a later iteration, in
    line. So a Slack request waits for one slice per loop iteration it needs, however many
    streams are open, and no stream pays for a loop turn per frame.
    """

    def __init__(self, slice_seconds: float = FRAME_SLICE_SECONDS, wake: int = 4) -> None:
        self._slice = slice_seconds
        self._wake = wake
        self._started: float | None = None  # when this iteration's frame work began
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    def spent(self) -> bool:
        """Whether this iteration's slice is used up; the first call of an iteration opens it."""
        now = time.perf_counter()
        started = self._started
        if started is None:
            self._started = now
            self._schedule()
            return False
        return now - started > self._slice

    async def wait(self, *, first: bool = False) -> None:
        """Wait in line for a later iteration (`first`: at the head of the line)."""
        waiter = asyncio.get_running_loop().create_future()
        if first:
            self._waiting.appendleft(waiter)
        else:
            self._waiting.append(waiter)
        self._schedule()
        try:
            await waiter
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                self._waiting.remove(waiter)
            raise

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            # Runs in the next loop iteration: callbacks added now are not run in this one.
            asyncio.get_running_loop().call_soon(self._next_iteration)

    def _next_iteration(self) -> None:
        self._scheduled = False
        self._started = None
        for _ in range(min(self._wake, len(self._waiting))):
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if self._waiting:
            self._schedule()


class QwenClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        session: aiohttp.ClientSession,
        retry: RetryPolicy | None = None,
        turns: FrameTurns | None = None,
    ) -> None:
        self._api_key = api_key
        self._url = request_url(base_url)
        self._headers = request_headers(api_key)
        self._session = session
        self._retry = retry or RetryPolicy()
        self._turns = turns or FrameTurns()

    async def stream(self, call: ModelCall) -> AsyncIterator[Event]:
        """Events of one call. Errors arrive as a final StreamError event, never raised.

        A transient failure is retried only while nothing of the call has been yielded, so a
        stream whose output may already be in Slack is never started again behind its back.
        Usage events carry the highest figures the stream reported so far (UsagePeak), so the
        last one is never less than any seen before it.
        """
        frames: _Frames | None = None
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
            del first
            while (batch := await frames.next_batch()) is not None:
                for event in batch:
                    yield peak(event)
                    if type(event) is StreamError:
                        return
                # Not kept while waiting for the next slice: 400 streams each holding their
                # last few hundred events made the garbage collector's full passes long.
                del batch
        finally:
            frames.close()

    async def _open(self, call: ModelCall) -> tuple[_Frames, list[Event]]:
        """Start the call and read up to its first meaningful events."""
        body = request_body(call.model, [dict(m) for m in call.messages], call.parameters)
        try:
            response = await self._post(body, call.api_key)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Transient(_connection_error(exc)) from exc
        frames = _Frames(response, self._turns)
        if response.status != 200 or SSE_CONTENT_TYPE not in response.content_type:
            collected = await _failed(response)
            frames.close()
        else:
            collected = []
            # One frame at a time: what follows the first meaningful frame may be an error
            # that must not be retried.
            while (batch := await frames.next_batch(1)) is not None:
                # Frames with nothing to show before the first that has are not passed on.
                collected.extend(e for e in batch if e is not STILL_ALIVE)
                error = next((e for e in batch if isinstance(e, StreamError)), None)
                if error is not None:
                    break
                if not all(isinstance(e, (PhaseStatus, Usage, StillAlive)) for e in batch):
                    break
        error = next((e for e in collected if isinstance(e, StreamError)), None)
        if error is not None and is_transient(error):
            frames.close()
            raise _Transient(error)
        return frames, collected

    async def _post(self, body: bytes, api_key: str | None = None) -> aiohttp.ClientResponse:
        """`api_key`: the workspace's own Model Studio key, if it brought one."""
        timeout = aiohttp.ClientTimeout(total=None, sock_read=STREAM_IDLE_TIMEOUT_SECONDS)
        headers = request_headers(api_key) if api_key else self._headers
        for attempt in (1, 2):
            try:
                return await self._session.post(
                    self._url, data=body, headers=headers, timeout=timeout
                )
            except aiohttp.ClientConnectionError:
                # A pooled keep-alive connection the server had closed fails before any byte
                # of the answer: the request was not taken, so it is sent again once, at once.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class _Frames:
    """One open stream: its bytes, cut into frames and interpreted in bounded slices."""

    def __init__(self, response: aiohttp.ClientResponse, turns: FrameTurns) -> None:
        self._response = response
        self._turns = turns
        self._split = SseSplitter()
        self._decode = FrameDecoder()
        self._lines: list[bytes] = []
        self._errors: dict[int, int] = {}  # positions in _lines of error events: status
        self._at = 0
        self._ended = False

    async def next_batch(self, most: int = 0) -> list[Event] | None:
        """The events of the next frames (STILL_ALIVE alone if they showed nothing), `most`
        frames at most if given; None once the stream has ended. Whatever is buffered is read
        without waiting on the network, but only within this loop iteration's share of frame
        work."""
        events: list[Event] = []
        read = 0
        waited = False
        turns = self._turns
        while True:
            if read and read == most:
                return events or [STILL_ALIVE]
            if self._at >= len(self._lines):
                if read:
                    return events or [STILL_ALIVE]
                if self._ended:
                    return None
                failure = await self._fill()
                if failure is not None:
                    return [failure]
                continue
            if turns.spent():
                if read:
                    return events or [STILL_ALIVE]
                # Woken by its turn but the slice was used before it got any: it keeps its
                # place at the head of the line.
                await turns.wait(first=waited)
                waited = True
                continue
            waited = False
            data = self._lines[self._at]
            error_status = self._errors.get(self._at, 0) if self._errors else 0
            self._at += 1
            read += 1
            frame = self._decode(data, error_status)
            events.extend(interpret(frame))
            if error_status or "code" in frame:
                self._ended = True  # an error event ends the stream
                self._lines = []
                return events

    async def _fill(self) -> StreamError | None:
        """Read what has arrived, waiting for it if nothing has; the error if the connection
        failed."""
        try:
            chunk = await self._response.content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("model stream connection failed", exc_info=True)
            self._ended = True
            return _connection_error(exc)
        if self._turns.spent():
            # Splitting a chunk (up to 64 KB: hundreds of frames) is frame work too. 400
            # streams released at once each split one before any could notice the slice was
            # used up: a 50-95 ms loop turn (issue 13).
            await self._turns.wait()
        if chunk:
            self._lines = self._split.feed(chunk)
        else:
            self._ended = True
            self._lines = self._split.end()
        self._errors = self._split.errors
        self._at = 0
        return None

    def close(self) -> None:
        """A stream read to its end leaves its connection to the pool; any other is closed,
        so the service stops generating (and charging for) it."""
        if self._ended and self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


async def _failed(response: aiohttp.ClientResponse) -> list[Event]:
    """The error of an answer that is not a stream: JSON, one SSE error event, or text."""
    decode = FrameDecoder()
    status = response.status
    try:
        raw = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [_connection_error(exc)]
    if status == 200:  # a whole answer in one JSON body
        return interpret(decode(raw, 0))
    error: dict[str, Any] = {}
    if SSE_CONTENT_TYPE in response.content_type:
        split = SseSplitter()
        for data in [*split.feed(raw), *split.end()]:
            with contextlib.suppress(ValueError):
                loaded = json.loads(data)
                error = loaded if isinstance(loaded, dict) else {}
    else:
        with contextlib.suppress(ValueError):
            loaded = json.loads(raw)
            error = loaded if isinstance(loaded, dict) else {}
    if not error:
        error = {"message": "an answer that is neither JSON nor SSE"}
    return interpret(decode.error(error, status, in_stream=False))


def _connection_error(exc: BaseException) -> StreamError:
    return StreamError(code="ConnectionError", message=type(exc).__name__)
