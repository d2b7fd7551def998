"""What the bot counts for Prometheus, in one place.

The rest of the code calls the small functions below (`run_started`, `model_call`,
`slack_call`…) and never touches a metric object, so the instrumentation can change here
alone. The metrics live in this process's own registry, exported by `GET /metrics`
(`exposition`).

Labels stay bounded: no user or workspace ids, and values that come from outside (model
names a user may type, Slack and Model Studio error codes) are kept to the first few dozen
distinct ones seen, later ones counted as `other`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

from bot import tracing
from bot.qwen.client import ModelCall, ModelClient
from bot.qwen.events import Event, PhaseStatus, StreamError

logger = logging.getLogger(__name__)

REGISTRY: Final = CollectorRegistry()
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
OTHER: Final = "other"
_MAX_VALUES: Final = 50
_LABEL_SHAPE: Final = re.compile(r"[A-Za-z0-9_.:\-/]{1,64}")


class _Bounded:
    """A label's values: the first `limit` distinct well-formed ones, then `other`."""

    def __init__(self, limit: int = _MAX_VALUES) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value or not _LABEL_SHAPE.fullmatch(value):
            return OTHER
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
            return value


_model_name = _Bounded()
_model_error = _Bounded()
_slack_method = _Bounded(100)
_slack_error = _Bounded()
_run_reason = _Bounded()

RUNS_STARTED: Final = Counter(
    "qwen_bot_research_runs_started",
    "Research runs started in this process (a resumed run counts again).",
    registry=REGISTRY,
)
RUNS_ENDED: Final = Counter(
    "qwen_bot_research_runs_ended",
    "Research runs ended in this process, by outcome (finished, failed, stopped, interrupted, "
    "requeued, handed_over) and reason.",
    ["outcome", "reason"],
    registry=REGISTRY,
)
RUNS_IN_PROGRESS: Final = Gauge(
    "qwen_bot_research_runs_in_progress",
    "Research runs streaming in this process now.",
    registry=REGISTRY,
)
RUNS_QUEUED: Final = Gauge(
    "qwen_bot_research_runs_queued",
    "Research waiting in the queue, across every process on the database (sampled).",
    registry=REGISTRY,
)
MODEL_CALLS: Final = Counter(
    "qwen_bot_model_calls",
    "Model calls ended, by model and kind (clarify, research, answer, follow_up).",
    ["model", "kind"],
    registry=REGISTRY,
)
MODEL_TOKENS: Final = Counter(
    "qwen_bot_model_tokens",
    "Tokens of ended model calls, by model, kind and type (input, output, reasoning; "
    "reasoning tokens are part of output).",
    ["model", "kind", "type"],
    registry=REGISTRY,
)
MODEL_COST: Final = Counter(
    "qwen_bot_model_cost_usd",
    "Estimated cost of ended model calls in US dollars, by model (models with a price).",
    ["model"],
    registry=REGISTRY,
)
MODEL_ERRORS: Final = Counter(
    "qwen_bot_model_errors",
    "Model calls that ended with an error, by model and Model Studio error code.",
    ["model", "code"],
    registry=REGISTRY,
)
SLACK_CALLS: Final = Counter(
    "qwen_bot_slack_api_calls",
    "Slack Web API requests (each attempt), by method.",
    ["method"],
    registry=REGISTRY,
)
SLACK_ERRORS: Final = Counter(
    "qwen_bot_slack_api_errors",
    "Slack Web API requests answered with an error (or none), by method and error.",
    ["method", "error"],
    registry=REGISTRY,
)
SLACK_RATE_LIMITED: Final = Counter(
    "qwen_bot_slack_rate_limited",
    "HTTP 429 answers from the Slack Web API, by method.",
    ["method"],
    registry=REGISTRY,
)
ACK_SECONDS: Final = Histogram(
    "qwen_bot_slack_ack_seconds",
    "Time from receiving a Slack request to acknowledging it, by transport (http, socket).",
    ["transport"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
    registry=REGISTRY,
)
LOOP_LAG: Final = Histogram(
    "qwen_bot_event_loop_lag_seconds",
    "How late the event loop ran a timer, sampled every LOOP_SAMPLE_SECONDS.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)

LOOP_SAMPLE_SECONDS: Final = 0.5
QUEUE_SAMPLE_SECONDS: Final = 5.0


def exposition() -> bytes:
    """Every metric in the Prometheus text format."""
    return generate_latest(REGISTRY)


# --------------------------------------------------------------------------- hooks


def run_started() -> None:
    RUNS_STARTED.inc()
    RUNS_IN_PROGRESS.inc()


def run_left() -> None:
    """The run's task ended, however it ended."""
    RUNS_IN_PROGRESS.dec()


def run_ended(outcome: str, reason: str) -> None:
    RUNS_ENDED.labels(outcome, _run_reason(reason)).inc()


def model_call(
    model: str,
    kind: str,
    input_tokens: int,
    output_tokens: int,
    reasoning_tokens: int,
    cost_usd: Decimal | None,
) -> None:
    name = _model_name(model)
    MODEL_CALLS.labels(name, kind).inc()
    for kind_of_token, count in (
        ("input", input_tokens),
        ("output", output_tokens),
        ("reasoning", reasoning_tokens),
    ):
        MODEL_TOKENS.labels(name, kind, kind_of_token).inc(max(0, count))
    if cost_usd is not None:
        MODEL_COST.labels(name).inc(float(cost_usd))


def model_error(model: str, code: str) -> None:
    MODEL_ERRORS.labels(_model_name(model), _model_error(code)).inc()


def slack_call(method: str, *, status: int | None, error: str | None) -> None:
    """One Web API attempt; `error` is Slack's `error` field, or a few words when there was
    no answer."""
    name = _slack_method(method)
    SLACK_CALLS.labels(name).inc()
    if status == 429:
        SLACK_RATE_LIMITED.labels(name).inc()
    if error is not None:
        SLACK_ERRORS.labels(name, _slack_error(error)).inc()


def acked(transport: str, seconds: float) -> None:
    ACK_SECONDS.labels(transport).observe(seconds)


class MeteredModel:
    """A ModelClient that counts the errors its calls end with and, when tracing is on, makes
    each call a span whose events are the phases the stream went through."""

    def __init__(self, inner: ModelClient) -> None:
        self._inner = inner

    async def stream(self, call: ModelCall) -> AsyncIterator[Event]:
        span = tracing.Span("model.stream", {"model": call.model})
        events = self._inner.stream(call)
        phase: PhaseStatus | None = None
        try:
            async for event in events:
                if isinstance(event, StreamError):
                    model_error(call.model, event.code)
                    span.error(event.code)
                elif isinstance(event, PhaseStatus) and event != phase:
                    phase = event  # every frame repeats its phase: only changes are events
                    span.event(f"{event.phase} {event.status}")
                yield event
        finally:
            span.end()
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()


async def sample(queued: Callable[[], Awaitable[int]]) -> None:
    """Runs until cancelled: event-loop lag every LOOP_SAMPLE_SECONDS, the queue's length
    every QUEUE_SAMPLE_SECONDS."""
    loop = asyncio.get_running_loop()
    next_queue = loop.time()
    while True:
        before = loop.time()
        await asyncio.sleep(LOOP_SAMPLE_SECONDS)
        LOOP_LAG.observe(max(0.0, loop.time() - before - LOOP_SAMPLE_SECONDS))
        if loop.time() >= next_queue:
            next_queue = loop.time() + QUEUE_SAMPLE_SECONDS
            try:
                async with asyncio.timeout(5):
                    RUNS_QUEUED.set(await queued())
            except Exception:  # a database hiccup leaves the last value; /readyz says more
                logger.debug("could not count the queued research", exc_info=True)
