"""Stop is checked against who pressed it and where (issue 10, item 6): it acts only on the
conversation's own progress message, and only for the person who started the run or a
workspace admin; anyone else is told, in a message only they see, who can stop it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bot.conversation import State
from handlers.render import STOP_ACTION, key_value
from tests.conftest import Harness
from tests.fakes.dashscope_server import DEFAULT_REFERENCES, Gate, research_script
from tests.fakes.slack_payloads import block_action, message
from tests.test_e2e_faults import key
from tests.test_e2e_research import REPORT_CHUNKS, start_conversation

OTHER = "UOTHER"  # a member of the workspace who is not an admin and did not start the run


async def running_research(bot: Harness) -> tuple[str, str, Gate]:
    """A research run started by UUSER, its stream parked at a gate: (thread, progress ts)."""
    bot.slack.users[OTHER] = {**bot.slack.users["UUSER"], "id": OTHER, "name": "other"}
    thread = await start_conversation(bot)
    gate = Gate(timeout=60)
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    bot.dashscope.enqueue([*script[:6], gate, *script[6:]])
    await bot.send_event(message("Personalised learning", thread_ts=thread))
    await gate.wait_reached(timeout=10)
    conversation = await bot.services.conversations.get(key(thread))
    assert conversation is not None and conversation.progress_ts is not None
    assert conversation.user_id == "UUSER"
    return thread, conversation.progress_ts, gate


async def press_stop(
    bot: Harness, thread: str, *, user: str, channel: str = "C1", message_ts: str
) -> None:
    payload = block_action(
        STOP_ACTION,
        key_value(key(thread)),
        user_id=user,
        channel_id=channel,
        message_ts=message_ts,
        thread_ts=thread,
    )
    await bot.send(payload, "interactive")


def ephemerals(bot: Harness) -> list[dict[str, Any]]:
    return [c.args for c in bot.slack.calls_to("chat.postEphemeral")]


async def state(bot: Harness, thread: str) -> State:
    conversation = await bot.services.conversations.get(key(thread))
    assert conversation is not None
    return conversation.state


async def test_stop_from_someone_else_is_refused_with_who_can_stop_it(bot: Harness) -> None:
    thread, progress_ts, gate = await running_research(bot)

    # The example: another user, and another channel as the button's container.
    await press_stop(bot, thread, user=OTHER, channel="C2", message_ts=progress_ts)
    # Another user on the real progress message: told who can stop it, only them.
    await press_stop(bot, thread, user=OTHER, message_ts=progress_ts)
    [told] = await bot.slack.wait_for_call("chat.postEphemeral")
    assert told.args["user"] == OTHER
    assert told.args["channel"] == "C1" and told.args["thread_ts"] == thread
    assert told.args["text"] == (
        "Only <@UUSER>, who started this research, or a workspace admin can stop it."
    )
    # The starter pressing a Stop button that is not on the progress message: nothing.
    await press_stop(bot, thread, user="UUSER", message_ts=thread)
    await press_stop(bot, thread, user="UUSER", channel="C2", message_ts=progress_ts)

    await asyncio.sleep(0.5)  # time for a wrongful stop to show
    assert bot.services.research.is_running(key(thread))
    assert await state(bot, thread) is State.RESEARCHING
    assert bot.dashscope.disconnects == 0
    assert len(ephemerals(bot)) == 1  # the forged container got no answer at all
    assert "Research stopped" not in json.dumps(
        [c.args for c in bot.slack.calls_to("chat.postMessage")]
    )

    # The run goes on to its report.
    gate.release()
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    assert await state(bot, thread) is State.DONE


async def test_the_starter_and_a_workspace_admin_can_stop(bot: Harness) -> None:
    thread, progress_ts, _gate = await running_research(bot)
    await press_stop(bot, thread, user="UADMIN", message_ts=progress_ts)
    await bot.dashscope.wait_for_disconnects(1)
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "Research stopped" in c.args.get("text", "")
    )
    assert await state(bot, thread) is State.CANCELLED
    assert ephemerals(bot) == []


async def test_stop_when_slack_cannot_say_who_is_an_admin(bot: Harness) -> None:
    thread, progress_ts, gate = await running_research(bot)
    bot.slack.fail_next("users.info", status=200, error="fatal_error")
    await press_stop(bot, thread, user=OTHER, message_ts=progress_ts)
    [told] = await bot.slack.wait_for_call("chat.postEphemeral")
    assert told.args["user"] == OTHER
    assert "Only <@UUSER>, who started this research, or a workspace admin" in told.args["text"]
    assert "try again" in told.args["text"]
    assert await state(bot, thread) is State.RESEARCHING

    # The starter may stop it.
    await press_stop(bot, thread, user="UUSER", message_ts=progress_ts)
    await bot.dashscope.wait_for_disconnects(1)
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "Research stopped" in c.args.get("text", "")
    )
    assert await state(bot, thread) is State.CANCELLED
    gate.release()
