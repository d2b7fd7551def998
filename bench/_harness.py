"""Shared pieces of the benchmarks: the fakes, the real bot (here or in its own process), and
delivering Slack events with the ack latency measured the way Slack would see it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import multiprocessing
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, Protocol

import aiohttp
from aiohttp import web

from bot.config import Settings
from bot.runtime import EVENTS_PATH
from tests.conftest import SIGNING_SECRET, bot_settings, start_bot
from tests.fakes.dashscope_server import FakeDashScope, Frame, Script, thinking_script
from tests.fakes.slack_payloads import event_callback, post_signed
from tests.fakes.slack_server import FakeSlack

RESEARCH_MODEL = "qwen-deep-research"  # the bot's default RESEARCH_MODEL
Mode = Literal["http", "socket"]
Placement = Literal["same", "process"]


def configure_logging() -> None:
    """Warnings and errors only: the benchmark's own output is what matters (line-buffered,
    so progress shows when the output goes to a file or a pipe)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    logging.basicConfig(level=logging.WARNING, format="  [log %(levelname)s %(name)s] %(message)s")


# --------------------------------------------------------------------------- fake DashScope


class CountingDashScope(FakeDashScope):
    """FakeDashScope that also knows how many streams are open and how many frames it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0  # streams being written (a stream ends here before the bot has read it)
        self.frames_sent = 0
        self.arrivals: list[float] = []  # time.monotonic() of each request, in order

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(time.monotonic())
        # Calls to other models than deep research (follow-up answers to questions asked while
        # a run was busy) get a short thinking answer, so they never take a queued script.
        # The body is read here first; aiohttp caches it, so the base handler reads the same
        # bytes again without yielding, and pops this script before any other request can.
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            body = await request.json()
            if isinstance(body, dict) and body.get("model") not in (None, RESEARCH_MODEL):
                self._scripts.appendleft(thinking_script(["Thinking it over."], ["An answer."]))
        return await super()._handle(request)

    async def _play(
        self, request: web.Request, script: Script, incremental: bool
    ) -> web.StreamResponse:
        self.active += 1
        disconnects = self.disconnects
        try:
            return await super()._play(request, script, incremental)
        finally:
            self.active -= 1
            if self.disconnects == disconnects:  # played to the end
                self.frames_sent += sum(isinstance(step, Frame) for step in script)


# --------------------------------------------------------------------------- the bot

# (opened, ended, model, messages in the call) of every model stream the bot consumed, measured
# inside the bot's process with time.monotonic(), which on Linux is one clock for all processes.
StreamSpan = tuple[float, float, str, int]
_STREAM_SPANS: list[StreamSpan] = []


def instrument_model_streams() -> None:
    """Time each model stream where the bot reads it (observation only; nothing else changes).

    The fake's own view is no use here: it finishes writing a stream into the loopback socket
    buffers long before the bot has parsed it.
    """
    from bot.qwen.client import ModelCall, QwenClient

    original = QwenClient.stream
    if getattr(original, "_bench_wrapped", False):
        return

    async def stream(self: QwenClient, call: ModelCall) -> AsyncIterator[Any]:
        opened = time.monotonic()
        try:
            async for event in original(self, call):
                yield event
        finally:
            _STREAM_SPANS.append((opened, time.monotonic(), call.model, len(call.messages)))

    stream._bench_wrapped = True  # type: ignore[attr-defined]
    QwenClient.stream = stream  # type: ignore[method-assign]


class BotHost(Protocol):
    port: int | None
    stream_spans: list[StreamSpan]

    async def stop(self) -> None: ...


@dataclass
class _SameProcessBot:
    runtime: Any
    port: int | None
    stream_spans: list[StreamSpan] = field(default_factory=list)

    async def stop(self) -> None:
        await self.runtime.stop()
        self.stream_spans = list(_STREAM_SPANS)
        _STREAM_SPANS.clear()


@dataclass(frozen=True)
class _BotSpec:
    """What the child needs to build the same Settings as tests.conftest.bot_settings."""

    slack_api_url: str
    dashscope_base_url: str
    db: Path
    mode: Mode
    env: dict[str, str]

    def settings(self) -> Settings:
        slack = SimpleNamespace(api_url=self.slack_api_url)
        dashscope = SimpleNamespace(base_url=self.dashscope_base_url)
        return bot_settings(slack, dashscope, self.db, mode=self.mode, **self.env)  # type: ignore[arg-type]


def _bot_process_main(spec: _BotSpec, conn: Connection) -> None:
    """Child process: run the real bot until the parent says stop."""
    from tenacity import wait_none

    from bot.qwen.client import RetryPolicy
    from bot.runtime import BotRuntime

    configure_logging()
    instrument_model_streams()
    settings = spec.settings()

    async def main() -> None:
        runtime = BotRuntime(
            settings, model_retry=RetryPolicy(attempts=3, max_seconds=10, wait=wait_none())
        )
        await runtime.start()
        conn.send(runtime.http_port)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # any message means stop
        await runtime.stop()

    asyncio.run(main())
    conn.send(list(_STREAM_SPANS))


class _ChildProcessBot:
    """The real bot in a process of its own, so the fakes and the load driver (and their CPU
    time) are not on the bot's event loop, as with the real Slack and DashScope."""

    def __init__(self, spec: _BotSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_bot_process_main, args=(spec, child), daemon=True)
        self.port: int | None = None
        self.stream_spans: list[StreamSpan] = []

    async def start(self) -> None:
        self._proc.start()
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self._conn.poll, 60)
        if not ready:
            raise RuntimeError("the bot process did not start within 60 s")
        try:
            self.port = await loop.run_in_executor(None, self._conn.recv)
        except EOFError:
            raise RuntimeError("the bot process exited while starting (see above)") from None

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(BrokenPipeError, EOFError, OSError):
            self._conn.send("stop")
            if await loop.run_in_executor(None, self._conn.poll, 40):
                self.stream_spans = await loop.run_in_executor(None, self._conn.recv)
        await loop.run_in_executor(None, self._proc.join, 5)
        if self._proc.is_alive():
            self._proc.terminate()  # only this benchmark's own child
            await loop.run_in_executor(None, self._proc.join, 5)


async def start_real_bot(
    slack: FakeSlack,
    dashscope: FakeDashScope,
    tmp: Path,
    mode: Mode,
    placement: Placement,
    **env: str,
) -> BotHost:
    """Start the real bot (tests.conftest settings plus `env`) here or in a child process."""
    if placement == "same":
        instrument_model_streams()
        runtime = await start_bot(slack, dashscope, tmp, mode, **env)
        return _SameProcessBot(runtime, runtime.http_port)
    spec = _BotSpec(slack.api_url, dashscope.base_url, tmp / "bot.sqlite3", mode, dict(env))
    spec.settings()  # fail here, not in the child, if the settings are invalid
    host = _ChildProcessBot(spec)
    await host.start()
    if mode == "socket":
        await slack.wait_socket_connected(timeout=30)
    return host


# --------------------------------------------------------------------------- delivering events


class Deliverer:
    """Sends events the way Slack does and returns how long the bot took to acknowledge."""

    def __init__(
        self, mode: Mode, slack: FakeSlack, session: aiohttp.ClientSession, port: int | None
    ) -> None:
        self.mode = mode
        self._slack = slack
        self._session = session
        self._url = f"http://127.0.0.1:{port}{EVENTS_PATH}"

    async def event(self, event: dict[str, Any], *, team_id: str = "T1") -> float:
        payload = event_callback(event, team_id=team_id)
        if self.mode == "http":
            status, body, elapsed = await post_signed(
                self._session, self._url, SIGNING_SECRET, payload, kind="event"
            )
            if status != 200:
                raise RuntimeError(f"bot answered HTTP {status}: {body[:200]}")
            return elapsed
        ack = await self._slack.socket_send("events_api", payload, timeout=60)
        return float(ack["_elapsed"])


# --------------------------------------------------------------------------- figures


def is_research_step(span: StreamSpan) -> bool:
    """Step 2 of deep research (topic, question, reply), not a clarifying question or answer."""
    return span[2] == RESEARCH_MODEL and span[3] >= 3


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"n={len(values):3d}  p50={percentile(values, 50) * 1000:7.1f} ms  "
        f"p95={percentile(values, 95) * 1000:7.1f} ms  max={max(values) * 1000:7.1f} ms"
    )


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str | None) -> bool:
    """Poll `predicate` until true; False on timeout (noted unless `what` is None)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            if what is not None:
                print(f"  ! timed out after {timeout:.0f} s waiting for {what}")
            return False
        await asyncio.sleep(0.05)
    return True
