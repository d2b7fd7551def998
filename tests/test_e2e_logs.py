"""One research run followed through the JSON log by its run id, on a running bot, over both
transports; no message text or model output in the log at INFO, and no access lines."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.logs import configure_logging
from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import DEFAULT_REFERENCES, FakeDashScope, research_script
from tests.fakes.slack_payloads import message
from tests.fakes.slack_server import FakeSlack
from tests.test_e2e_research import QUESTION, REPORT, REPORT_CHUNKS, TOPIC, start_conversation

ANSWER = "Personalised learning in secondary schools"


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The process's logging as `LOG_FORMAT=json` sets it up; stderr is the stream returned."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging(["xoxb-test", "sk-test"], "INFO", "json")
    try:
        yield stderr
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_one_research_run_can_be_followed_by_its_run_id(
    mode: str,
    slack: FakeSlack,
    dashscope: FakeDashScope,
    tmp_path: Path,
    json_logs: io.StringIO,
) -> None:
    runtime = await start_bot(slack, dashscope, tmp_path, mode)
    async with aiohttp.ClientSession() as session:
        bot = Harness(runtime, slack, dashscope, mode, session)
        try:
            thread = await start_conversation(bot)
            dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2))
            await bot.send_event(message(ANSWER, thread_ts=thread))
            await slack.wait_for_call("files.completeUploadExternal", timeout=20)
        finally:
            await runtime.stop()
    out = json_logs.getvalue()
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines, "nothing was logged"

    conversation = f"T1/C1/{thread}"
    started = [e for e in lines if e["message"].startswith("research run started")]
    assert len(started) == 1
    run_id = started[0]["run_id"]
    assert started[0]["conversation"] == conversation and started[0]["team"] == "T1"
    run = [e for e in lines if e.get("run_id") == run_id]
    assert any(e["message"].startswith("research run finished") for e in run)
    assert all(e["conversation"] == conversation for e in run)

    # Nothing a user wrote or the model answered, no secret, no access line.
    for text in (TOPIC, ANSWER, QUESTION, REPORT_CHUNKS[1], REPORT[:40], "xoxb-test", "sk-test"):
        assert text not in out, text
    assert not [e for e in lines if e["logger"] == "aiohttp.access"]
