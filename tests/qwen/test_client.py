"""bot/qwen/client.py and wire.py: the bot's own reading of DashScope's SSE stream keeps what
the dashscope SDK did (and what the bot relied on), and shares the event loop with the rest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tenacity import wait_none

from bot.qwen.client import FrameTurns, QwenClient, RetryPolicy, research_call
from bot.qwen.events import (
    Event,
    Finished,
    References,
    StillAlive,
    StreamError,
    TextDelta,
    Usage,
)
from bot.qwen.wire import FrameDecoder, SseSplitter
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    ErrorFrameWithoutCode,
    FakeDashScope,
    HttpError,
    MidStreamError,
    RawFrame,
    _sse,
    research_frame,
    research_script,
)

REPORT = ["# Report\n\n", "Adaptive tutoring helps [1]", " and grading [2]."]


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashScope]:
    async with FakeDashScope() as server:
        yield server


@pytest.fixture
async def client(fake: FakeDashScope) -> AsyncIterator[QwenClient]:
    async with aiohttp.ClientSession() as session:
        yield QwenClient(
            api_key="sk-test",
            base_url=fake.base_url,
            session=session,
            retry=RetryPolicy(attempts=3, max_seconds=10, wait=wait_none()),
        )


async def events_of(client: QwenClient) -> list[Event]:
    call = research_call("qwen-deep-research", [{"role": "user", "content": "AI in schools"}])
    return [event async for event in client.stream(call)]


def report_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.phase == "answer")


async def test_the_request_is_what_the_sdk_sent(fake: FakeDashScope, client: QwenClient) -> None:
    fake.enqueue(research_script(REPORT, DEFAULT_REFERENCES))
    call = research_call(
        "qwen-deep-research", [{"role": "user", "content": "AI"}], enable_feedback=False
    )
    events = [event async for event in client.stream(call)]
    assert isinstance(events[-1], Finished)
    request = fake.requests[0]
    assert request.headers["X-DashScope-SSE"] == "enable"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.body == {
        "model": "qwen-deep-research",
        "parameters": {"incremental_output": True, "enable_feedback": False},
        "input": {"messages": [{"role": "user", "content": "AI"}]},
    }


async def test_a_whole_research_stream_reads_as_the_report(
    fake: FakeDashScope, client: QwenClient
) -> None:
    fake.enqueue(research_script(REPORT, DEFAULT_REFERENCES, rounds=3))
    events = await events_of(client)
    assert report_of(events) == "".join(REPORT)
    assert any(isinstance(e, References) for e in events)
    assert isinstance(events[-1], Finished)
    assert not any(isinstance(e, StreamError) for e in events)


async def test_an_error_frame_without_a_code_ends_the_stream_as_an_error(
    fake: FakeDashScope, client: QwenClient
) -> None:
    fake.enqueue([*research_script(REPORT, DEFAULT_REFERENCES)[:6], ErrorFrameWithoutCode("x")])
    events = await events_of(client)
    assert isinstance(events[-1], StreamError) and events[-1].code == "UnknownError"


async def test_a_mid_stream_error_keeps_its_code_and_real_status(
    fake: FakeDashScope, client: QwenClient
) -> None:
    script = research_script(REPORT, DEFAULT_REFERENCES)[:6]
    fake.enqueue([*script, MidStreamError("Throttling.AllocationQuota", "quota", 429)])
    events = await events_of(client)
    error = events[-1]
    assert isinstance(error, StreamError)
    assert (error.code, error.status) == ("Throttling.AllocationQuota", 429)
    assert len(fake.requests) == 1  # output came first: never retried


async def test_a_null_output_frame_does_not_end_the_stream(
    fake: FakeDashScope, client: QwenClient
) -> None:
    script = research_script(REPORT, DEFAULT_REFERENCES)
    null = RawFrame('{"output":null,"usage":{"input_tokens":9,"output_tokens":1},"request_id":"r"}')
    fake.enqueue([*script[:5], null, *script[5:]])
    events = await events_of(client)
    assert report_of(events) == "".join(REPORT)
    assert isinstance(events[-1], Finished)


async def test_an_undecodable_frame_is_an_unknown_error(
    fake: FakeDashScope, client: QwenClient
) -> None:
    fake.enqueue([*research_script(REPORT, DEFAULT_REFERENCES)[:5], RawFrame("{not json")])
    events = await events_of(client)
    assert isinstance(events[-1], StreamError) and events[-1].code == "Unknown"


async def test_an_error_before_the_stream_is_retried_then_reported(
    fake: FakeDashScope, client: QwenClient
) -> None:
    fake.enqueue([HttpError(503, "ServiceUnavailable", "busy")])
    fake.enqueue([HttpError(400, "DataInspectionFailed", "flagged")])
    events = await events_of(client)
    assert len(fake.requests) == 2
    [error] = events
    assert isinstance(error, StreamError)
    assert (error.code, error.status) == ("DataInspectionFailed", 400)


async def test_a_long_burst_of_buffered_frames_leaves_the_loop_free_between_slices(
    fake: FakeDashScope,
) -> None:
    """Another task gets the loop regularly while a stream reads thousands of frames sent back
    to back, and the stream does not give the loop up after every frame either."""
    script = research_script([f"piece {i} " for i in range(5000)], DEFAULT_REFERENCES)
    fake.enqueue(script)
    turns = FrameTurns(slice_seconds=0.001)
    ticks = 0
    reading = True

    async def ticker() -> None:
        nonlocal ticks
        while reading:
            ticks += 1
            await asyncio.sleep(0)

    async with aiohttp.ClientSession() as session:
        client = QwenClient(api_key="sk-test", base_url=fake.base_url, session=session, turns=turns)
        call = research_call("qwen-deep-research", [{"role": "user", "content": "AI"}])
        events: list[Event] = []
        batches = 0
        task = asyncio.create_task(ticker())
        async for event in client.stream(call):
            events.append(event)
            if isinstance(event, StillAlive):
                batches += 1
        reading = False
        await task
    assert report_of(events).count("piece") == 5000
    frames = sum(1 for e in events if isinstance(e, Usage))
    assert ticks > 20
    # ... and it did not yield after every frame either
    assert ticks < frames / 2


# --------------------------------------------------------------------------- the wire, pure


def wire_bytes() -> bytes:
    frames = [s for s in research_script(REPORT, DEFAULT_REFERENCES) if hasattr(s, "data")]
    body = b"".join(_sse(n, "result", 200, f.data) for n, f in enumerate(frames, 1))  # type: ignore[union-attr]
    error = {"code": "InternalError", "message": "m", "request_id": "r"}
    return body + _sse(len(frames) + 1, "error", 500, error)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), max_size=40))
def test_any_cut_of_the_bytes_gives_the_same_frames(cuts: list[int]) -> None:
    data = wire_bytes()

    def read(split: SseSplitter, chunk: bytes) -> list[tuple[bytes, int]]:
        lines = split.feed(chunk)
        return [(line, split.errors.get(n, 0)) for n, line in enumerate(lines)]

    whole = SseSplitter()
    expected = read(whole, data) + [(line, 0) for line in whole.end()]
    split = SseSplitter()
    got: list[tuple[bytes, int]] = []
    at = 0
    for size in cuts:
        got += read(split, data[at : at + size])
        at += size
    got += read(split, data[at:])
    got += [(line, 0) for line in split.end()]
    assert got == expected
    assert [status for _, status in got][-2:] == [0, 500]
    assert json.loads(got[-1][0])["code"] == "InternalError"


def test_the_decoder_keeps_what_the_sdk_kept() -> None:
    decode = FrameDecoder()
    first = decode(json.dumps(research_frame("answer", "typing", "x").data).encode(), 0)
    assert first["request_id"] == "req-1"
    # A result frame's code is not an error, and a frame without request_id has the last one.
    later = decode(b'{"code":"X","output":{"text":"y"}}', 0)
    assert "code" not in later and later["request_id"] == "req-1"
    # An error frame without a code is an UnknownError; with an empty one, its HTTP status.
    assert decode(b'{"message":"m"}', 500)["code"] == "UnknownError"
    assert decode(b'{"code":"","message":"m"}', 503)["code"] == "HTTP503"
    assert decode(b"\xff{", 0) == {
        "code": "Unknown",
        "message": "undecodable frame",
        "status_code": 500,
    }
