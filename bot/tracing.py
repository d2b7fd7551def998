"""OpenTelemetry traces, only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Unset (the default), this module imports nothing of OpenTelemetry, exports nothing, and its
decorator calls straight through. Set, `setup` starts an OTLP/HTTP exporter and instruments
aiohttp's client, which both Slack's SDK and the DashScope client use, so every Slack Web API
call and every model request is a span; the domain marks its steps with `traced` (a research
run, its clarifying question, the delivery of its report) and the model stream is a span whose
events are the research phases. Spans carry the log context (conversation, team, run id), so
a trace and its log lines find each other.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final, ParamSpec, TypeVar

from bot.logs import CONTEXT_FIELDS, current_context

logger = logging.getLogger(__name__)

SERVICE_NAME: Final = "qwen-deep-research-slack"
P = ParamSpec("P")
R = TypeVar("R")


class _Tracing:
    """What `setup` made; None while tracing is off."""

    def __init__(self, tracer: Any, shutdown: Callable[[], None]) -> None:
        self.tracer = tracer
        self.shutdown = shutdown


_active: _Tracing | None = None


def enabled() -> bool:
    return _active is not None


def setup(endpoint: str, service_name: str = SERVICE_NAME) -> None:
    """Export spans to the OTLP/HTTP collector at `endpoint` (`/v1/traces` is added)."""
    global _active
    if _active is not None:
        return
    # Imported here only: without an endpoint, no OpenTelemetry module is loaded.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    # Batches are sent from the processor's own thread: the event loop never waits for them.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentor = AioHttpClientInstrumentor()
    # Query strings stay out of span attributes (Slack's file URLs carry tokens-like ids).
    instrumentor.instrument(tracer_provider=provider, url_filter=_without_query)

    def shutdown() -> None:
        instrumentor.uninstrument()
        provider.shutdown()  # sends what is still batched

    _active = _Tracing(provider.get_tracer("bot"), shutdown)
    logger.info("exporting traces to %s", endpoint)


def shutdown() -> None:
    """Send the spans still batched and stop tracing (blocking: call it in a thread)."""
    global _active
    active, _active = _active, None
    if active is not None:
        active.shutdown()


def _without_query(url: Any) -> str:
    return str(url).split("?", 1)[0]


def _attributes() -> dict[str, str]:
    context = current_context()
    return {f"bot.{k}": context[k] for k in CONTEXT_FIELDS if k in context}


def traced(
    name: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Run the decorated coroutine function inside a span `name` (when tracing is on)."""

    def decorate(
        function: Callable[P, Coroutine[Any, Any, R]],
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(function)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            active = _active
            if active is None:
                return await function(*args, **kwargs)
            with active.tracer.start_as_current_span(name) as span:
                try:
                    return await function(*args, **kwargs)
                finally:
                    # Read at the end: a run binds its id once it has started.
                    span.set_attributes(_attributes())

        return run

    return decorate


class Span:
    """A span started and ended by hand (a model stream, read through an async generator,
    cannot be made the current span: its code runs between the consumer's awaits)."""

    def __init__(self, name: str, attributes: dict[str, str]) -> None:
        active = _active
        self._span = (
            active.tracer.start_span(name, attributes={**attributes, **_attributes()})
            if active is not None
            else None
        )

    def event(self, name: str) -> None:
        if self._span is not None:
            self._span.add_event(name)

    def error(self, code: str) -> None:
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, code))

    def end(self) -> None:
        if self._span is not None:
            self._span.end()
