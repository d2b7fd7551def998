"""Self-tests for tests/fakes/dashscope_server.py, driven through the real dashscope SDK.

If the fake drifts from what the SDK parses, every bot test built on it would be meaningless;
these tests pin the fake to the SDK's actual behaviour (including its quirks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import dashscope
import pytest
from dashscope.client.base_api import BaseAioApi

from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    ErrorFrameWithoutCode,
    FakeDashScope,
    Frame,
    Gate,
    HttpError,
    MidStreamError,
    Pause,
    clarification_script,
    research_frame,
    research_script,
    thinking_script,
)

MESSAGES = [{"role": "user", "content": "Research AI in education"}]
REPORT = ["# Report\n\n", "AI helps personalised learning [1]", " and assessment [2]."]
# Every test's network wait is bounded by this.
LIMIT = 10.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashScope]:
    async with FakeDashScope() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def research_stream(
    fake: FakeDashScope,
    session: aiohttp.ClientSession,
    *,
    api_key: str = "sk-test",
    incremental: bool | None = True,
) -> Any:
    kwargs: dict[str, Any] = {}
    if incremental is not None:
        kwargs["incremental_output"] = incremental
    return await BaseAioApi.call(
        model="qwen-deep-research",
        input={"messages": MESSAGES},
        task_group="aigc",
        task="text-generation",
        function="generation",
        api_key=api_key,
        stream=True,
        base_address=fake.base_url,
        session=session,
        **kwargs,
    )


async def thinking_stream(
    fake: FakeDashScope, session: aiohttp.ClientSession, **kwargs: Any
) -> Any:
    # The SDK annotates AioGeneration.call with its sync return types; it really returns an
    # async generator when stream=True, hence Any.
    call: Any = dashscope.AioGeneration.call
    return await call(
        model="qwen-plus",
        messages=MESSAGES,
        stream=True,
        result_format="message",
        api_key="sk-test",
        base_address=fake.base_url,
        session=session,
        **kwargs,
    )


async def collect(stream: Any) -> list[Any]:
    async with asyncio.timeout(LIMIT):
        return [rsp async for rsp in stream]


def messages_of(responses: list[Any]) -> list[dict[str, Any]]:
    return [rsp.output["message"] for rsp in responses]


async def test_research_frames_survive_the_sdk(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(research_script(REPORT, DEFAULT_REFERENCES, rounds=2, sites_per_round=3))
    responses = await collect(await research_stream(fake, session))

    assert all(rsp.status_code == 200 for rsp in responses)
    assert all(rsp.request_id == "req-research" for rsp in responses)
    msgs = messages_of(responses)
    steps = [(m["phase"], m["status"]) for m in msgs]
    assert steps[:3] == [
        ("ResearchPlanning", "typing"),
        ("ResearchPlanning", "typing"),
        ("ResearchPlanning", "finished"),
    ]
    assert ("KeepAlive", "") in steps
    assert steps.count(("WebResearch", "streamingQueries")) == 2
    assert steps.count(("WebResearch", "WebResultFinished")) == 2
    assert steps[-1] == ("answer", "finished")

    web = [
        m["extra"]["deep_research"]["research"]
        for m in msgs
        if m["phase"] == "WebResearch" and m["status"] != "finished"
    ]
    assert web[0] == {"id": 1, "query": "", "researchGoal": "Goal 1"}
    assert len(web[1]["webSites"]) == 3
    assert set(web[1]["webSites"][0]) == {"title", "url", "description", "favicon"}

    answers = [m for m in msgs if m["phase"] == "answer"]
    assert "".join(m["content"] for m in answers) == "".join(REPORT)
    assert answers[0]["extra"]["deep_research"]["references"] == DEFAULT_REFERENCES
    assert all("references" not in m["extra"]["deep_research"] for m in answers[1:])

    tokens = [rsp.usage["output_tokens"] for rsp in responses]
    assert tokens == sorted(tokens) and tokens[-1] > tokens[0]
    assert responses[-1].output["fininshed"] is False  # the live misspelling survives

    (request,) = fake.requests
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.headers["X-DashScope-SSE"] == "enable"
    assert request.body["model"] == "qwen-deep-research"
    assert request.body["parameters"]["incremental_output"] is True


async def test_wire_format_is_exactly_the_live_one(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    fake.enqueue([research_frame("answer", "typing", "Hi", request_id="r")] * 2)
    headers = {"Authorization": "Bearer sk-test", "X-DashScope-SSE": "enable"}
    async with asyncio.timeout(LIMIT):
        async with session.post(
            f"{fake.base_url}/services/aigc/text-generation/generation",
            json={"model": "m", "input": {}, "parameters": {"incremental_output": True}},
            headers=headers,
        ) as resp:
            assert resp.headers["Content-Type"] == "text/event-stream;charset=UTF-8"
            text = (await resp.read()).decode()
    events = text.split("\n\n")
    assert events[-1] == ""  # the stream ends right after the last blank line, no [DONE]
    assert events[0].startswith('id:1\nevent:result\n:HTTP_STATUS/200\ndata:{"output":')
    assert events[1].startswith("id:2\n")
    assert '"fininshed_reason":"null"' in events[0]


async def test_clarification_script(fake: FakeDashScope, session: aiohttp.ClientSession) -> None:
    question = "Which aspects of AI in education interest you most?"
    fake.enqueue(clarification_script(question, chunks=3))
    msgs = messages_of(await collect(await research_stream(fake, session)))

    assert msgs[0] == {
        "phase": "answer",
        "role": "assistant",
        "content": "",
        "extra": {},
        "status": "typing",
    }
    typing = [m for m in msgs[1:] if m["status"] == "typing"]
    assert len(typing) == 3
    assert "".join(m["content"] for m in typing) == question
    assert [(m["phase"], m["status"]) for m in msgs[-2:]] == [
        ("answer", "finished"),
        ("KeepAlive", ""),
    ]


async def test_snapshot_research_uses_streaming_thinking(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(research_script(REPORT, DEFAULT_REFERENCES, snapshot=True, pause=0.001))
    msgs = messages_of(await collect(await research_stream(fake, session)))
    statuses = {m["status"] for m in msgs if m["phase"] == "WebResearch"}
    assert statuses == {"streamingThinking", "WebResultFinished", "finished"}
    research = [m["extra"]["deep_research"].get("research", {}) for m in msgs]
    assert any("researchGoal" in r for r in research)
    assert any("webSites" in r for r in research)


@pytest.mark.parametrize("incremental", [False, None])
async def test_without_incremental_output_text_is_cumulative(
    fake: FakeDashScope, session: aiohttp.ClientSession, incremental: bool | None
) -> None:
    script = research_script(REPORT, DEFAULT_REFERENCES)
    fake.enqueue(script)
    msgs = messages_of(await collect(await research_stream(fake, session, incremental=incremental)))

    answers = [m["content"] for m in msgs if m["phase"] == "answer" and m["status"] == "typing"]
    assert answers == ["".join(REPORT[: i + 1]) for i in range(len(REPORT))]
    plan = [m["content"] for m in msgs if m["phase"] == "ResearchPlanning"]
    # Running text within the phase; the empty "finished" frame repeats the whole plan.
    assert plan[1].startswith(plan[0]) and len(plan[1]) > len(plan[0])
    assert plan[2] == plan[1]
    # The queued script itself was not rewritten.
    frames = [step for step in script if isinstance(step, Frame)]
    assert [f.data["output"]["message"]["content"] for f in frames[-4:-1]] == REPORT


async def test_wrong_api_key_is_401_and_keeps_the_script(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(clarification_script("Q?"))
    (rsp,) = await collect(await research_stream(fake, session, api_key="sk-wrong"))
    assert rsp.status_code == 401
    assert rsp.code == "InvalidApiKey"
    assert rsp.message == "Invalid API-key provided."
    assert rsp.request_id

    # The script is still queued for the next, correctly authenticated, request.
    responses = await collect(await research_stream(fake, session))
    assert responses[-1].output["message"]["phase"] == "KeepAlive"
    assert len(fake.requests) == 2


async def test_missing_sse_header_and_empty_queue(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/services/aigc/text-generation/generation"
    auth = {"Authorization": "Bearer sk-test"}
    async with asyncio.timeout(LIMIT):
        async with session.post(url, json={"model": "m"}, headers=auth) as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == "InvalidParameter"
    (rsp,) = await collect(await research_stream(fake, session))
    assert (rsp.status_code, rsp.code, rsp.message) == (500, "InternalError", "no script queued")
    await fake.wait_for_requests(2, timeout=1)


async def test_http_error_before_stream(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    fake.enqueue([HttpError(429, "Throttling.RateQuota", "Requests rate limit exceeded")])
    (rsp,) = await collect(await research_stream(fake, session))
    assert (rsp.status_code, rsp.code) == (429, "Throttling.RateQuota")


async def test_mid_stream_error(fake: FakeDashScope, session: aiohttp.ClientSession) -> None:
    script = research_script(REPORT, DEFAULT_REFERENCES)[:4]
    fake.enqueue([*script, MidStreamError("Throttling.AllocationQuota", "Quota exhausted", 429)])
    responses = await collect(await research_stream(fake, session))

    assert [rsp.status_code for rsp in responses[:-1]] == [200] * 4
    error = responses[-1]
    assert error.code == "Throttling.AllocationQuota"
    assert error.message == "Quota exhausted"
    assert error.status_code == 400  # SDK quirk: every mid-stream error is reported as 400
    assert error.request_id == "req-research"


async def test_error_frame_without_code_trips_the_sdk(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    fake.enqueue([ErrorFrameWithoutCode("boom")])
    stream = await research_stream(fake, session)
    with pytest.raises(KeyError):
        await collect(stream)


@pytest.mark.parametrize("how", ["aclose", "close_session"])
async def test_client_closing_early_counts_a_disconnect(fake: FakeDashScope, how: str) -> None:
    gate = Gate()
    fake.enqueue([research_frame("answer", "typing", "Hi"), gate, Pause(0.01)])
    session = aiohttp.ClientSession()
    try:
        stream = await research_stream(fake, session)
        async with asyncio.timeout(LIMIT):
            async for _rsp in stream:
                break
            await gate.wait_reached()
            if how == "aclose":
                await stream.aclose()
            else:
                await session.close()
        await fake.wait_for_disconnects(1)
    finally:
        await session.close()
    assert fake.disconnects == 1
    assert not gate.released


async def test_gate_holds_the_stream_until_released(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    gate = Gate()
    fake.enqueue(
        [research_frame("answer", "typing", "one"), gate, research_frame("answer", "typing", "two")]
    )
    seen: list[str] = []

    async def consume() -> None:
        async for rsp in await research_stream(fake, session):
            seen.append(rsp.output["message"]["content"])

    task = asyncio.create_task(consume())
    await gate.wait_reached()
    await asyncio.sleep(0.1)
    assert seen == ["one"]
    assert not task.done()
    gate.release()
    await asyncio.wait_for(task, LIMIT)
    assert seen == ["one", "two"]
    assert fake.disconnects == 0


async def test_unreleased_gate_ends_the_stream_after_its_timeout(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    fake.enqueue([research_frame("answer", "typing", "one"), Gate(timeout=0.05)])
    responses = await collect(await research_stream(fake, session))
    assert len(responses) == 1


async def test_thinking_script_through_aio_generation(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(thinking_script(["Hmm, ", "let me think."], ["The answer ", "is 42."]))
    responses = await collect(await thinking_stream(fake, session, incremental_output=True))

    choices = [rsp.output.choices[0] for rsp in responses]
    assert "".join(c.message.reasoning_content for c in choices) == "Hmm, let me think."
    assert "".join(c.message.content for c in choices) == "The answer is 42."
    assert [c.finish_reason for c in choices] == ["null"] * 4 + ["stop"]
    usage = responses[-1].usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details["reasoning_tokens"] > 0
    assert fake.requests[0].body["parameters"]["result_format"] == "message"


async def test_thinking_without_incremental_output_is_cumulative(
    fake: FakeDashScope, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(thinking_script(["a", "b"], ["c", "d"], reasoning_tokens=False))
    responses = await collect(await thinking_stream(fake, session))
    msgs = [rsp.output.choices[0].message for rsp in responses]
    assert [(m.reasoning_content, m.content) for m in msgs] == [
        ("a", ""),
        ("ab", ""),
        ("ab", "c"),
        ("ab", "cd"),
        ("ab", "cd"),
    ]
    assert "output_tokens_details" not in responses[-1].usage


def test_enqueue_rejects_unreachable_steps() -> None:
    server = FakeDashScope()
    frame = research_frame("answer", "typing", "x")
    with pytest.raises(ValueError, match="only step"):
        server.enqueue([frame, HttpError(500, "InternalError", "x")])
    with pytest.raises(ValueError, match="last step"):
        server.enqueue([MidStreamError("InternalError", "x"), frame])
