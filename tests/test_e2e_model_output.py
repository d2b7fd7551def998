"""Fuzzed model output reaches Slack and the ledger intact (issue 10, items 11 and 12), end to
end: the real Bolt app, slack_sdk and dashscope SDK against the fakes, over signed HTTP and
Socket Mode on SQLite and over HTTP on PostgreSQL."""

from __future__ import annotations

import copy
import json

from bot.conversation import ConversationKey, State
from bot.qwen.events import MAX_COUNT
from tests.conftest import Harness
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    Frame,
    RawFrame,
    Step,
    research_script,
    thinking_frame,
)
from tests.fakes.slack_payloads import message
from tests.test_e2e_answers import markdown, slash
from tests.test_e2e_research import REPORT_CHUNKS, start_conversation

LONE = "\ud800"  # json.dumps writes it as the escape "\ud800", which JSON allows


def fuzzed_report(steps: list[Step]) -> tuple[list[Step], int]:
    """The report frames with a lone surrogate in their text and an input figure of 2**64, the
    last with a negative output figure; and the highest output figure the stream reports."""
    answer = [
        i
        for i, s in enumerate(steps)
        if isinstance(s, Frame) and s.data["output"]["message"]["phase"] == "answer"
    ]
    out: list[Step] = list(steps)
    highest = 0
    for i in answer:
        step = steps[i]
        assert isinstance(step, Frame)
        data = copy.deepcopy(step.data)
        if data["output"]["message"]["content"]:
            data["output"]["message"]["content"] += LONE
        data["usage"]["input_tokens"] = 2**64
        if i == answer[-1]:
            data["usage"]["output_tokens"] = -7
        else:
            highest = max(highest, data["usage"]["output_tokens"])
        out[i] = RawFrame(json.dumps(data))
    return out, highest


async def test_a_lone_surrogate_and_a_huge_usage_figure_still_end_in_a_report(
    bot: Harness,
) -> None:
    thread = await start_conversation(bot)
    script, highest = fuzzed_report(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    lines = [s.line for s in script if isinstance(s, RawFrame)]
    assert lines and all('"input_tokens": 18446744073709551616' in line for line in lines)
    assert sum("\\ud800" in line for line in lines) == len(REPORT_CHUNKS)  # on the wire
    bot.dashscope.enqueue(script)
    await bot.send_event(message("Personalised learning", thread_ts=thread))
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    [summary] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "*Sources*" in json.dumps(c.args.get("blocks"))
    )
    assert summary.error is None

    [upload] = bot.slack.uploads.values()
    document = upload.content.decode("utf-8")
    assert document.startswith(REPORT_CHUNKS[0] + "\ufffd" + REPORT_CHUNKS[1])
    assert document.count("\ufffd") == len(REPORT_CHUNKS)

    conversation = await bot.services.conversations.get(ConversationKey("T1", "C1", thread))
    assert conversation is not None and conversation.state is State.DONE
    assert "\ufffd" in conversation.history[-1]["content"]
    research = (await bot.services.ledger.records("T1"))[-1]
    assert research.kind == "research"
    assert research.input_tokens == MAX_COUNT  # 2**64, clamped to what the ledger holds
    assert research.output_tokens == highest  # the last frame's -7 did not lower it
    assert research.cost_usd is not None


async def test_usage_that_goes_down_is_recorded_at_its_highest(bot: Harness) -> None:
    bot.dashscope.enqueue(
        [
            thinking_frame(reasoning="Let me think.", output_tokens=30, reasoning_tokens=25),
            thinking_frame(content="Yes.", output_tokens=40, reasoning_tokens=25),
            # A late frame with lower cumulative figures: the ledger must not follow it down.
            thinking_frame(
                finish_reason="stop", input_tokens=5, output_tokens=12, reasoning_tokens=3
            ),
        ]
    )
    _, url = await slash(bot, "/ask", "Is it?")
    _, answer = await bot.slack.wait_for_responses(url, 2)
    assert markdown(answer) == "Yes."
    [record] = await bot.services.ledger.records("T1")
    assert (record.input_tokens, record.output_tokens, record.reasoning_tokens) == (11, 40, 25)
    assert "51 tokens (11 in / 40 out, 25 reasoning)" in json.dumps(answer.body)
