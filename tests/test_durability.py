"""Nothing accepted is lost: real bot processes killed (SIGKILL) or stopped (SIGTERM) at the
worst moments, then started again; events handled again from the inbox, runs resumed once,
usage of cut calls recorded, questions kept across restarts, runs that never end ended."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.conversation import State
from bot.research import Deferred
from handlers.render import RETRY_ACTION, STOP_ACTION
from storage import Storage
from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    Gate,
    Pause,
    clarification_script,
    keepalive_frame,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import app_mention, event_callback, message
from tests.fakes.slack_server import FakeSlack
from tests.test_e2e_faults import REPO, click, key, notices
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS, TOPIC, start_conversation

RESUMING = "running it again from the start"


def bot_env(slack: FakeSlack, dashscope: FakeDashScope, db: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(db.parent),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_APP_TOKEN": "xapp-test",
        "SLACK_API_URL": slack.api_url,
        "DASHSCOPE_API_KEY": "sk-test",
        "DASHSCOPE_HTTP_BASE_URL": dashscope.base_url,
        "DATABASE_URL": f"sqlite:///{db}",
        "PROGRESS_UPDATE_SECONDS": "0.3",
        "DRAIN_SECONDS": "0",
        **extra,
    }


async def bot_process(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path, **extra: str
) -> asyncio.subprocess.Process:
    """A real `python -m bot` in Socket Mode against the fakes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=REPO,
        env=bot_env(slack, dashscope, tmp_path / "bot.sqlite3", **extra),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await slack.wait_socket_connected(timeout=20)
    return process


async def research_cut_at_a_gate(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path, **extra: str
) -> tuple[asyncio.subprocess.Process, str, Gate]:
    """A bot process in the middle of a research run (its stream parked at a gate)."""
    process = await bot_process(slack, dashscope, tmp_path, **extra)
    dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await slack.socket_send("events_api", event_callback(mention))
    thread = str(mention["ts"])
    await slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == thread)
    gate = Gate()
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    dashscope.enqueue([*script[:6], gate, *script[6:]])
    await slack.socket_send("events_api", event_callback(message("Personalised", thread_ts=thread)))
    await gate.wait_reached(timeout=10)
    return process, thread, gate


async def stored(tmp_path: Path, thread: str) -> tuple[Any, list[Any]]:
    storage = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}")
    try:
        conversation = await storage.conversations.get(key(thread))
        return conversation, await storage.ledger.records("T1")
    finally:
        await storage.close()


def inflight_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        query = "SELECT COUNT(*) FROM inflight_usage WHERE output_tokens > 0"
        return int(conn.execute(query).fetchone()[0])


def kept_rows(db: Path) -> int:
    """Questions still waiting for an answer."""
    with sqlite3.connect(db) as conn:
        query = "SELECT COUNT(*) FROM kept_questions WHERE text != ''"
        return int(conn.execute(query).fetchone()[0])


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(predicate):
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def posts_saying(slack: FakeSlack, thread: str, phrase: str) -> int:
    return sum(
        1
        for c in slack.calls_to("chat.postMessage")
        if c.args.get("thread_ts") == thread and phrase in str(c.args.get("text"))
    )


def uploads(slack: FakeSlack) -> int:
    return len(slack.calls_to("files.completeUploadExternal"))


# --- accepted means recorded --------------------------------------------------------------


async def test_a_mention_killed_just_after_its_ack_is_answered_after_restart(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    process = await bot_process(slack, dashscope, tmp_path)
    gate = Gate()
    dashscope.enqueue([gate, *clarification_script(QUESTION)])  # parked before any frame
    mention = app_mention(f"<@UBOT> {TOPIC}")
    ack = await slack.socket_send("events_api", event_callback(mention))
    assert ack is not None  # Slack got its acknowledgement
    await gate.wait_reached(timeout=10)
    process.kill()
    await asyncio.wait_for(process.wait(), 10)
    thread = str(mention["ts"])
    assert "Which aspects" not in notices(slack, thread)

    dashscope.enqueue(clarification_script(QUESTION))
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        await slack.wait_for_call(
            "chat.postMessage",
            lambda c: c.args.get("thread_ts") == thread and "Which aspects" in str(c.args),
            timeout=20,
        )
        conversation = await runtime.services.conversations.get(key(thread))  # type: ignore[union-attr]
        assert conversation is not None and conversation.state is State.AWAITING_CLARIFICATION
    finally:
        await runtime.stop()
    asked = [r.body["input"]["messages"] for r in dashscope.requests]
    assert asked[-1] == [{"role": "user", "content": TOPIC}]


async def test_a_retry_of_an_event_never_recorded_is_handled(bot: Harness) -> None:
    # The first delivery never reached the bot (it was down); Slack's retry is the first copy.
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await bot.send_event(mention, event_id="EvLOST", retry_num=1)
    await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == mention["ts"] and "Which aspects" in str(c.args),
    )
    # A second retry of the same, recorded event starts nothing.
    await bot.send_event(mention, event_id="EvLOST", retry_num=2)
    await asyncio.sleep(0.3)
    assert len(bot.dashscope.requests) == 1


async def test_shutdown_while_the_question_is_being_asked_asks_again_after_restart(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    gate = Gate()
    script = clarification_script(QUESTION)
    dashscope.enqueue([*script[:2], gate, *script[2:]])
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http")
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            mention = app_mention(f"<@UBOT> {TOPIC}")
            await bot.send_event(mention)
            await gate.wait_reached()
        finally:
            await runtime.stop()
    thread = str(mention["ts"])
    assert "Which aspects" not in notices(slack, thread)

    dashscope.enqueue(clarification_script(QUESTION))
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        await slack.wait_for_call(
            "chat.postMessage",
            lambda c: c.args.get("thread_ts") == thread and "Which aspects" in str(c.args),
        )
    finally:
        await runtime.stop()
    assert dashscope.requests[1].body["input"]["messages"] == [{"role": "user", "content": TOPIC}]
    _, records = await stored(tmp_path, thread)
    # The cut question's tokens and the full one's: both paid, both recorded, once each.
    assert [r.kind for r in records] == ["clarify", "clarify"]
    assert len({r.call_id for r in records}) == 2


# --- runs survive deploys and crashes -------------------------------------------------------


async def test_sigterm_with_auto_resume_off_marks_the_run_interrupted(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    process, thread, _ = await research_cut_at_a_gate(
        slack, dashscope, tmp_path, AUTO_RESUME="false"
    )
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "interrupted because the bot restarted" in notices(slack, thread)
    assert b"xoxb-test" not in stderr and b"sk-test" not in stderr
    conversation, records = await stored(tmp_path, thread)
    assert conversation is not None and conversation.state is State.INTERRUPTED
    assert [r.kind for r in records] == ["clarify", "research"]


async def test_a_deploy_lets_a_run_finish_within_drain_seconds(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    process, thread, gate = await research_cut_at_a_gate(
        slack, dashscope, tmp_path, DRAIN_SECONDS="20"
    )
    process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    assert process.returncode is None  # still draining
    gate.release()
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert uploads(slack) == 1
    assert "interrupted" not in notices(slack, thread)
    conversation, records = await stored(tmp_path, thread)
    assert conversation is not None and conversation.state is State.DONE
    assert [r.kind for r in records] == ["clarify", "research"]


async def test_a_run_cut_by_sigterm_resumes_once_on_the_next_start(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    process, thread, _ = await research_cut_at_a_gate(slack, dashscope, tmp_path)
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "interrupted" not in notices(slack, thread)
    conversation, records = await stored(tmp_path, thread)
    assert conversation is not None and conversation.state is State.RESEARCHING
    assert [r.kind for r in records] == ["clarify", "research"]  # the cut call is paid for

    dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        await slack.wait_for_call("files.completeUploadExternal", timeout=20)
    finally:
        await runtime.stop()
    assert posts_saying(slack, thread, RESUMING) == 1
    assert uploads(slack) == 1
    conversation, records = await stored(tmp_path, thread)
    assert conversation is not None and conversation.state is State.DONE
    assert [r.kind for r in records] == ["clarify", "research", "research"]
    # The resumed run asked the same question as the cut one.
    research_requests = [r for r in dashscope.requests if len(r.body["input"]["messages"]) > 1]
    assert research_requests[0].body["input"] == research_requests[1].body["input"]


async def test_sigkill_mid_run_records_its_tokens_and_resumes_then_a_second_cut_offers_retry(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    db = tmp_path / "bot.sqlite3"
    process, thread, _ = await research_cut_at_a_gate(
        slack, dashscope, tmp_path, RUN_LEASE_SECONDS="1"
    )
    await wait_until(lambda: inflight_rows(db) > 0)  # the heartbeat flushed the usage so far
    process.kill()
    await asyncio.wait_for(process.wait(), 10)

    gate = Gate()
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    dashscope.enqueue([*script[:6], gate, *script[6:]])
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        await gate.wait_reached(timeout=20)
        assert posts_saying(slack, thread, RESUMING) == 1
        _, records = await stored(tmp_path, thread)
        cut = [r for r in records if r.kind == "research"]
        assert len(cut) == 1 and cut[0].output_tokens > 0  # streamed before the kill
    finally:
        await runtime.stop()  # a second interruption, while resumed

    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        await slack.wait_for_call(
            "chat.postMessage",
            lambda c: c.args.get("thread_ts") == thread and "interrupted" in c.args["text"],
        )
        conversation = await runtime.services.conversations.get(key(thread))  # type: ignore[union-attr]
        assert conversation is not None and conversation.state is State.INTERRUPTED
        async with aiohttp.ClientSession() as session:
            bot = Harness(runtime, slack, dashscope, "http", session)
            dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
            await click(bot, RETRY_ACTION, thread)
            await slack.wait_for_call("files.completeUploadExternal", timeout=20)
    finally:
        await runtime.stop()
    assert posts_saying(slack, thread, RESUMING) == 1
    assert uploads(slack) == 1
    _, records = await stored(tmp_path, thread)
    assert [r.kind for r in records] == ["clarify", "research", "research", "research"]


async def test_questions_asked_during_research_are_answered_after_a_restart(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http")
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            thread = await start_conversation(bot)
            gate = Gate()
            script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
            dashscope.enqueue([*script[:6], gate, *script[6:]])
            await bot.send_event(message("Personalised learning", thread_ts=thread))
            await gate.wait_reached()
            await bot.send_event(message("Which source is newest?", thread_ts=thread))
            await slack.wait_for_call(
                "chat.postMessage",
                lambda c: c.args.get("thread_ts") == thread and "once the report" in str(c.args),
            )
        finally:
            await runtime.stop()

    dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    dashscope.enqueue(thinking_script(["Checking dates."], ["Source 1.1 is newest."]))
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        await slack.wait_for_call(  # streamed into the thread as it is written
            "chat.startStream",
            lambda c: c.args.get("thread_ts") == thread and "newest" in str(c.args),
            timeout=20,
        )
    finally:
        await runtime.stop()
    assert dashscope.requests[-1].body["input"]["messages"][-1] == {
        "role": "user",
        "content": "Which source is newest?",
    }


async def test_a_kept_question_reached_by_two_paths_at_once_is_answered_once(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    """After a restart, the start's sweep of kept questions and an owed delivery of the same
    thread can both find the question: it is asked of the model and answered once."""
    slack.streaming = False  # answers as whole messages, counted by their posts
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http")
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            thread = await start_conversation(bot)
            dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
            await bot.send_event(message("Personalised learning", thread_ts=thread))
            await slack.wait_for_call("files.completeUploadExternal", timeout=20)
            storage = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}")
            try:
                await storage.kept.keep(key(thread), "U1", "Which source is newest?", "1.5")
            finally:
                await storage.close()
            services = runtime.services
            assert services is not None
            dashscope.enqueue(thinking_script(["Checking dates."], ["Source 1.1 is newest."]))
            dashscope.enqueue(thinking_script(["Checking dates."], ["Source 1.1 is newest."]))
            research = services.research
            await asyncio.gather(research.answer_kept(), research.answer_kept())
            # The run's own end may have taken the question first: wait for its answer.
            await slack.wait_for_call(
                "chat.postMessage",
                lambda c: c.args.get("thread_ts") == thread and "newest" in str(c.args),
            )
            await wait_until(lambda: not kept_rows(tmp_path / "bot.sqlite3"))
        finally:
            await runtime.stop()
    assert posts_saying(slack, thread, "Source 1.1 is newest") == 1
    asked = [r for r in dashscope.requests if "Which source is newest?" in json.dumps(r.body)]
    assert len(asked) == 1

    # The question's own event handled again (its process died before marking it done): the
    # thread is done now, but the question was answered as a kept one.
    requests = len(dashscope.requests)
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        assert runtime.services is not None
        await runtime.services.research.reply(
            key(thread), "U1", "Which source is newest?", ts="1.5"
        )
    finally:
        await runtime.stop()
    assert posts_saying(slack, thread, "Source 1.1 is newest") == 1
    assert len(dashscope.requests) == requests


# --- bounded runs ----------------------------------------------------------------------------


async def test_a_stream_of_keepalives_that_never_ends_is_ended_after_run_max_seconds(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    planning = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1)[:3]
    keepalives = [keepalive_frame("req-ka") if i % 2 == 0 else Pause(0.3) for i in range(400)]
    endless = [*planning, *keepalives]
    async with aiohttp.ClientSession() as session:
        # KeepAlive frames count as frames: the idle limit (1 s) never ends this stream; the
        # run's own limit (3 s) does.
        runtime = await start_bot(
            slack,
            dashscope,
            tmp_path,
            "http",
            RUN_MAX_SECONDS="3",
            STREAM_IDLE_SECONDS="1",
            RUN_LEASE_SECONDS="1",
        )
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            thread = await start_conversation(bot)
            dashscope.enqueue(endless)
            await bot.send_event(message("Personalised learning", thread_ts=thread))
            await slack.wait_for_call(
                "chat.postMessage",
                lambda c: c.args.get("thread_ts") == thread and "longer than" in str(c.args),
                timeout=15,
            )
            conversation = await runtime.services.conversations.get(key(thread))  # type: ignore[union-attr]
            assert conversation is not None and conversation.state is State.FAILED
            assert "Retry" in notices(slack, thread)
        finally:
            await runtime.stop()


async def test_a_silent_stream_is_ended_after_stream_idle_seconds(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(
            slack, dashscope, tmp_path, "http", STREAM_IDLE_SECONDS="1", RUN_LEASE_SECONDS="1"
        )
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            thread = await start_conversation(bot)
            gate = Gate()
            script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
            dashscope.enqueue([*script[:3], gate, *script[3:]])
            await bot.send_event(message("Personalised learning", thread_ts=thread))
            await slack.wait_for_call(
                "chat.postMessage",
                lambda c: c.args.get("thread_ts") == thread and "sent nothing for" in str(c.args),
                timeout=15,
            )
            conversation = await runtime.services.conversations.get(key(thread))  # type: ignore[union-attr]
            assert conversation is not None and conversation.state is State.FAILED
            _, records = await stored(tmp_path, thread)
            assert [r.kind for r in records] == ["clarify", "research"]
        finally:
            await runtime.stop()


# --- delivered means posted ------------------------------------------------------------------


def thread_posts(slack: FakeSlack, thread: str, phrase: str) -> int:
    """Messages Slack accepted in the thread containing `phrase`."""
    return sum(
        1
        for m in slack.messages.values()
        if m.get("thread_ts") == thread and phrase in str(m.get("text") or "")
    )


async def test_a_report_summary_slack_refused_is_posted_later_without_a_second_file_or_canvas(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http", RUN_LEASE_SECONDS="1")
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            thread = await start_conversation(bot)
            dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
            await bot.send_event(message("Personalised learning", thread_ts=thread))
            await slack.wait_for_call("files.getUploadURLExternal")
            # The file goes through; the summary after it meets a Slack outage.
            slack.fail_next("chat.postMessage", status=200, error="internal_error")
            await slack.wait_for_call(
                "chat.postMessage",
                lambda c: c.args.get("thread_ts") == thread and "try again" in str(c.args),
            )
            # The progress message does not claim a report that is not there.
            await slack.wait_for_call(
                "chat.update", lambda c: "not in this thread yet" in json.dumps(c.args)
            )
            # A supervisor sweep delivers what is missing: the summary, not the file again.
            await slack.wait_for_call(
                "chat.postMessage",
                lambda c: c.args.get("thread_ts") == thread and bool(c.args.get("metadata")),
                count=3,  # the question, the refused summary, the delivered summary
                timeout=10,
            )
            for _ in range(100):
                conversation = await runtime.services.conversations.get(key(thread))  # type: ignore[union-attr]
                if conversation is not None and conversation.owed is None:
                    break
                await asyncio.sleep(0.05)
            assert conversation is not None and conversation.owed is None
        finally:
            await runtime.stop()
    assert uploads(slack) == 1  # the retry did not upload the file again
    marked = [
        m for m in slack.messages.values() if m.get("thread_ts") == thread and m.get("metadata")
    ]
    assert len(marked) == 2  # the clarifying question and the report summary, once each
    # Nor make a second canvas: the summary delivered later links the one made first.
    assert len(slack.calls_to("canvases.create")) == 1
    [canvas] = slack.canvases
    assert f"/docs/T1/{canvas}|" in json.dumps(marked[-1]["blocks"])


async def test_a_process_killed_after_making_the_canvas_leaves_one_canvas(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    """SIGKILL after canvases.create, before the file and the summary: the next process
    delivers them, linking the canvas the dead one made instead of making a second."""
    process = await bot_process(slack, dashscope, tmp_path, RUN_LEASE_SECONDS="1")
    dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await slack.socket_send("events_api", event_callback(mention))
    thread = str(mention["ts"])
    await slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == thread)
    held = slack.hold_next("files.getUploadURLExternal")  # the file upload, after the canvas
    dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    await slack.socket_send("events_api", event_callback(message("Personalised", thread_ts=thread)))
    await held.wait_reached(timeout=20)
    assert len(slack.canvases) == 1
    process.kill()
    await asyncio.wait_for(process.wait(), 10)

    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        [summary] = await slack.wait_for_call(
            "chat.postMessage",
            lambda c: c.args.get("thread_ts") == thread and "Took " in json.dumps(c.args),
            timeout=20,
        )
        for _ in range(100):  # settled once Slack took the summary
            conversation = await runtime.services.conversations.get(key(thread))  # type: ignore[union-attr]
            if conversation is not None and conversation.owed is None:
                break
            await asyncio.sleep(0.05)
        assert conversation is not None and conversation.owed is None
    finally:
        await runtime.stop()
    assert len(slack.calls_to("canvases.create")) == 1
    [canvas] = slack.canvases
    assert f"/docs/T1/{canvas}|" in json.dumps(summary.args["blocks"])
    assert uploads(slack) == 1


async def test_a_clarifying_question_slack_refused_is_posted_once_later(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http", RUN_LEASE_SECONDS="1")
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            dashscope.enqueue(clarification_script(QUESTION))
            slack.fail_next("chat.postMessage", status=200, error="internal_error")
            mention = app_mention(f"<@UBOT> {TOPIC}")
            await bot.send_event(mention)
            thread = str(mention["ts"])
            await slack.wait_for_call(
                "chat.postMessage",
                lambda c: c.args.get("thread_ts") == thread and "Which aspects" in str(c.args),
                count=2,  # refused, then redelivered
                timeout=15,
            )
            await asyncio.sleep(0.5)
        finally:
            await runtime.stop()
    assert thread_posts(slack, thread, "Which aspects") == 1
    assert len(dashscope.requests) == 1  # the question was not asked of the model again


async def test_a_run_killed_before_its_first_frame_records_its_prompt_and_retires_its_stop_button(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    """The request went out, the model had not answered yet: the prompt was charged all the
    same, and the cut run's progress message must not offer Stop for a run that is gone."""
    process = await bot_process(slack, dashscope, tmp_path, RUN_LEASE_SECONDS="1")
    dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await slack.socket_send("events_api", event_callback(mention))
    thread = str(mention["ts"])
    await slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == thread)
    gate = Gate()
    dashscope.enqueue([gate, *research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1)])
    await slack.socket_send("events_api", event_callback(message("Personalised", thread_ts=thread)))
    await gate.wait_reached(timeout=10)
    progress = [
        ts
        for ts, m in slack.messages.items()
        if m.get("thread_ts") == thread and STOP_ACTION in json.dumps(m.get("blocks"))
    ]
    assert len(progress) == 1
    process.kill()
    await asyncio.wait_for(process.wait(), 10)

    dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        await slack.wait_for_call("files.completeUploadExternal", timeout=20)
    finally:
        await runtime.stop()
    old = slack.messages[progress[0]]
    assert "interrupted" in old["text"] and STOP_ACTION not in json.dumps(old.get("blocks"))
    _, records = await stored(tmp_path, thread)
    research = [r for r in records if r.kind == "research"]
    # The cut call, from its prompt's token count (no figures came back), then the resumed one.
    assert len(research) == 2
    cut, resumed = research
    assert cut.request_id == "" and cut.output_tokens == 0
    assert cut.input_tokens > 0
    assert resumed.request_id and resumed.output_tokens > 0


async def test_an_answer_handled_as_the_process_stops_is_left_for_the_next_one(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    """The answer to the clarifying question was accepted, then SIGTERM came before it started
    the research: its user is not told to try again; the next process starts the research."""
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http")
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            thread = await start_conversation(bot)
            assert runtime.services is not None
            research = runtime.services.research
            await research.shutdown(drain=0)
            with pytest.raises(Deferred):
                await research.reply(key(thread), "U1", "Personalised learning", ts="1.7")
        finally:
            await runtime.stop()
    assert posts_saying(slack, thread, "try again") == 0
    conversation, _ = await stored(tmp_path, thread)
    assert conversation.state is State.AWAITING_CLARIFICATION

    # The conversation waits for that answer still: its event handled again starts research.
    dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    async with aiohttp.ClientSession() as session:
        runtime = await start_bot(slack, dashscope, tmp_path, "http")
        try:
            bot = Harness(runtime, slack, dashscope, "http", session)
            await bot.send_event(message("Personalised learning", thread_ts=thread, ts="1.7"))
            await slack.wait_for_call("files.completeUploadExternal", timeout=20)
        finally:
            await runtime.stop()


async def test_a_message_cut_too_many_times_is_given_up_with_a_sentence(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    """A mention whose handling was cut by dying processes three times is not tried a fourth
    time (it may be what kills them), but its person is told, not left waiting."""
    mention = app_mention(f"<@UBOT> {TOPIC}")
    body = event_callback(mention)
    db = tmp_path / "bot.sqlite3"
    storage = await Storage.open(f"sqlite+aiosqlite:///{db}")
    try:
        await storage.inbox.accept("T1", str(body["event_id"]), json.dumps(body), "gone:1")
        await storage.inbox.commit()
    finally:
        await storage.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE inbox SET attempts = 3")
    runtime = await start_bot(slack, dashscope, tmp_path, "http")
    try:
        [notice] = await slack.wait_for_call(
            "chat.postMessage", lambda c: "several times" in str(c.args.get("text"))
        )
    finally:
        await runtime.stop()
    assert notice.args["thread_ts"] == mention["ts"]
    assert dashscope.requests == []
