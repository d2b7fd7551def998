"""What an operator's tools see: /healthz, /readyz and /metrics on a running bot, over HTTP
(on PORT) and in Socket Mode (on METRICS_PORT), and metrics that move with what happens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics
from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    Gate,
    HttpError,
    clarification_script,
    research_script,
)
from tests.fakes.slack_payloads import app_mention, message
from tests.fakes.slack_server import FakeSlack
from tests.postgres import admin_url, fresh_database
from tests.test_e2e_research import REPORT_CHUNKS, start_conversation
from tests.test_e2e_stop_access import press_stop, running_research

Snapshot = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(params=["http", "socket"])
async def ops_bot(
    request: pytest.FixtureRequest, slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> AsyncIterator[Harness]:
    """The bot in each mode; in Socket Mode with METRICS_PORT (0: any free port)."""
    runtime = await start_bot(slack, dashscope, tmp_path, request.param, METRICS_PORT="0")
    async with aiohttp.ClientSession() as session:
        try:
            yield Harness(runtime, slack, dashscope, request.param, session)
        finally:
            await runtime.stop()


def base(bot: Harness) -> str:
    port = bot.runtime.http_port if bot.mode == "http" else bot.runtime.ops_port
    assert port is not None
    return f"http://127.0.0.1:{port}"


async def get(bot: Harness, path: str) -> tuple[int, Any]:
    async with bot.session.get(base(bot) + path) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def scrape(bot: Harness) -> Snapshot:
    status, text = await get(bot, "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(snapshot: Snapshot, name: str, **labels: str) -> float:
    return snapshot.get((name, frozenset(labels.items())), 0.0)


def total(snapshot: Snapshot, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lab), v in snapshot.items() if n == name and wanted <= lab)


async def eventually(check: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# --- the endpoints ---------------------------------------------------------------------------


async def test_health_readiness_and_metrics_endpoints(ops_bot: Harness) -> None:
    assert await get(ops_bot, "/healthz") == (200, {"status": "ok"})
    assert await get(ops_bot, "/readyz") == (200, {"status": "ready"})
    async with ops_bot.session.get(base(ops_bot) + "/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    families = {f.name for f in text_string_to_metric_families(text)}
    for name in (
        "qwen_bot_research_runs_started",
        "qwen_bot_research_runs_in_progress",
        "qwen_bot_research_runs_queued",
        "qwen_bot_slack_ack_seconds",
        "qwen_bot_event_loop_lag_seconds",
        "process_cpu_seconds",
    ):
        assert name in families, name


async def test_socket_mode_without_metrics_port_opens_no_listener(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    runtime = await start_bot(slack, dashscope, tmp_path, "socket")
    try:
        assert runtime.ops_port is None and runtime.http_port is None
    finally:
        await runtime.stop()


async def test_readyz_is_503_while_draining_and_names_it(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    runtime = await start_bot(slack, dashscope, tmp_path, "http", DRAIN_SECONDS="20")
    async with aiohttp.ClientSession() as session:
        bot = Harness(runtime, slack, dashscope, "http", session)
        thread = await start_conversation(bot)
        gate = Gate()
        script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1)
        dashscope.enqueue([*script[:4], gate, *script[4:]])
        await bot.send_event(message("Personalised learning", thread_ts=thread))
        await gate.wait_reached(timeout=10)
        stopping = asyncio.create_task(runtime.stop())
        try:

            async def draining() -> bool:
                status, body = await get(bot, "/readyz")
                return status == 503 and "draining" in body["not_ready"]

            await eventually(draining)
            _, body = await get(bot, "/readyz")
            assert body["status"] == "not ready" and set(body["not_ready"]) == {"draining"}
            assert await get(bot, "/healthz") == (200, {"status": "ok"})  # still alive
        finally:
            gate.release()
            await asyncio.wait_for(stopping, 30)
    await slack.wait_for_call("files.completeUploadExternal", timeout=10)  # the run finished


async def test_readyz_names_slack_when_auth_test_never_succeeded(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    # Slack answers every auth.test with a server error: the bot starts anyway (after its
    # bounded wait) but is not ready.
    slack.fail_next("auth.test", status=500, error="internal_error", times=1000)
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    async with aiohttp.ClientSession() as session:
        bot = Harness(runtime, slack, dashscope, "http", session)
        try:
            assert await get(bot, "/healthz") == (200, {"status": "ok"})
            status, body = await get(bot, "/readyz")
            assert status == 503
            assert set(body["not_ready"]) == {"slack"}
            assert "auth.test" in body["not_ready"]["slack"]
        finally:
            await runtime.stop()


async def test_readyz_names_the_database_while_it_does_not_answer(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with fresh_database() as url:
        name = url.rsplit("/", 1)[1]
        runtime = await start_bot(slack, dashscope, tmp_path, "http", database_url=url)
        admin = await asyncpg.connect(admin_url())
        async with aiohttp.ClientSession() as session:
            bot = Harness(runtime, slack, dashscope, "http", session)
            try:
                assert (await get(bot, "/readyz"))[0] == 200
                # The database refuses new connections and drops the bot's.
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                status, body = await get(bot, "/readyz")
                assert status == 503
                assert body["not_ready"] == {"database": "does not answer"}

                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

                async def ready() -> bool:
                    return (await get(bot, "/readyz"))[0] == 200

                await eventually(ready)
            finally:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                await admin.close()
                await runtime.stop()


# --- metrics that move -----------------------------------------------------------------------


async def test_a_research_run_moves_its_counters_by_exactly_one(ops_bot: Harness) -> None:
    bot = ops_bot
    before = await scrape(bot)
    thread = await start_conversation(bot)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2))
    await bot.send_event(message("Personalised learning, please", thread_ts=thread))
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)

    async def run_over() -> bool:
        now = await scrape(bot)
        return value(now, "qwen_bot_research_runs_in_progress") == value(
            before, "qwen_bot_research_runs_in_progress"
        ) and total(now, "qwen_bot_model_calls_total", kind="research") > total(
            before, "qwen_bot_model_calls_total", kind="research"
        )

    await eventually(run_over)
    after = await scrape(bot)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("qwen_bot_research_runs_started_total") == 1
    assert moved("qwen_bot_research_runs_ended_total") == 1
    assert moved("qwen_bot_research_runs_ended_total", outcome="finished", reason="report") == 1
    model = "qwen-deep-research"
    assert moved("qwen_bot_model_calls_total", model=model, kind="clarify") == 1
    assert moved("qwen_bot_model_calls_total", model=model, kind="research") == 1
    assert moved("qwen_bot_model_errors_total") == 0
    # Tokens and cost are the ledger's figures.
    records = await bot.services.ledger.records("T1")
    for kind_of_token, field in (("input", "input_tokens"), ("output", "output_tokens")):
        recorded = sum(getattr(r, field) for r in records)
        assert recorded > 0
        assert moved("qwen_bot_model_tokens_total", model=model, type=kind_of_token) == recorded
    cost = sum(float(r.cost_usd or 0) for r in records)
    assert moved("qwen_bot_model_cost_usd_total", model=model) == pytest.approx(cost)
    # Slack: the posts were counted, and both events were acknowledged and timed.
    assert moved("qwen_bot_slack_api_calls_total", method="chat.postMessage") >= 2
    assert moved("qwen_bot_slack_api_calls_total", method="files.completeUploadExternal") == 1
    assert moved("qwen_bot_slack_ack_seconds_count", transport=bot.mode) == 2
    assert moved("qwen_bot_slack_api_errors_total") == 0


async def test_failures_are_counted_by_code_and_error(ops_bot: Harness) -> None:
    bot = ops_bot
    before = await scrape(bot)
    thread = await start_conversation(bot)
    # Slack rate-limits the first post of the run (slack_sdk waits and tries again); the model
    # refuses the research call.
    bot.slack.fail_next("chat.postMessage", status=429, error="ratelimited", retry_after=0)
    bot.dashscope.enqueue([HttpError(400, "DataInspectionFailed", "inappropriate content")])
    await bot.send_event(message("Personalised learning, please", thread_ts=thread))

    async def failed() -> bool:
        now = await scrape(bot)
        return total(now, "qwen_bot_research_runs_ended_total") > total(
            before, "qwen_bot_research_runs_ended_total"
        )

    await eventually(failed)
    after = await scrape(bot)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("qwen_bot_research_runs_started_total") == 1
    assert (
        moved("qwen_bot_research_runs_ended_total", outcome="failed", reason="DataInspectionFailed")
        == 1
    )
    assert moved("qwen_bot_research_runs_ended_total", outcome="finished") == 0
    assert (
        moved(
            "qwen_bot_model_errors_total", model="qwen-deep-research", code="DataInspectionFailed"
        )
        == 1
    )
    assert moved("qwen_bot_slack_rate_limited_total", method="chat.postMessage") == 1
    assert (
        moved("qwen_bot_slack_api_errors_total", method="chat.postMessage", error="ratelimited")
        == 1
    )


async def test_no_user_or_workspace_ids_in_metric_labels(ops_bot: Harness) -> None:
    thread = await start_conversation(ops_bot)
    assert thread
    for (_, labels), _value in (await scrape(ops_bot)).items():
        for _label, label_value in labels:
            assert label_value not in ("T1", "U1", "UBOT", "C1", thread)


async def test_queued_research_is_sampled_from_the_database(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    # One run at a time per person: a second thread's research waits in the queue.
    runtime = await start_bot(slack, dashscope, tmp_path, "http", USER_MAX_RUNNING="1")
    async with aiohttp.ClientSession() as session:
        bot = Harness(runtime, slack, dashscope, "http", session)
        try:
            gate = Gate()
            first = await start_conversation(bot)
            script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1)
            dashscope.enqueue([*script[:4], gate, *script[4:]])
            await bot.send_event(message("Personalised", thread_ts=first))
            await gate.wait_reached(timeout=10)
            dashscope.enqueue(clarification_script("Which level?"))
            mention = app_mention("<@UBOT> research tutoring")
            await bot.send_event(mention)
            await slack.wait_for_call(
                "chat.postMessage", lambda c: c.args.get("thread_ts") == mention["ts"]
            )
            await bot.send_event(message("Secondary", thread_ts=str(mention["ts"])))

            async def one_queued() -> bool:
                return value(await scrape(bot), "qwen_bot_research_runs_queued") == 1

            await eventually(one_queued, timeout=25)
            gate.release()
        finally:
            gate.release()
            await runtime.stop()


async def test_stopped_and_interrupted_runs_are_counted_by_reason(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    runtime = await start_bot(slack, dashscope, tmp_path, "http", AUTO_RESUME="false")
    async with aiohttp.ClientSession() as session:
        bot = Harness(runtime, slack, dashscope, "http", session)
        stopped = False
        try:
            before = await scrape(bot)
            # One run stopped by its starter…
            thread, progress_ts, gate = await running_research(bot)
            await press_stop(bot, thread, user="UUSER", message_ts=progress_ts)
            await slack.wait_for_call(
                "chat.postMessage", lambda c: "Research stopped" in c.args.get("text", "")
            )
            gate.release()
            middle = await scrape(bot)
            # …and one cut by a shutdown (no automatic resume here: it is interrupted).
            thread, _, gate = await running_research(bot)
            await runtime.stop()
            stopped = True
            gate.release()
        finally:
            if not stopped:
                await runtime.stop()
    after = await scrape_registry()

    def moved(then: Snapshot, now: Snapshot, **labels: str) -> float:
        name = "qwen_bot_research_runs_ended_total"
        return total(now, name, **labels) - total(then, name, **labels)

    assert moved(before, middle) == 1
    assert moved(before, middle, outcome="stopped", reason="user") == 1
    assert moved(middle, after) == 1
    assert moved(middle, after, outcome="interrupted", reason="shutdown") == 1
    assert value(after, "qwen_bot_research_runs_in_progress") == value(
        before, "qwen_bot_research_runs_in_progress"
    )


async def scrape_registry() -> Snapshot:
    """The metrics as /metrics renders them, once no listener is left to ask."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    }
