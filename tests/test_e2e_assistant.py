"""The AI-app surface end to end (issue 11, item 1): the assistant view's threads in the app's
DM, their suggested prompts and title, the status line's loading messages following the
research stage, and the run as an agent session that Slack's own Stop ends."""

from __future__ import annotations

import asyncio

from bot.conversation import ConversationKey, State
from handlers.assistant import SUGGESTED_PROMPTS
from tests.conftest import Harness
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    Gate,
    clarification_script,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import agent_session_stopped, assistant_thread_started, message
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS

DM = "D1"
TOPIC = "Research the state of solid-state batteries in electric cars"


def key(thread: str) -> ConversationKey:
    return ConversationKey("T1", DM, thread)


def dm(text: str, thread: str, *, user: str = "UUSER") -> dict[str, object]:
    """A message in a thread of the assistant view: a `message.im` event with a thread_ts."""
    return message(text, channel=DM, channel_type="im", thread_ts=thread, user=user)


async def open_thread(bot: Harness) -> str:
    started = assistant_thread_started(channel=DM)
    await bot.send_event(started)
    thread = str(started["assistant_thread"]["thread_ts"])
    await bot.slack.wait_for_call("assistant.threads.setSuggestedPrompts")
    return thread


async def asked(bot: Harness, thread: str) -> None:
    """The first message of the view's thread, answered by the clarifying question."""
    bot.dashscope.enqueue(clarification_script(QUESTION))
    await bot.send_event(dm(TOPIC, thread))
    await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == thread and "Which aspects" in str(c.args),
    )


async def test_a_new_thread_gets_suggested_prompts(bot: Harness) -> None:
    thread = await open_thread(bot)
    shown = bot.slack.suggested_prompts[(DM, thread)]
    assert [p["title"] for p in shown["prompts"]] == [p["title"] for p in SUGGESTED_PROMPTS]
    assert len(shown["prompts"]) <= 4 and shown["title"]


async def test_a_message_in_the_view_starts_research_with_a_title_and_loading_messages(
    bot: Harness,
) -> None:
    thread = await open_thread(bot)
    await asked(bot, thread)
    # The same conversation a mention starts, keyed on the view's thread in the DM.
    conversation = await bot.services.conversations.get(key(thread))
    assert conversation is not None and conversation.state is State.AWAITING_CLARIFICATION
    assert bot.dashscope.requests[0].body["input"]["messages"] == [
        {"role": "user", "content": TOPIC}
    ]
    assert bot.slack.thread_titles[(DM, thread)] == TOPIC
    reading = bot.slack.calls_to("assistant.threads.setStatus")[0].args
    assert reading["status"] == "is reading your request…" and reading["loading_messages"]

    # The answer in the thread is a reply, as in a channel: research runs as an agent
    # session whose status line follows the stage.
    gate = Gate(timeout=60)
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    bot.dashscope.enqueue([*script[:6], gate, *script[6:]])
    await bot.send_event(dm("Cost per kWh, please", thread))
    await gate.wait_reached(timeout=10)
    await bot.slack.wait_for_call(
        "assistant.threads.setStatus", lambda c: c.args["status"] == "is searching the web…"
    )
    assert bot.slack.sessions[(DM, thread)] == "processing"
    gate.release()
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    await bot.slack.wait_for_call(
        "agents.sessions.setStatus", lambda c: c.args["status"] == "active"
    )
    assert bot.slack.sessions[(DM, thread)] == "active"
    await bot.slack.wait_for_call("assistant.threads.setStatus", lambda c: not c.args["status"])
    statuses = [c.args for c in bot.slack.calls_to("assistant.threads.setStatus")]
    searching = next(s for s in statuses if s["status"] == "is searching the web…")
    assert "Searching the web…" in searching["loading_messages"]
    assert statuses[-1]["status"] == ""  # cleared when the run ended


async def test_slacks_own_stop_ends_the_run_and_the_session(bot: Harness) -> None:
    thread = await open_thread(bot)
    await asked(bot, thread)
    gate = Gate(timeout=60)
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    bot.dashscope.enqueue([*script[:6], gate, *script[6:]])
    await bot.send_event(dm("Cost per kWh, please", thread))
    await gate.wait_reached(timeout=10)
    assert bot.slack.sessions[(DM, thread)] == "processing"

    # Someone else's stop is refused (only they are told); the starter's stops the run.
    bot.slack.users["UOTHER"] = {**bot.slack.users["UUSER"], "id": "UOTHER"}
    await bot.send_event(agent_session_stopped(channel=DM, thread_ts=thread, user="UOTHER"))
    [told] = await bot.slack.wait_for_call("chat.postEphemeral")
    assert told.args["user"] == "UOTHER" and "<@UUSER>" in told.args["text"]
    assert bot.slack.sessions[(DM, thread)] == "processing"

    await bot.send_event(agent_session_stopped(channel=DM, thread_ts=thread))
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "Research stopped" in c.args.get("text", "")
    )
    conversation = await bot.services.conversations.get(key(thread))
    assert conversation is not None and conversation.state is State.CANCELLED
    # The model's stream is closed at once (the gate never opened).
    for _ in range(100):  # up to five seconds
        if bot.dashscope.disconnects:
            break
        await asyncio.sleep(0.05)
    assert bot.dashscope.disconnects == 1 and not gate.released
    await bot.slack.wait_for_call(
        "agents.sessions.setStatus", lambda c: c.args["status"] == "active"
    )
    assert bot.slack.sessions[(DM, thread)] == "active"
    assert not bot.slack.calls_to("files.completeUploadExternal")


async def test_a_stop_with_nothing_running_still_ends_the_session(bot: Harness) -> None:
    thread = await open_thread(bot)
    await bot.send_event(agent_session_stopped(channel=DM, thread_ts=thread))
    await bot.slack.wait_for_call("agents.sessions.setStatus")
    assert bot.slack.sessions[(DM, thread)] == "active"


async def test_runs_go_on_where_the_platform_offers_no_sessions(bot: Harness) -> None:
    thread = await open_thread(bot)
    await asked(bot, thread)
    bot.slack.fail_next("agents.sessions.setStatus", status=200, error="not_allowed", times=5)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    await bot.send_event(dm("Cost per kWh, please", thread))
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)


async def test_the_suggested_usage_and_quick_answer_prompts(bot: Harness) -> None:
    thread = await open_thread(bot)
    await bot.send_event(dm("usage", thread))
    [usage] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "Usage this month" in c.args.get("text", "")
    )
    assert usage.args["thread_ts"] == thread

    bot.dashscope.enqueue(thinking_script(["Think."], ["RAG retrieves; fine-tuning trains."]))
    await bot.send_event(dm("ask: What is the difference between RAG and fine-tuning?", thread))
    # Streamed into the thread as it is written (a DM: no recipient needed, but given).
    [stopped] = await bot.slack.wait_for_call("chat.stopStream")
    answer = bot.slack.messages[stopped.args["ts"]]
    assert answer["thread_ts"] == thread and answer["text"] == "RAG retrieves; fine-tuning trains."
    body = bot.dashscope.requests[0].body
    assert body["input"]["messages"][-1]["content"] == (
        "What is the difference between RAG and fine-tuning?"
    )
    await asyncio.sleep(0.2)
    # Neither started a research conversation.
    assert await bot.services.conversations.get(key(thread)) is None
