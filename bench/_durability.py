"""Shared pieces of the durability benchmarks (issue 14): a fake DashScope that picks each
request's script from what it asks and keeps a ledger of what it sent, a fake Slack with hooks,
real `python -m bot` processes, and the accounting of what every thread got.

Everything here lives in bench/: the fakes in tests/fakes/ are subclassed, never edited.

Conversation ids are written into what the user types, so every model request and every Slack
post can be traced back to its conversation and step:

    topic     "conv-0007 research the use of AI in education"
    question  "clarify-0007: Which aspects matter most ...?"   (the model's clarifying question)
    report    "# REPORT-0007 AI in education" ...              (its title heads the summary)
    asked     "q-0007-1 which source is newest?"               (a question asked during research)
    answer    "answer-0007-1: ..."                             (the follow-up answer)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from handlers.render import RETRY_ACTION, STOP_ACTION
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    Frame,
    Pause,
    Script,
    _check_connected,
    _ClientGone,
    clarification_script,
    research_script,
    thinking_script,
)
from tests.fakes.slack_server import FakeSlack

REPO = Path(__file__).resolve().parent.parent
RESEARCH_MODEL = "qwen-deep-research"  # the bot's default RESEARCH_MODEL
SERVED_KEY = "bench_served"

_CONV = re.compile(r"\bconv-(\d{4})\b")
_ASKED = re.compile(r"\bq-(\d{4})-(\d+)\b")


def topic(conv: int) -> str:
    return f"conv-{conv:04d} research the use of AI in education"


def clarifying_question(conv: int) -> str:
    return (
        f"clarify-{conv:04d}: Which aspects matter most to you: personalised learning, "
        "assessment, or teacher workload?"
    )


def clarify_marker(conv: int) -> str:
    return f"clarify-{conv:04d}"


def report_marker(conv: int) -> str:
    return f"REPORT-{conv:04d}"


def asked(conv: int, n: int) -> str:
    return f"q-{conv:04d}-{n} which source is newest?"


def answer_marker(conv: int, n: int) -> str:
    return f"answer-{conv:04d}-{n}"


# --------------------------------------------------------------------------- hooks


class Triggers:
    """Named moments (a request arrived, a last frame was written, an upload began...) that a
    killer can wait for: `arm(name)` returns a future set by the next `fire(name, detail)`."""

    def __init__(self) -> None:
        self._armed: dict[str, list[asyncio.Future[str]]] = defaultdict(list)
        self.listeners: list[Callable[[str, str], None]] = []

    def arm(self, name: str) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._armed[name].append(future)
        return future

    def fire(self, name: str, detail: str = "") -> None:
        for listener in self.listeners:
            listener(name, detail)
        for future in self._armed.pop(name, []):
            if not future.done():
                future.set_result(detail)


# --------------------------------------------------------------------------- fake DashScope


@dataclass
class Served:
    """One request the fake DashScope played, as the fake saw it."""

    index: int
    conv: int
    kind: str  # clarify | research | answer | unknown
    request_id: str
    arrived: float  # time.monotonic()
    expected: tuple[int, int, int]  # final (input, output, reasoning) tokens of its script
    asked_no: int = 0  # answer: which question
    frames_sent: int = 0
    first_usage_at: float | None = None
    last_usage: tuple[int, int, int] = (0, 0, 0)
    ended: float | None = None
    completed: bool = False  # every frame written and the stream closed
    where: str = "arrived"  # what the fake was doing for it last (for streams left open)
    cut: bool = False  # the client went away before the end


def _usage_of(data: dict[str, Any]) -> tuple[int, int, int] | None:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("output_tokens_details") or {}
    return (
        int(usage.get("input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
        int(details.get("reasoning_tokens") or 0),
    )


def _expected(script: Script) -> tuple[int, int, int]:
    figures = [u for s in script if isinstance(s, Frame) and (u := _usage_of(s.data))]
    return max(figures) if figures else (0, 0, 0)


def _paced(script: Script, seconds: float, rng: random.Random) -> Script:
    """`script` with pauses between its frames adding up to about `seconds`."""
    frames = [s for s in script if isinstance(s, Frame)]
    if len(frames) < 2:
        return script
    weights = [rng.uniform(0.5, 1.5) for _ in frames[1:]]
    scale = seconds / sum(weights)
    out: Script = [frames[0]]
    for frame, weight in zip(frames[1:], weights, strict=True):
        out += [Pause(weight * scale), frame]
    return out


@dataclass(frozen=True)
class Pacing:
    """How long each kind of model call streams (uniform between the bounds, seconds)."""

    clarify: tuple[float, float] = (0.2, 0.6)
    research: tuple[float, float] = (0.5, 1.2)
    answer: tuple[float, float] = (0.15, 0.4)


def script_for(
    conv: int, kind: str, asked_no: int, request_id: str, pacing: Pacing, rng: random.Random
) -> Script:
    """The deterministic script of one step; only its pauses vary. Token figures depend on the
    conversation and the step alone, so what the ledger should hold is known exactly."""
    if kind == "clarify":
        script = clarification_script(
            clarifying_question(conv), chunks=4, request_id=request_id, input_tokens=100 + conv
        )
        return _paced(script, rng.uniform(*pacing.clarify), rng)
    if kind == "research":
        report = [
            f"# {report_marker(conv)} AI in education\n\n",
            f"Adaptive tutoring raises outcomes in study {conv} [1]. ",
            "Automated assessment saves teachers time [2].\n\n",
            "## Policy\n\nGuidance lags practice [3].\n",
        ]
        script = research_script(
            report, DEFAULT_REFERENCES, rounds=2, request_id=request_id, input_tokens=1000 + conv
        )
        return _paced(script, rng.uniform(*pacing.research), rng)
    if kind == "answer":
        script = thinking_script(
            [f"Checking the sources for conversation {conv}."],
            [f"{answer_marker(conv, asked_no)}: source 1.1 is the newest."],
            request_id=request_id,
            input_tokens=10 + conv,
        )
        return _paced(script, rng.uniform(*pacing.answer), rng)
    return thinking_script(["?"], ["I cannot tell what was asked."], request_id=request_id)


def classify(body: dict[str, Any]) -> tuple[int, str, int]:
    """(conversation, step kind, question number) of a request body; (-1, "unknown", 0)."""
    messages = (body.get("input") or {}).get("messages") or []
    if not messages:
        return -1, "unknown", 0
    if body.get("model") == RESEARCH_MODEL:
        match = _CONV.search(json.dumps(messages[0], ensure_ascii=False))
        conv = int(match.group(1)) if match else -1
        return conv, ("clarify" if len(messages) == 1 else "research"), 0
    last = json.dumps(messages[-1], ensure_ascii=False)
    match = _ASKED.search(last)
    if match:
        return int(match.group(1)), "answer", int(match.group(2))
    match = _CONV.search(json.dumps(messages, ensure_ascii=False))
    return (int(match.group(1)) if match else -1), "answer", 0


class ScriptedDashScope(FakeDashScope):
    """FakeDashScope that builds each request's script from the request itself (so a step
    asked again after a crash gets its script, whatever order requests come in), gives every
    request its own request_id, and records what it wrote: frames, the last usage figures, and
    whether the stream was cut."""

    def __init__(self, seed: int, pacing: Pacing, triggers: Triggers) -> None:
        super().__init__()
        self.served: list[Served] = []
        self._seed = seed
        self._pacing = pacing
        self._triggers = triggers
        self.open: dict[int, Served] = {}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            body = await request.json()
            if isinstance(body, dict):
                conv, kind, asked_no = classify(body)
                index = len(self.served)
                request_id = f"bench-{index:05d}-{kind}-{conv:04d}"
                rng = random.Random(f"{self._seed}:{index}")
                script = script_for(conv, kind, asked_no, request_id, self._pacing, rng)
                served = Served(
                    index=index,
                    conv=conv,
                    kind=kind,
                    request_id=request_id,
                    arrived=time.monotonic(),
                    expected=_expected(script),
                    asked_no=asked_no,
                )
                self.served.append(served)
                request[SERVED_KEY] = served
                # The base handler reads the (cached) body again without yielding and pops
                # this script before any other request can run.
                self._scripts.appendleft(script)
                self._triggers.fire(f"{kind}-start", str(conv))
        return await super()._handle(request)

    async def _play(
        self, request: web.Request, script: Script, incremental: bool
    ) -> web.StreamResponse:
        served: Served | None = request.get(SERVED_KEY)
        if served is None or not incremental:
            return await super()._play(request, script, incremental)
        self.open[served.index] = served
        resp = web.StreamResponse(status=200)
        resp.headers["Content-Type"] = "text/event-stream;charset=UTF-8"
        resp.headers["Cache-Control"] = "no-cache"
        frames = [s for s in script if isinstance(s, Frame)]
        try:
            _check_connected(request)
            served.where = "prepare"
            await resp.prepare(request)
            for number, step in enumerate(script):
                served.where = f"step {number} of {len(script)} ({type(step).__name__})"
                if self._stopping.is_set():
                    break
                if isinstance(step, Frame):
                    _check_connected(request)
                    served.frames_sent += 1
                    await resp.write(_sse(served.frames_sent, step.event, step.data))
                    usage = _usage_of(step.data)
                    if usage is not None:
                        served.last_usage = max(served.last_usage, usage)
                        if served.first_usage_at is None:
                            served.first_usage_at = time.monotonic()
                    if served.frames_sent == len(frames):
                        self._triggers.fire(f"{served.kind}-end", str(served.conv))
                elif isinstance(step, Pause):
                    await self._idle(request, None, step.seconds)
            served.where = "write_eof"
            await resp.write_eof()
            served.where = "done"
            served.completed = served.frames_sent == len(frames)
        except (ConnectionResetError, _ClientGone):
            # Gone after the last frame (the bot hung up once it had read it all) is a
            # complete stream; before it, a cut one.
            served.completed = served.frames_sent == len(frames)
            served.cut = not served.completed
            self.disconnects += 1
        except asyncio.CancelledError:
            served.completed = served.frames_sent == len(frames)
            served.cut = not served.completed
            raise
        finally:
            served.ended = time.monotonic()
            self.open.pop(served.index, None)
        return resp


def _sse(event_id: int, event: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id:{event_id}\nevent:{event}\n:HTTP_STATUS/200\ndata:{payload}\n\n".encode()


# --------------------------------------------------------------------------- fake Slack


class HookedSlack(FakeSlack):
    """FakeSlack that fires a trigger for each Web API call before answering it (so a kill can
    land between Slack's success and the bot hearing of it) and counts Socket Mode connects."""

    def __init__(self, triggers: Triggers) -> None:
        super().__init__()
        self._triggers = triggers
        self.connects = 0
        self.thread_activity: dict[str, float] = {}

    def _dispatch(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        thread = args.get("thread_ts")
        if thread:
            self.thread_activity[str(thread)] = time.monotonic()
        self._triggers.fire(f"slack:{method}", str(thread or ""))
        return super()._dispatch(method, args, token)

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        self.connects += 1
        return await super()._handle_socket(request)

    @property
    def socket_count(self) -> int:
        return len(self._sockets)


# --------------------------------------------------------------------------- bot processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotProcess:
    """A real `python -m bot` (its stderr to a log file)."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.env = env
        self.log = log
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0

    async def start(self) -> None:
        with self.log.open("ab") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                *self.args,
                cwd=REPO,
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else -1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()

    async def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return None

    async def terminate(self, timeout: float = 40.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if not self.alive:
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = await self.wait(timeout)
        if code is None:
            self.kill()
            code = await self.wait(10)
        return code


def base_env(tmp: Path, slack: FakeSlack, dashscope: FakeDashScope, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": slack.api_url,
        "DASHSCOPE_API_KEY": "sk-test",
        "DASHSCOPE_HTTP_BASE_URL": dashscope.base_url,
        "PROGRESS_UPDATE_SECONDS": "0.5",
        "DRAIN_SECONDS": "0",
        **extra,
    }


def log_findings(logs: Iterable[Path], limit: int = 12) -> list[str]:
    """The bot's ERROR/CRITICAL lines and exception lines, grouped (most frequent first)."""
    counts: Counter[str] = Counter()
    first_seen: dict[str, str] = {}
    for path in logs:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if " ERROR " in line or " CRITICAL " in line:
                    message = line.split(" ERROR ", 1)[-1].split(" CRITICAL ", 1)[-1]
                elif re.match(r"^[A-Za-z_.]+(Error|Exception)\b", line):
                    message = "exception: " + line
                else:
                    continue
                shape = re.sub(r"\d{4,}(\.\d+)?|[0-9a-f]{8,}", "#", message)[:160]
                counts[shape] += 1
                first_seen.setdefault(shape, f"{path.name}: {line[:300]}")
    return [f"{n:4d} x {first_seen[s]}" for s, n in counts.most_common(limit)]


# --------------------------------------------------------------------------- what a thread got


def _flat(call_args: dict[str, Any]) -> str:
    return f"{call_args.get('text', '')} {json.dumps(call_args.get('blocks') or [])}"


@dataclass
class ThreadRecord:
    thread: str
    posts: list[tuple[float, str]] = field(default_factory=list)  # (time, text + blocks)
    uploads: list[tuple[float, str]] = field(default_factory=list)  # (time, title)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (time, "method: error")
    last_at: float = 0.0

    def count(self, phrase: str) -> int:
        return sum(phrase in text for _, text in self.posts)

    def first(self, phrase: str, after: float = 0.0) -> float | None:
        return next((t for t, text in self.posts if phrase in text and t >= after), None)

    @property
    def retry_notices(self) -> int:
        return sum(RETRY_ACTION in text for _, text in self.posts)

    @property
    def last_post(self) -> str:
        return self.posts[-1][1] if self.posts else ""


class ThreadIndex:
    """What each thread got from the bot (successful chat.postMessage calls, streamed
    messages once stopped, and completed uploads in it), read from the fake Slack's record
    incrementally."""

    def __init__(self, slack: FakeSlack) -> None:
        self._slack = slack
        self._consumed = 0
        self.records: dict[str, ThreadRecord] = {}

    def get(self, thread: str) -> ThreadRecord:
        self.update()
        return self.records.setdefault(thread, ThreadRecord(thread))

    def update(self) -> None:
        calls = self._slack.calls
        for call in calls[self._consumed :]:
            if call.error is not None:
                thread = call.args.get("thread_ts")
                if thread:
                    record = self.records.setdefault(str(thread), ThreadRecord(str(thread)))
                    record.failures.append((call.at, f"{call.method} refused: {call.error}"))
                continue
            if call.method == "chat.postMessage" and call.args.get("thread_ts"):
                record = self.records.setdefault(
                    str(call.args["thread_ts"]), ThreadRecord(str(call.args["thread_ts"]))
                )
                record.posts.append((call.at, _flat(call.args)))
                record.last_at = call.at
            elif call.method == "chat.stopStream":
                # An answer streamed into the thread (chat.startStream ... stopStream): whole
                # once its stream is stopped, as a person sees it.
                message = self._slack.messages.get(str(call.args.get("ts") or "")) or {}
                thread = message.get("thread_ts")
                if thread:
                    record = self.records.setdefault(str(thread), ThreadRecord(str(thread)))
                    record.posts.append((call.at, _flat({**call.args, **message})))
                    record.last_at = call.at
            elif call.method == "files.completeUploadExternal" and call.args.get("thread_ts"):
                record = self.records.setdefault(
                    str(call.args["thread_ts"]), ThreadRecord(str(call.args["thread_ts"]))
                )
                files = call.args.get("files") or [{}]
                title = str(files[0].get("title", "")) if isinstance(files[0], dict) else ""
                record.uploads.append((call.at, title))
                record.last_at = call.at
        self._consumed = len(calls)


# A user who sees a Retry button presses it, this many times at most.
MAX_RETRY_CLICKS: Final = 3


async def await_report(
    conv: Conv,
    thread: ThreadRecord,
    wait_for: Callable[[Conv, Any, str], Awaitable[bool]],
    click_retry: Callable[[Conv], Awaitable[None]],
    rng: random.Random,
    *,
    retry_wait: float,
    pause: tuple[float, float],
) -> None:
    """Wait for the thread's report as its user would: a Retry notice is answered by pressing
    Retry (after a pause drawn from `pause`), a press with no result in `retry_wait` s too."""
    seen = thread.retry_notices
    clicked_at: float | None = None
    while True:
        ok = await wait_for(
            conv,
            lambda seen=seen, clicked_at=clicked_at: (
                bool(thread.uploads)
                or thread.retry_notices > seen
                or (clicked_at is not None and time.monotonic() - clicked_at > retry_wait)
            ),
            "report",
        )
        if not ok or thread.uploads:
            return
        if conv.retry_clicks >= MAX_RETRY_CLICKS:
            conv.gave_up = f"report (after {conv.retry_clicks} Retry presses)"
            return
        seen = thread.retry_notices
        await asyncio.sleep(rng.uniform(*pause))
        await click_retry(conv)
        clicked_at = time.monotonic()


def progress_left_live(slack: FakeSlack) -> tuple[int, int]:
    """Progress messages still showing a Stop button: (the latest of its thread, older ones
    of the same thread, left behind by a run that was cut and started again)."""
    by_thread: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for m in slack.messages.values():
        blocks = json.dumps(m.get("blocks") or [])
        text = str(m.get("text", ""))
        if m.get("thread_ts") and (
            STOP_ACTION in blocks or ("found" in text and "elapsed" in text)
        ):
            by_thread[str(m.get("thread_ts"))].append((str(m["ts"]), STOP_ACTION in blocks))
    latest = older = 0
    for messages in by_thread.values():
        messages.sort()
        latest += messages[-1][1]
        older += sum(live for _, live in messages[:-1])
    return latest, older


# --------------------------------------------------------------------------- usage ledger


@dataclass(frozen=True)
class LedgerRow:
    thread_ts: str
    kind: str
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    request_id: str
    call_id: str | None


@dataclass
class UsageCheck:
    calls_with_usage: int = 0
    exact: int = 0
    short_cut: int = 0  # recorded less than the fake wrote, and a process died meanwhile
    short_tokens: int = 0
    short_by_bot: Counter[str] = field(default_factory=Counter)  # closed by the bot itself
    short_unexplained: list[str] = field(default_factory=list)
    over: list[str] = field(default_factory=list)
    lost_before_flush: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # only in inflight_usage, not the ledger
    doubled: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)
    # Rows with no request id: the prompt's token count, written as the request went out, of
    # calls cut before their first figures were written (`MeteredCall.sending`).
    estimated: int = 0  # ... for a request that had streamed usage the bot never wrote
    estimated_silent: int = 0  # ... for a request cut before the fake wrote any usage
    estimated_unsent: int = 0  # ... for a request that never reached the fake (cut as sent)
    rows: int = 0
    inflight_rows: int = 0
    lost_tokens: int = 0

    @property
    def lost_count(self) -> int:
        return len(self.lost_before_flush) + len(self.lost)

    @property
    def doubled_count(self) -> int:
        return len(self.doubled) + len(self.phantom) + len(self.over)

    def lines(self) -> list[str]:
        return [
            f"model calls that streamed usage: {self.calls_with_usage}; ledger rows: {self.rows}; "
            f"rows left in inflight_usage: {self.inflight_rows}",
            f"  recorded exactly (the script's final figures): {self.exact}",
            f"  cut when a process died, recorded from their last flushed figures: "
            f"{self.short_cut} ({self.short_tokens:,} tokens the fake wrote after the last flush)",
            "  closed early by the bot itself (no process died), recorded as far as read: "
            + (", ".join(f"{n} {k}" for k, n in sorted(self.short_by_bot.items())) or "0"),
            "  only in inflight_usage (moved to the ledger by the next start): "
            f"{len(self.pending)}",
            f"  cut before their first figures were written, recorded from the prompt's token "
            f"count: {self.estimated} (and {self.estimated_silent} cut before the model sent "
            f"any figures; {self.estimated_unsent} cut as they were sent, before the model "
            "received them: an over-estimate)",
            f"  lost: {self.lost_count} ({len(self.lost_before_flush)} cut before their first "
            f"flush, {len(self.lost)} otherwise; {self.lost_tokens:,} tokens written to them)",
            f"  double-counted: {len(self.doubled)}; rows with no request: {len(self.phantom)}; "
            f"recorded more than sent: {len(self.over)}; short for no reason found: "
            f"{len(self.short_unexplained)}",
        ]


def _tokens(u: tuple[int, int, int]) -> int:
    return u[0] + u[1]


# The fake notices a dead client within its 20 ms polling; a stream cut later than this after
# a death was closed by the bot itself.
CUT_NOTICE: Final = 0.1


def death_during(s: Served, deaths: Sequence[float], lag: float = 1.0) -> float | None:
    """The death that cut `s`: before its stream was seen cut, or (for a stream the fake
    finished writing) within `lag` s after, while the bot was still reading it."""
    ended = s.ended if s.ended is not None else time.monotonic()
    until = ended + (CUT_NOTICE if s.cut else lag)
    # A request sent just before its process died may arrive just after the death.
    return next((d for d in deaths if s.arrived - CUT_NOTICE <= d <= until), None)


def check_usage(
    served: Sequence[Served],
    rows: Sequence[LedgerRow],
    deaths: Sequence[float],
    flush_seconds: float,
    inflight: Sequence[LedgerRow] = (),
    lag: float = 1.0,
    threads: Mapping[int, str] | None = None,
) -> UsageCheck:
    """Compare each request the fake served with the ledger rows carrying its request_id.

    `deaths` are the monotonic times processes died (SIGKILL; SIGTERM for the fleet); a call
    was cut by one if it fell between its arrival and `lag` s after its last frame was written
    (the bot reads frames a little after the fake writes them). `threads` maps a conversation
    number to its thread, to match rows without a request id (prompt estimates) to requests."""
    check = UsageCheck(rows=len(rows), inflight_rows=len(inflight))
    by_request: dict[str, list[LedgerRow]] = defaultdict(list)
    estimates: Counter[tuple[str, str]] = Counter()
    for row in rows:
        if row.request_id == "" and threads is not None:
            estimates[(row.thread_ts, row.kind)] += 1
        else:
            by_request[row.request_id].append(row)
    in_flight = {row.request_id for row in inflight}
    known = {s.request_id for s in served}
    for row in rows:
        if row.request_id not in known and (row.request_id or threads is None):
            check.phantom.append(f"{row.kind} row of {row.thread_ts} ({row.request_id!r})")

    def estimated(s: Served) -> bool:
        where = (threads.get(s.conv, "") if threads else "", s.kind)
        if estimates[where] > 0:
            estimates[where] -= 1
            return True
        return False

    for s in served:
        if s.first_usage_at is None:
            continue
        check.calls_with_usage += 1
        death = death_during(s, deaths, lag)
        found = by_request.get(s.request_id, [])
        name = f"{s.kind} of conv-{s.conv:04d} ({s.request_id})"
        if not found:
            if s.request_id in in_flight:
                check.pending.append(name)
                continue
            if estimated(s):
                check.estimated += 1
                continue
            check.lost_tokens += _tokens(s.last_usage)
            if death is not None and death - s.first_usage_at <= flush_seconds + 0.25:
                check.lost_before_flush.append(
                    f"{name}: its process died {death - s.first_usage_at:.2f} s after the "
                    "first usage frame was written"
                )
            elif death is None and s.cut:
                check.lost.append(
                    f"{name}: the bot closed the stream itself (no process died) before it "
                    f"recorded any usage; the fake had written {s.last_usage}"
                )
            else:
                how = "completed" if s.completed else ("cut" if s.cut else "still open")
                check.lost.append(
                    f"{name}: {how}, last usage written {s.last_usage}; "
                    + (
                        f"its process died {death - s.first_usage_at:.2f} s after the first "
                        "usage frame"
                        if death is not None
                        else "no process died meanwhile"
                    )
                )
            continue
        if len(found) > 1:
            check.doubled.append(f"{name}: {len(found)} rows")
        row = found[0]
        figures = (row.input_tokens, row.output_tokens, row.reasoning_tokens)
        if figures == s.expected:
            check.exact += 1
        elif _tokens(figures) > _tokens(s.last_usage):
            check.over.append(f"{name}: recorded {figures}, wrote at most {s.last_usage}")
        elif death is not None:
            check.short_cut += 1
            check.short_tokens += _tokens(s.last_usage) - _tokens(figures)
        elif s.cut:
            check.short_by_bot[s.kind] += 1
        else:
            check.short_unexplained.append(
                f"{name}: recorded {figures}, script's final {s.expected}, wrote {s.last_usage}"
            )
    # Estimates left: requests cut before the model wrote any figures (charged their prompt
    # all the same), or cut between the estimate's write and the request going out.
    silent = Counter(
        (threads.get(s.conv, "") if threads else "", s.kind)
        for s in served
        if s.first_usage_at is None
    )
    for where, n in estimates.items():
        matched = min(n, silent[where])
        check.estimated_silent += matched
        check.estimated_unsent += n - matched
    return check


def step_counts(
    served: Sequence[Served], deaths: Sequence[float], lag: float = 1.0
) -> tuple[Counter[str], Counter[str], Counter[str], list[str]]:
    """Requests beyond the first per (conversation, step), by cause:

    - forced: a process died while the previous request streamed (or within `lag` s after it
      was written, before the bot could act on it), or between the two;
    - after the bot's own cut: the previous stream was closed by the bot itself, no process
      died during it;
    - duplicate: the previous request was still streaming, or had completed and no process
      died since."""
    forced: Counter[str] = Counter()
    self_cut: Counter[str] = Counter()
    duplicate: Counter[str] = Counter()
    details: list[str] = []
    by_step: dict[tuple[int, str, int], list[Served]] = defaultdict(list)
    for s in served:
        by_step[(s.conv, s.kind, s.asked_no)].append(s)
    for (conv, kind, asked_no), requests in by_step.items():
        requests.sort(key=lambda s: s.arrived)
        for previous, s in itertools.pairwise(requests):
            overlapping = previous.ended is None or previous.ended > s.arrived
            died_during = death_during(previous, deaths, lag) is not None
            died_between = any(previous.arrived <= d <= s.arrived for d in deaths)
            step = f"{kind} of conv-{conv:04d}" + (f" question {asked_no}" if asked_no else "")
            if overlapping:
                duplicate[kind] += 1
                details.append(f"{step}: requested again while the previous was still streaming")
            elif died_during:
                forced[kind] += 1
            elif previous.cut:
                self_cut[kind] += 1
            elif died_between:
                forced[kind] += 1
            else:
                duplicate[kind] += 1
                details.append(
                    f"{step}: requested again after the previous completed, no process died"
                )
    return forced, self_cut, duplicate, details


# --------------------------------------------------------------------------- conversations

KEPT_NOTICE = "once the report is in"
RESUMING = "running it again from the start"


@dataclass
class Conv:
    """One research conversation as its user lived it."""

    conv: int
    thread: str = ""
    user: str = ""
    mention_acked: bool = False
    answered_at: float | None = None
    asked: list[int] = field(default_factory=list)
    retry_clicks: int = 0
    gave_up: str | None = None  # the driver stopped waiting, at this step
    started: float = 0.0
    actions: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Outcomes:
    """What each conversation got, against what it was owed."""

    acked: int = 0
    answered: int = 0
    asked: int = 0
    resuming_notices: int = 0
    queued_notices: int = 0  # "Your research is queued: it is Nth in line" (admission)
    queued_zeroth: int = 0  # ... "0th in line"
    no_question: list[Conv] = field(default_factory=list)
    no_final: list[Conv] = field(default_factory=list)
    report_missing: list[Conv] = field(default_factory=list)
    ended_on_retry: list[Conv] = field(default_factory=list)
    report_dup: list[Conv] = field(default_factory=list)
    summary_missing: list[Conv] = field(default_factory=list)
    question_dup: list[Conv] = field(default_factory=list)
    unanswered: list[Conv] = field(default_factory=list)
    answered_twice: list[Conv] = field(default_factory=list)
    not_answered_by_user: list[Conv] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.no_question) + len(self.no_final)


def outcomes(index: ThreadIndex, convs: Iterable[Conv]) -> Outcomes:
    """A conversation is lost if its mention was acknowledged and it never got its clarifying
    question, or its user answered and the thread reached no final state with a message (no
    report, and its last message is not a notice with Retry). An answered thread without an
    upload misses its report; more than one upload or summary is a duplicate."""
    index.update()
    out = Outcomes()
    for conv in convs:
        if not conv.mention_acked:
            continue
        out.acked += 1
        record = index.get(conv.thread)
        out.resuming_notices += record.count(RESUMING)
        out.queued_notices += record.count("in line for this workspace")
        out.queued_zeroth += record.count("0th in line")
        questions = record.count(clarify_marker(conv.conv))
        if questions == 0:
            out.no_question.append(conv)
            continue
        if questions > 1:
            out.question_dup.append(conv)
        if conv.answered_at is None:
            out.not_answered_by_user.append(conv)
            continue
        out.answered += 1
        summaries = sum(
            report_marker(conv.conv) in text and "Took " in text for _, text in record.posts
        )
        if not record.uploads:
            out.report_missing.append(conv)
            if RETRY_ACTION in record.last_post:
                out.ended_on_retry.append(conv)
            else:
                out.no_final.append(conv)
        elif len(record.uploads) > 1 or summaries > 1:
            out.report_dup.append(conv)
        elif summaries == 0:
            out.summary_missing.append(conv)
        for n in conv.asked:
            out.asked += 1
            got = record.count(answer_marker(conv.conv, n))
            if got == 0:
                out.unanswered.append(conv)
            elif got > 1:
                out.answered_twice.append(conv)
    return out


def describe_post(conv: int, text: str) -> str:
    if clarify_marker(conv) in text:
        return "the clarifying question"
    if report_marker(conv) in text and "Took " in text:
        return "the report summary"
    if "answer-" in text:
        return "an answer to the question"
    if KEPT_NOTICE in text:
        return "'I'll answer this once the report is in'"
    if RESUMING in text:
        return "'running it again from the start'"
    if STOP_ACTION in text:
        return "a progress message"
    if RETRY_ACTION in text:
        return "a notice with Retry: " + text.split(" [", 1)[0][:80]
    return text.split(" [", 1)[0][:100]


def timeline(
    conv: Conv,
    index: ThreadIndex,
    served: Sequence[Served],
    marks: Sequence[tuple[float, str]],
) -> list[str]:
    """Everything that happened to one conversation, with the process deaths (`marks`) in
    its span, relative to its start."""
    events: list[tuple[float, str]] = list(conv.actions)
    record = index.get(conv.thread)
    for at, text in record.posts:
        events.append((at, "bot posted: " + describe_post(conv.conv, text)))
    for at, title in record.uploads:
        events.append((at, f"report uploaded ({title})"))
    for at, what in record.failures:
        events.append((at, f"Slack {what}"))
    for s in served:
        if s.conv != conv.conv:
            continue
        events.append((s.arrived, f"model {s.kind} request {s.request_id} arrived"))
        if s.ended is not None:
            how = "completed" if s.completed else ("cut" if s.cut else "ended early")
            events.append((s.ended, f"model {s.kind} request {s.request_id} {how}"))
    first = min((t for t, _ in events), default=conv.started)
    last = max((t for t, _ in events), default=conv.started)
    events += [(at, f"** {label}") for at, label in marks if first - 0.5 <= at <= last + 0.5]
    events.sort()
    return [f"      +{t - conv.started:7.3f} s  {what}" for t, what in events]


def counts(counter: Counter[str]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counter.items())) or "0"


def killed_after_last(
    served: Sequence[Served], conv: int, kind: str, deaths: Sequence[float], within: float = 0.5
) -> bool | None:
    """Whether a process died within `within` s after the last `kind` request of `conv`
    ended (None: there was no such request). False means the bot dropped what followed by
    itself."""
    requests = [s for s in served if s.conv == conv and s.kind == kind and s.ended is not None]
    if not requests:
        return None
    last = max(requests, key=lambda s: s.arrived)
    assert last.ended is not None
    return any(last.arrived <= d <= last.ended + within for d in deaths)


def split_by_death(
    convs: Sequence[Conv], served: Sequence[Served], kind: str, deaths: Sequence[float]
) -> str:
    """'n after a death, m with no process death' for findings about `kind` steps."""
    verdicts = [killed_after_last(served, c.conv, kind, deaths) for c in convs]
    died = sum(v is True for v in verdicts)
    alive = sum(v is False for v in verdicts)
    none = sum(v is None for v in verdicts)
    text = (
        f"{died} with a process death during or just after the last {kind} call, {alive} with none"
    )
    return text + (f", {none} without a {kind} call" if none else "")
