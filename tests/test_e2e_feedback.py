"""Feedback (issue 11, item 4): report summaries and answers carry Slack's feedback buttons; a
press is recorded once per person and message (a second press changes it) with the model, the
kind and the workspace, and the Home tab shows admins the share of 👍 this month."""

from __future__ import annotations

import asyncio
import json

from bot.feedback import FeedbackShare
from tests.conftest import Harness
from tests.fakes.dashscope_server import thinking_script
from tests.fakes.slack_payloads import event_callback, feedback_press, next_ts
from tests.fakes.slack_server import block_kit_problems
from tests.test_e2e_answers import slash
from tests.test_e2e_canvas import research


async def rated(bot: Harness, *, positive: int, total: int) -> list[FeedbackShare]:
    """The workspace's ratings once they add up to `total` with `positive` 👍 (a press is
    recorded after its acknowledgement)."""
    async with asyncio.timeout(10):
        while True:
            shares = await bot.services.feedback.shares("T1", since=0)
            if (sum(s.positive for s in shares), sum(s.total for s in shares)) == (positive, total):
                return shares
            await asyncio.sleep(0.05)


async def home_of(bot: Harness, user: str) -> str:
    before = len([c for c in bot.slack.calls_to("views.publish") if c.args["user_id"] == user])
    await bot.send(
        event_callback({"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home"}),
        "event",
    )
    calls = await bot.slack.wait_for_call(
        "views.publish", lambda c: c.args["user_id"] == user, count=1 + before
    )
    return json.dumps(calls[-1].args["view"], ensure_ascii=False)


async def test_a_report_rating_is_kept_once_per_person_and_shown_to_admins(bot: Harness) -> None:
    _, summary = await research(bot)
    posted = bot.slack.messages[
        next(
            ts for ts, m in bot.slack.messages.items() if m.get("blocks") == summary.args["blocks"]
        )
    ]
    assert not block_kit_problems(posted["blocks"])

    await bot.send(feedback_press(posted, positive=True), "interactive")
    await rated(bot, positive=1, total=1)
    await bot.send(feedback_press(posted, positive=False), "interactive")  # changed their mind
    await rated(bot, positive=0, total=1)
    await bot.send(feedback_press(posted, positive=True, user_id="UADMIN"), "interactive")
    [share] = await rated(bot, positive=1, total=2)
    assert (share.model, share.kind, share.positive, share.total) == (
        "qwen-deep-research",
        "report",
        1,
        2,
    )
    assert await bot.services.feedback.shares("T2", since=0) == []

    home = await home_of(bot, "UADMIN")
    assert "Feedback this month" in home
    assert "`qwen-deep-research` · reports: :+1: 50% of 2 ratings" in home
    assert "Feedback this month" not in await home_of(bot, "UUSER")


async def test_a_quick_answer_carries_the_buttons_and_a_press_is_recorded(bot: Harness) -> None:
    bot.dashscope.enqueue(thinking_script(["Hmm."], ["Blue light scatters most."]))
    _, url = await slash(bot, "/ask", "Why is the sky blue?")
    _, answer = await bot.slack.wait_for_responses(url, 2)
    blocks = answer.body["blocks"]
    assert any(b["type"] == "context_actions" for b in blocks)
    assert not block_kit_problems(blocks)
    shown = {"channel": "C1", "ts": next_ts(), "blocks": blocks}
    for _ in range(2):  # the same press twice is one rating
        await bot.send(feedback_press(shown, positive=True), "interactive")
        [share] = await rated(bot, positive=1, total=1)
    assert (share.model, share.kind, share.positive, share.total) == ("qwen-plus", "ask", 1, 1)


async def test_a_forged_press_records_nothing(bot: Harness) -> None:
    shown = {
        "channel": "C1",
        "ts": next_ts(),
        "blocks": [
            {
                "type": "context_actions",
                "elements": [
                    {
                        "type": "feedback_buttons",
                        "action_id": "feedback",
                        "positive_button": {
                            "text": {"type": "plain_text", "text": "+"},
                            "value": "x",
                        },
                        "negative_button": {
                            "text": {"type": "plain_text", "text": "-"},
                            "value": "y",
                        },
                    }
                ],
            }
        ],
    }
    await bot.send(feedback_press(shown, positive=True), "interactive")
    await asyncio.sleep(0.3)  # time for a wrongful record to show
    assert await bot.services.feedback.shares("T1", since=0) == []
