"""Shared pieces of the benchmarks: the fakes, the real bot (here or in its own process), and
delivering Slack events with the ack latency measured the way Slack would see it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import io
import logging
import math
import multiprocessing
import os
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
from bot.front import new_event_loop
from bot.runtime import EVENTS_PATH
from tests.conftest import SIGNING_SECRET, bot_settings, start_bot
from tests.fakes.dashscope_server import (
    SSE_CONTENT_TYPE,
    FakeDashScope,
    Frame,
    Gate,
    Pause,
    Script,
    _ClientGone,
    _sse,
    thinking_script,
)
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
    # BENCH_LOG_LEVEL=INFO follows each run through the bot's log (to find where one went).
    level = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="  [log %(levelname)s %(name)s] %(message)s")


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


class BurstDashScope(CountingDashScope):
    """CountingDashScope that writes the frames between two pauses or gates as one write of
    bytes rendered once per script frame, instead of one json.dumps and one write per frame.

    The fake runs in the benchmark's own process, beside the load driver that times the acks:
    writing hundreds of thousands of frames one by one kept that loop so busy that an ack was
    timed late by the driver itself, not by the bot (the bytes on the wire are the same)."""

    def __init__(self) -> None:
        super().__init__()
        self._rendered: dict[tuple[int, int], bytes] = {}

    async def _play(
        self, request: web.Request, script: Script, incremental: bool
    ) -> web.StreamResponse:
        if not incremental or not all(isinstance(s, Frame | Pause | Gate) for s in script):
            return await super()._play(request, script, incremental)
        self.active += 1
        resp = web.StreamResponse(status=200)
        resp.headers["Content-Type"] = SSE_CONTENT_TYPE
        resp.headers["Cache-Control"] = "no-cache"
        burst: list[bytes] = []
        n = 0
        try:
            await resp.prepare(request)
            for step in script:
                if isinstance(step, Frame):
                    n += 1
                    key = (id(step), n)
                    if key not in self._rendered:
                        self._rendered[key] = _sse(n, step.event, step.http_status, step.data)
                    burst.append(self._rendered[key])
                    continue
                if burst:
                    await resp.write(b"".join(burst))
                    burst.clear()
                if isinstance(step, Pause):
                    await self._idle(request, None, step.seconds)
                elif isinstance(step, Gate):
                    step._reached.set()
                    if not await self._idle(request, step._released, step.timeout):
                        break
            if burst:
                await resp.write(b"".join(burst))
            await resp.write_eof()
            self.frames_sent += n
        except (_ClientGone, ConnectionResetError):
            self.disconnects += 1
        finally:
            self.active -= 1
        return resp


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


# (monotonic time a tick was due, seconds it came late) of the bot's loop ticker.
LoopLag = tuple[float, float]


class LoopTicker:
    """A task on the bot's event loop that asks to wake every `every` seconds and records how
    late it woke: the longest lateness is the longest the loop was busy with something else."""

    def __init__(self, every: float = 0.01) -> None:
        self.every = every
        self.samples: list[LoopLag] = []
        self._task: asyncio.Task[None] | None = None

        self.gc_pauses: list[tuple[float, int, float]] = []  # (monotonic end, generation, s)
        self._gc_started = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench loop ticker")
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        """Times the garbage collector's passes: a stall may be the collector, not the bot."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif info["generation"] == 2 or time.perf_counter() - self._gc_started > 0.005:
            spent = time.perf_counter() - self._gc_started
            self.gc_pauses.append((time.monotonic(), info["generation"], spent))

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + self.every
            await asyncio.sleep(self.every)
            self.samples.append((due, time.monotonic() - due))

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._gc)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class SlowIterations:
    """A diagnostic, on with BENCH_SLOW_ITERATIONS_MS=N: every turn of the bot's event loop
    whose callbacks took more than N ms together is printed (stderr, at the end) with how many
    callbacks ran, the slowest ones, and where the main thread was when a 2 ms CPU-time
    sampler (SIGPROF) looked during that turn: what a long loop stall was made of. The bot
    then runs on asyncio's own loop (uvloop's turns cannot be timed from Python)."""

    def __init__(self, threshold_ms: float) -> None:
        self.threshold = threshold_ms / 1000
        self.turns: list[tuple[float, float, int, list[tuple[float, str]], list[str]]] = []
        self._spent = 0.0
        self._count = 0
        self._slowest: list[tuple[float, str]] = []
        self._samples: collections.deque[tuple[float, str]] = collections.deque(maxlen=5000)

    def _sample(self, signum: int, frame: Any) -> None:
        where: list[str] = []
        while frame is not None and len(where) < 14:
            code = frame.f_code
            if "site-packages" not in code.co_filename or len(where) < 3:
                where.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
            frame = frame.f_back
        self._samples.append((time.perf_counter(), " < ".join(where)))

    def install(self) -> None:
        import asyncio.base_events
        import asyncio.events
        import signal

        handle_run = asyncio.events.Handle._run
        run_once = asyncio.base_events.BaseEventLoop._run_once  # type: ignore[attr-defined]
        this = self

        def timed_run(handle: asyncio.events.Handle) -> None:
            started = time.perf_counter()
            handle_run(handle)
            spent = time.perf_counter() - started
            this._spent += spent
            this._count += 1
            if spent > 0.002:
                this._slowest.append((spent, _what_ran(handle)))

        def timed_turn(loop: asyncio.AbstractEventLoop) -> None:
            this._spent, this._count, this._slowest = 0.0, 0, []
            started = time.perf_counter()
            run_once(loop)
            if this._spent > this.threshold:
                top = sorted(this._slowest, reverse=True)[:4]
                samples = list(this._samples)  # one C call: no sample lands meanwhile
                seen = collections.Counter(w for t, w in samples if t >= started)
                where = [f"{n}x {w}" for w, n in seen.most_common(4)]
                this.turns.append((time.monotonic(), this._spent, this._count, top, where))

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        asyncio.base_events.BaseEventLoop._run_once = timed_turn  # type: ignore[attr-defined]
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, 0.002, 0.002)

    def report(self) -> None:
        for at, spent, count, top, where in self.turns:
            print(
                f"  [slow turn at {at:.1f}] {spent * 1000:.0f} ms, {count} callbacks",
                file=sys.stderr,
            )
            for took, what in top:
                print(f"      {took * 1000:.1f} ms {what}", file=sys.stderr)
            for line in where:
                print(f"      sampled {line}", file=sys.stderr)


def _what_ran(handle: asyncio.Handle) -> str:
    """A callback, named: for a task's step, the task's coroutine and where it waits now."""
    owner = getattr(getattr(handle, "_callback", None), "__self__", None)
    task = owner if isinstance(owner, asyncio.Task) else getattr(owner, "_task", None)
    if isinstance(task, asyncio.Task):
        frames = task.get_stack(limit=6)
        where = " < ".join(
            f"{Path(f.f_code.co_filename).name}:{f.f_lineno} {f.f_code.co_name}" for f in frames
        )
        return f"task {task.get_name()} {task.get_coro()!r:.80} waiting at {where}"
    return repr(handle)[:240]


def _rss_mib() -> float:
    """The peak resident memory of this process."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class BotHost(Protocol):
    port: int | None
    stream_spans: list[StreamSpan]
    loop_lag: list[LoopLag]
    gc_pauses: list[tuple[float, int, float]]
    rss_mib: float

    async def stop(self) -> None: ...


@dataclass
class _SameProcessBot:
    runtime: Any
    port: int | None
    ticker: LoopTicker
    stream_spans: list[StreamSpan] = field(default_factory=list)
    loop_lag: list[LoopLag] = field(default_factory=list)
    gc_pauses: list[tuple[float, int, float]] = field(default_factory=list)
    rss_mib: float = 0.0

    async def stop(self) -> None:
        await self.ticker.stop()
        self.gc_pauses = self.ticker.gc_pauses
        await self.runtime.stop()
        self.stream_spans = list(_STREAM_SPANS)
        self.loop_lag = self.ticker.samples
        self.rss_mib = _rss_mib()  # of everything in this process, the fakes included
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
    slow = SlowIterations(float(os.environ.get("BENCH_SLOW_ITERATIONS_MS") or 0))
    if slow.threshold:
        slow.install()

    async def main() -> LoopTicker:
        runtime = BotRuntime(
            settings, model_retry=RetryPolicy(attempts=3, max_seconds=10, wait=wait_none())
        )
        await runtime.start()
        ticker = LoopTicker()
        ticker.start()
        conn.send(runtime.http_port)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # any message means stop
        await ticker.stop()
        await runtime.stop()
        return ticker

    # The loop `python -m bot` runs on (uvloop); the diagnostic needs asyncio's own, whose
    # turns and callbacks it can time.
    factory = asyncio.new_event_loop if slow.threshold else new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        ticker = runner.run(main())
    if slow.threshold:
        slow.report()
    conn.send(
        {
            "spans": list(_STREAM_SPANS),
            "loop_lag": ticker.samples,
            "gc_pauses": ticker.gc_pauses,
            "rss_mib": _rss_mib(),
        }
    )


class _ChildProcessBot:
    """The real bot in a process of its own, so the fakes and the load driver (and their CPU
    time) are not on the bot's event loop, as with the real Slack and DashScope."""

    def __init__(self, spec: _BotSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_bot_process_main, args=(spec, child), daemon=True)
        self.port: int | None = None
        self.stream_spans: list[StreamSpan] = []
        self.loop_lag: list[LoopLag] = []
        self.gc_pauses: list[tuple[float, int, float]] = []
        self.rss_mib = 0.0

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
                found = await loop.run_in_executor(None, self._conn.recv)
                self.stream_spans = found["spans"]
                self.loop_lag = found["loop_lag"]
                self.gc_pauses = found["gc_pauses"]
                self.rss_mib = found["rss_mib"]
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
        ticker = LoopTicker()
        ticker.start()
        return _SameProcessBot(runtime, runtime.http_port, ticker)
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
