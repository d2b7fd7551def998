"""Traces with OTEL_EXPORTER_OTLP_ENDPOINT set: a research run, its clarifying question, its
model stream with the research phases as events, the delivery of its report, and the Slack and
DashScope HTTP calls, sent to a local OTLP/HTTP collector; without it nothing is loaded."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import DEFAULT_REFERENCES, FakeDashScope, research_script
from tests.fakes.slack_payloads import message
from tests.fakes.slack_server import FakeSlack
from tests.test_e2e_research import REPORT_CHUNKS, start_conversation

ROOT = Path(__file__).resolve().parent.parent


class Collector:
    """An OTLP/HTTP trace receiver: protobuf bodies POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Collector:
        app = web.Application()
        app.router.add_post("/v1/traces", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(scope.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    async with Collector() as c:
        yield c


def attributes(span: Any) -> dict[str, str]:
    return {a.key: a.value.string_value or str(a.value.int_value) for a in span.attributes}


async def test_a_research_run_is_traced_end_to_end(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path, collector: Collector
) -> None:
    runtime = await start_bot(
        slack, dashscope, tmp_path, "http", OTEL_EXPORTER_OTLP_ENDPOINT=collector.url
    )
    async with aiohttp.ClientSession() as session:
        bot = Harness(runtime, slack, dashscope, "http", session)
        try:
            thread = await start_conversation(bot)
            dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2))
            await bot.send_event(message("Personalised learning", thread_ts=thread))
            await slack.wait_for_call("files.completeUploadExternal", timeout=20)
            await asyncio.sleep(0.5)  # the run's last steps after the upload
        finally:
            await runtime.stop()  # sends what is still batched
    by_name: dict[str, list[Any]] = {}
    for span in collector.spans:
        by_name.setdefault(span.name, []).append(span)

    [run] = by_name["research.run"]
    [clarify] = by_name["research.clarify"]
    assert by_name["research.deliver"]
    conversation = f"T1/C1/{thread}"
    assert attributes(run)["bot.conversation"] == conversation
    assert attributes(run)["bot.run_id"]
    assert attributes(clarify)["bot.conversation"] == conversation
    # The delivery happened inside the run.
    assert any(d.trace_id == run.trace_id for d in by_name["research.deliver"])
    # Two model streams: the question's and the research's, the latter with its phases.
    streams = by_name["model.stream"]
    assert len(streams) == 2
    research_stream = next(s for s in streams if s.trace_id == run.trace_id)
    phases = [e.name for e in research_stream.events]
    assert "WebResearch streamingQueries" in phases and "answer finished" in phases
    assert all(a != b for a, b in itertools.pairwise(phases))  # changes only
    # The HTTP calls beneath: Slack's Web API and DashScope, without query strings.
    urls = [
        a.get("http.url") or a.get("url.full") or ""
        for a in (attributes(s) for s in collector.spans)
    ]
    assert any("/api/chat.postMessage" in u for u in urls)
    assert any("/services/aigc/text-generation/generation" in u for u in urls)
    assert not any("?" in u for u in urls)
    # Nothing the user wrote or the model answered is in a span.
    dump = "".join(str(s) for s in collector.spans)
    assert "Personalised learning" not in dump and REPORT_CHUNKS[1] not in dump


def test_without_an_endpoint_nothing_of_opentelemetry_is_loaded_by_the_bot() -> None:
    probe = (
        "import sys, bot.__main__, bot.runtime, bot.tracing;"
        "print(bot.tracing.enabled(),"
        " any(m.startswith(('opentelemetry.exporter', 'opentelemetry.instrumentation',"
        " 'opentelemetry.sdk')) for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False"], result.stderr
