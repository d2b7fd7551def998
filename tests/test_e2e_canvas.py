"""Reports as canvases (issue 11, item 2): the report becomes a Slack canvas for the thread's
channel, linked from the summary, beside the Markdown file, as the workspace chose; where
Slack will not make a canvas the file arrives and no canvas is mentioned."""

from __future__ import annotations

import json

import pytest

from bot.report import Delivery
from bot.workspace_settings import MAINLINE, SettingsForm
from tests.conftest import Harness
from tests.fakes.dashscope_server import DEFAULT_REFERENCES, research_script
from tests.fakes.slack_payloads import message
from tests.fakes.slack_server import Call
from tests.test_e2e_research import REPORT, REPORT_CHUNKS, start_conversation


async def research(bot: Harness) -> tuple[str, Call]:
    """A whole research conversation; (thread, the summary post)."""
    thread = await start_conversation(bot)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    await bot.send_event(message("Personalised learning, please", thread_ts=thread))
    [summary] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "Took " in json.dumps(c.args), timeout=20
    )
    return thread, summary


async def choose(bot: Harness, delivery: Delivery) -> None:
    form = SettingsForm(model=MAINLINE, delivery=delivery.value)
    await bot.services.settings.save("T1", "UADMIN", form)


def thread_posts(bot: Harness, thread: str) -> str:
    return json.dumps(
        [
            c.args
            for c in bot.slack.calls_to("chat.postMessage")
            if c.args.get("thread_ts") == thread
        ]
    )


async def test_the_report_is_a_canvas_linked_in_the_thread_and_a_file(bot: Harness) -> None:
    bot.slack.free_plan = True  # a free workspace makes canvases only for a channel
    thread, summary = await research(bot)
    [canvas_id] = bot.slack.canvases
    canvas = bot.slack.canvases[canvas_id]
    # Created for the thread's channel, with the report's Markdown: headings, the text as the
    # model wrote it, and the numbered sources.
    assert canvas["channel_id"] == "C1"
    assert canvas["title"] == "AI in Education"
    assert canvas["markdown"].startswith(REPORT)
    for ref in DEFAULT_REFERENCES:
        assert f"{ref['index_number']}. [{ref['title']}]({ref['url']})" in canvas["markdown"]
    link = f"https://test.slack.com/docs/T1/{canvas_id}"
    assert f"<{link}|Read the report>" in json.dumps(summary.args["blocks"])
    [upload] = bot.slack.uploads.values()
    assert upload.thread_ts == thread and upload.content.decode() == canvas["markdown"]


@pytest.mark.parametrize(
    "error", ["free_team_canvas_limit_exceeded", "missing_scope", "canvas_creation_failed"]
)
async def test_no_canvas_means_the_file_and_no_word_of_a_canvas(bot: Harness, error: str) -> None:
    await choose(bot, Delivery.CANVAS)  # even where the workspace wants the canvas alone
    bot.slack.fail_next("canvases.create", status=200, error=error)
    thread, _ = await research(bot)
    assert not bot.slack.canvases
    [upload] = bot.slack.uploads.values()
    assert upload.thread_ts == thread and upload.content.decode().startswith(REPORT)
    posts = thread_posts(bot, thread).lower()
    assert "canvas" not in posts and "read the report" not in posts


async def test_canvas_only_and_file_only(bot: Harness) -> None:
    await choose(bot, Delivery.CANVAS)
    _, summary = await research(bot)
    assert len(bot.slack.canvases) == 1 and not bot.slack.uploads
    assert "Read the report" in json.dumps(summary.args["blocks"])

    await choose(bot, Delivery.FILE)
    bot.slack.calls.clear()
    await research(bot)
    assert len(bot.slack.canvases) == 1  # no second canvas
    assert not bot.slack.calls_to("canvases.create")
    assert len(bot.slack.uploads) == 1
