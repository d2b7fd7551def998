"""A fake of DashScope's native text-generation endpoint, for tests.

It speaks the wire format in /work/shared/reference/dashscope-wire.md byte for byte (SSE events
with ``id:``/``event:``/``:HTTP_STATUS/``/``data:`` lines, no spaces after the colons, no
``[DONE]``), so the real dashscope SDK or a hand-written client can be pointed at it through
``base_url``. Each request plays the next queued ``Script``: a list of steps (frames, pauses,
errors, gates) that a test builds by hand or with the scenario builders at the bottom.

    async with FakeDashScope() as fake:
        fake.enqueue(research_script(["# Report\\n", "Body [1]."], DEFAULT_REFERENCES))
        ...  # point the client at fake.base_url with api_key "sk-test"
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ROUTE = "/api/v1/services/aigc/text-generation/generation"
SSE_CONTENT_TYPE = "text/event-stream;charset=UTF-8"

# How often waits (pauses, gates) check whether the client has gone away. Without polling, a
# stream held by a Gate would only notice a disconnect on its next write.
_POLL_INTERVAL = 0.02


# --------------------------------------------------------------------------- script steps


@dataclass(frozen=True)
class Frame:
    """One SSE event; ``data`` is serialised as one line of compact JSON."""

    data: dict[str, Any]
    event: str = "result"
    http_status: int = 200


@dataclass(frozen=True)
class RawFrame:
    """One SSE event whose ``data:`` line is sent exactly as given: for what json.dumps will not
    write, such as an escaped lone surrogate (``"\\ud800"``) or a figure typed as a string."""

    line: str
    event: str = "result"
    http_status: int = 200


@dataclass(frozen=True)
class Pause:
    """Sleep between events (keep it small in tests)."""

    seconds: float


@dataclass(frozen=True)
class MidStreamError:
    """An ``event:error`` frame with a code, after which the stream ends."""

    code: str
    message: str
    http_status: int = 500


@dataclass(frozen=True)
class ErrorFrameWithoutCode:
    """An ``event:error`` frame lacking "code": the 2.0.2 SDK raises KeyError on it."""

    message: str
    http_status: int = 500


@dataclass(frozen=True)
class HttpError:
    """A plain non-200 JSON answer before any stream; must be a script's only step."""

    status: int
    code: str
    message: str


@dataclass(frozen=True, eq=False)
class Gate:
    """Holds the stream open until the test calls ``release()``.

    If never released the stream ends (without further events) after ``timeout`` seconds, so a
    forgotten gate cannot hang a test run. ``wait_reached`` lets a test know the stream is parked
    here, e.g. before pressing a Stop button.
    """

    timeout: float = 30.0
    _released: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _reached: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def release(self) -> None:
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    async def wait_reached(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._reached.wait(), timeout)


Step = Frame | Pause | MidStreamError | ErrorFrameWithoutCode | HttpError | Gate | RawFrame
Script = list[Step]


@dataclass(frozen=True)
class RecordedRequest:
    headers: dict[str, str]
    body: dict[str, Any]


class _ClientGone(Exception):
    """The client closed the connection before the script finished."""


# --------------------------------------------------------------------------- server


class FakeDashScope:
    def __init__(self, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.api_keys: set[str] = set()  # more keys it takes (workspaces' own keys)
        self.key_checks: list[str] = []  # the keys GET /models was asked with
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self.base_url = ""
        self._scripts: deque[Script] = deque()
        self._runner: web.AppRunner | None = None
        # Set on shutdown so streams parked in a Pause/Gate end at once instead of making
        # runner.cleanup() wait for them.
        self._stopping = asyncio.Event()

    async def __aenter__(self) -> FakeDashScope:
        app = web.Application()
        app.router.add_post(ROUTE, self._handle)
        app.router.add_get("/api/v1/models", self._models)
        # access_log=None: the access log would only add noise to test output.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/api/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def enqueue(self, script: Script) -> None:
        _validate(script)
        self._scripts.append(list(script))

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        await _wait_until(
            lambda: len(self.requests) >= n,
            timeout,
            lambda: f"expected {n} request(s), got {len(self.requests)}",
        )

    async def wait_for_disconnects(self, n: int = 1, timeout: float = 5.0) -> None:
        await _wait_until(
            lambda: self.disconnects >= n,
            timeout,
            lambda: f"expected {n} disconnect(s), got {self.disconnects}",
        )

    def key_used(self, request: RecordedRequest) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    def _accepts(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return given == self.api_key or given in self.api_keys

    async def _models(self, request: web.Request) -> web.Response:
        """GET /models: the model list (one page), 401 for a key the gateway refuses."""
        self.key_checks.append(request.headers.get("Authorization", "").removeprefix("Bearer "))
        if not self._accepts(request):
            return _json_error(401, "InvalidApiKey", "Invalid API-key provided.")
        return web.json_response(
            {
                "request_id": f"fake-{uuid.uuid4()}",
                "output": {"models": [{"model": "qwen-deep-research"}], "total": 1},
            }
        )

    # ----------------------------------------------------------------------- handler

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        self.requests.append(
            RecordedRequest(
                headers=dict(request.headers), body=body if isinstance(body, dict) else {}
            )
        )

        # Auth comes first and never consumes a script, like the live gateway.
        if not self._accepts(request):
            return _json_error(401, "InvalidApiKey", "Invalid API-key provided.")
        if not isinstance(body, dict):
            return _json_error(400, "InvalidParameter", "request body is not a JSON object")
        if request.headers.get("X-DashScope-SSE", "").lower() != "enable":
            return _json_error(400, "InvalidParameter", "streaming required")
        if not self._scripts:
            return _json_error(500, "InternalError", "no script queued")

        script = self._scripts.popleft()
        if len(script) == 1 and isinstance(script[0], HttpError):
            err = script[0]
            return _json_error(err.status, err.code, err.message)

        parameters = body.get("parameters")
        incremental = isinstance(parameters, dict) and parameters.get("incremental_output") is True
        return await self._play(request, script, incremental)

    async def _play(
        self, request: web.Request, script: Script, incremental: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        resp.headers["Content-Type"] = SSE_CONTENT_TYPE
        resp.headers["Cache-Control"] = "no-cache"
        # Without incremental_output the service repeats all text so far in each frame.
        accumulate = None if incremental else _Accumulator()
        next_id = 1
        request_id = f"fake-{uuid.uuid4()}"

        async def send(event: str, http_status: int, data: dict[str, Any]) -> None:
            nonlocal next_id
            _check_connected(request)
            await resp.write(_sse(next_id, event, http_status, data))
            next_id += 1

        try:
            _check_connected(request)
            await resp.prepare(request)
            for step in script:
                if self._stopping.is_set():
                    break
                if isinstance(step, Frame):
                    data = accumulate(step.data) if accumulate else step.data
                    request_id = str(data.get("request_id", request_id))
                    await send(step.event, step.http_status, data)
                elif isinstance(step, RawFrame):
                    _check_connected(request)
                    await resp.write(
                        f"id:{next_id}\nevent:{step.event}\n:HTTP_STATUS/{step.http_status}\n"
                        f"data:{step.line}\n\n".encode()
                    )
                    next_id += 1
                elif isinstance(step, Pause):
                    await self._idle(request, None, step.seconds)
                elif isinstance(step, Gate):
                    step._reached.set()
                    if not await self._idle(request, step._released, step.timeout):
                        break  # never released: end the stream rather than hang
                elif isinstance(step, MidStreamError):
                    error = {"code": step.code, "message": step.message, "request_id": request_id}
                    await send("error", step.http_status, error)
                    break
                elif isinstance(step, ErrorFrameWithoutCode):
                    error = {"message": step.message, "request_id": request_id}
                    await send("error", step.http_status, error)
                    break
            await resp.write_eof()
        except (_ClientGone, ConnectionResetError):
            self.disconnects += 1
        except asyncio.CancelledError:
            # Only happens if aiohttp cancels handlers on disconnect; count it, then let it go.
            self.disconnects += 1
            raise
        return resp

    async def _idle(
        self, request: web.Request, event: asyncio.Event | None, seconds: float
    ) -> bool:
        """Wait for ``event`` (or just ``seconds``), watching for the client going away.

        Returns True if the event was set (or, for a plain pause, the time ran out).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            _check_connected(request)
            if event is not None and event.is_set():
                return True
            if self._stopping.is_set():
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                return event is None
            await asyncio.sleep(min(_POLL_INTERVAL, remaining))


class _Accumulator:
    """Rewrites frames into the cumulative form sent when incremental_output is not true."""

    def __init__(self) -> None:
        self._by_phase: dict[str, str] = {}
        self._content = ""
        self._reasoning = ""

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        data = copy.deepcopy(data)  # scripts may be reused; never edit them in place
        output = data.get("output")
        if not isinstance(output, dict):
            return data
        message = output.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            # Deep research: running text per phase. Keyed by phase rather than reset on phase
            # change so a KeepAlive frame in the middle of a phase does not restart its text.
            phase = str(message.get("phase"))
            self._by_phase[phase] = self._by_phase.get(phase, "") + message["content"]
            message["content"] = self._by_phase[phase]
        choices = output.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            msg = choices[0].get("message")
            if isinstance(msg, dict):
                self._content += msg.get("content") or ""
                self._reasoning += msg.get("reasoning_content") or ""
                msg["content"] = self._content
                msg["reasoning_content"] = self._reasoning
        return data


def _validate(script: Script) -> None:
    """Reject scripts whose later steps could never be played."""
    for i, step in enumerate(script):
        if isinstance(step, HttpError) and len(script) != 1:
            raise ValueError("HttpError must be the only step of a script")
        if isinstance(step, MidStreamError | ErrorFrameWithoutCode) and i != len(script) - 1:
            raise ValueError(f"{type(step).__name__} ends the stream; it must be the last step")
        if not isinstance(step, Step):
            raise TypeError(f"not a script step: {step!r}")


def _check_connected(request: web.Request) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise _ClientGone


def _sse(event_id: int, event: str, http_status: int, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id:{event_id}\nevent:{event}\n:HTTP_STATUS/{http_status}\ndata:{payload}\n\n".encode()


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "request_id": f"fake-{uuid.uuid4()}"}, status=status
    )


async def _wait_until(
    predicate: Callable[[], bool], seconds: float, describe: Callable[[], str]
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() >= deadline:
            raise TimeoutError(describe())
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- frame builders


def research_frame(
    phase: str,
    status: str,
    content: str = "",
    *,
    research: dict[str, Any] | None = None,
    references: list[dict[str, Any]] | None = None,
    input_tokens: int = 50,
    output_tokens: int = 0,
    request_id: str = "req-1",
) -> Frame:
    deep_research: dict[str, Any] = {}
    if research is not None:
        deep_research["research"] = research
    if references is not None:
        deep_research["references"] = references
    return Frame(
        {
            "output": {
                "message": {
                    "phase": phase,
                    "role": "assistant",
                    "content": content,
                    "extra": {"deep_research": deep_research},
                    "status": status,
                },
                # Misspelled exactly as the live service sends them.
                "fininshed": False,
                "fininshed_reason": "null",
            },
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            "request_id": request_id,
        }
    )


def keepalive_frame(
    request_id: str = "req-1", *, input_tokens: int = 50, output_tokens: int = 0
) -> Frame:
    # The reference only says KeepAlive frames are empty; an empty status is the safe guess.
    return research_frame(
        "KeepAlive",
        "",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        request_id=request_id,
    )


def metadata_frame(request_id: str = "req-1") -> Frame:
    """An early frame with metadata only: empty content, no deep_research, no usage."""
    return Frame(
        {
            "output": {
                "message": {
                    "phase": "answer",
                    "role": "assistant",
                    "content": "",
                    "extra": {},
                    "status": "typing",
                }
            },
            "request_id": request_id,
        }
    )


def thinking_frame(
    reasoning: str = "",
    content: str = "",
    finish_reason: str = "null",
    input_tokens: int = 11,
    output_tokens: int = 0,
    reasoning_tokens: int | None = None,
    request_id: str = "req-think",
) -> Frame:
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    if reasoning_tokens is not None:
        usage["output_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return Frame(
        {
            "output": {
                "choices": [
                    {
                        "message": {
                            "content": content,
                            "reasoning_content": reasoning,
                            "role": "assistant",
                        },
                        "finish_reason": finish_reason,
                    }
                ]
            },
            "usage": usage,
            "request_id": request_id,
        }
    )


# --------------------------------------------------------------------------- scenarios

DEFAULT_REFERENCES: list[dict[str, Any]] = [
    {
        "index_number": 1,
        "title": "Personalised learning at scale",
        "url": "https://example.org/personalised-learning",
        "description": "A survey of adaptive tutoring systems in schools.",
        "icon": "https://example.org/favicon.ico",
    },
    {
        "index_number": 2,
        "title": "Automated assessment: a review",
        "url": "https://example.net/assessment-review",
        "description": "Evidence on AI-assisted grading and feedback.",
        "icon": "https://example.net/favicon.ico",
    },
    {
        "index_number": 3,
        "title": "AI in education policy brief",
        "url": "https://example.com/policy-brief",
        "description": "Policy considerations for AI tools in classrooms.",
        "icon": "https://example.com/favicon.ico",
    },
]


def _tokens(text: str) -> int:
    # A rough stand-in for a tokenizer; every non-keepalive frame adds at least one token so
    # usage grows frame by frame like the live cumulative counter.
    return max(1, len(text.split()))


def _split(text: str, chunks: int) -> list[str]:
    """Split ``text`` into up to ``chunks`` non-empty pieces that concatenate back to it."""
    n = max(1, min(chunks, len(text)))
    bounds = [len(text) * i // n for i in range(n + 1)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)] or [""]


def clarification_script(
    question: str, *, chunks: int = 3, request_id: str = "req-clarify", input_tokens: int = 120
) -> Script:
    """Step 1 of deep research: the model asks a clarifying question and stops."""
    used = 0
    script: Script = [metadata_frame(request_id)]
    for piece in _split(question, chunks):
        used += _tokens(piece)
        script.append(
            research_frame(
                "answer",
                "typing",
                piece,
                input_tokens=input_tokens,
                output_tokens=used,
                request_id=request_id,
            )
        )
    used += 1
    script.append(
        research_frame(
            "answer",
            "finished",
            input_tokens=input_tokens,
            output_tokens=used,
            request_id=request_id,
        )
    )
    script.append(keepalive_frame(request_id, input_tokens=input_tokens, output_tokens=used))
    return script


def research_script(
    report_chunks: list[str],
    references: list[dict[str, Any]],
    *,
    rounds: int = 2,
    sites_per_round: int = 3,
    pause: float = 0.0,
    snapshot: bool = False,
    request_id: str = "req-research",
    input_tokens: int = 900,
) -> Script:
    """Step 2 of deep research: planning, ``rounds`` web searches, then the report.

    ``snapshot=True`` mimics qwen-deep-research-2025-12-15, which reports research progress
    with ``streamingThinking`` instead of ``streamingQueries``/``streamingWebResult``.
    """
    frames: list[Frame] = []
    used = 0

    def add(
        phase: str,
        status: str,
        content: str = "",
        research: dict[str, Any] | None = None,
        refs: list[dict[str, Any]] | None = None,
    ) -> None:
        nonlocal used
        used += _tokens(content)
        frames.append(
            research_frame(
                phase,
                status,
                content,
                research=research,
                references=refs,
                input_tokens=input_tokens,
                output_tokens=used,
                request_id=request_id,
            )
        )

    def keepalive() -> None:
        frames.append(keepalive_frame(request_id, input_tokens=input_tokens, output_tokens=used))

    for piece in ("This study focuses on ", "the evidence behind the question."):
        add("ResearchPlanning", "typing", piece)
    add("ResearchPlanning", "finished")
    keepalive()

    for i in range(1, rounds + 1):
        goal = {"id": i, "query": "", "researchGoal": f"Goal {i}"}
        sites = {
            "id": i,
            "webSites": [
                {
                    "title": f"Source {i}.{j}",
                    "url": f"https://example.com/round{i}/site{j}",
                    "description": f"Search result {j} of round {i}.",
                    "favicon": "https://example.com/favicon.ico",
                }
                for j in range(1, sites_per_round + 1)
            ],
        }
        add("WebResearch", "streamingThinking" if snapshot else "streamingQueries", research=goal)
        keepalive()
        add(
            "WebResearch", "streamingThinking" if snapshot else "streamingWebResult", research=sites
        )
        add("WebResearch", "WebResultFinished", research={"id": i})
    add("WebResearch", "finished")

    for n, chunk in enumerate(report_chunks):
        add("answer", "typing", chunk, refs=references if n == 0 else None)
    # With no report text the references would otherwise be lost; put them on the last frame.
    add("answer", "finished", refs=None if report_chunks else references)

    script: Script = []
    for frame in frames:
        if script and pause > 0:
            script.append(Pause(pause))
        script.append(frame)
    return script


def thinking_script(
    reasoning_chunks: list[str],
    answer_chunks: list[str],
    *,
    request_id: str = "req-think",
    reasoning_tokens: bool = True,
    input_tokens: int = 11,
) -> Script:
    """A thinking model: reasoning_content frames, then content frames, then "stop"."""
    script: Script = []
    used = 0
    reasoned = 0

    def add(reasoning: str = "", content: str = "", finish_reason: str = "null") -> None:
        script.append(
            thinking_frame(
                reasoning,
                content,
                finish_reason,
                input_tokens=input_tokens,
                output_tokens=used,
                reasoning_tokens=reasoned if reasoning_tokens else None,
                request_id=request_id,
            )
        )

    for piece in reasoning_chunks:
        used += _tokens(piece)
        reasoned += _tokens(piece)
        add(reasoning=piece)
    for piece in answer_chunks:
        used += _tokens(piece)
        add(content=piece)
    add(finish_reason="stop")
    return script
