"""What Slack is sent fits its fields and carries no markup from outside (issue 10, items 1-3),
end to end: the real Bolt app, slack_sdk and dashscope SDK against the fakes, over signed HTTP
and Socket Mode on SQLite and over HTTP on PostgreSQL. The fake Slack runs strict here: it
refuses any block over a Block Kit limit, as Slack does."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Harness
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    Gate,
    clarification_script,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import app_mention, message
from tests.fakes.slack_server import view_problems
from tests.handlers.test_render_limits import FIFTY_TOOLS, PASTED_TABLE
from tests.test_e2e_answers import ack_text, markdown, slash
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS, TOPIC
from tests.test_e2e_settings import inputs, open_modal, submit

ANSWER = ["A table of ampersands ", "is still a table."]


def in_thread(ts: str) -> Any:
    return lambda call: call.args.get("thread_ts") == ts


# --------------------------------------------------------------------------- item 1


async def test_ask_with_a_pasted_html_table_reaches_the_channel(bot: Harness) -> None:
    bot.slack.strict = True
    assert PASTED_TABLE[:1500].count("&") >= 370
    bot.dashscope.enqueue(thinking_script(["Looking at the table."], ANSWER))
    _, url = await slash(bot, "/ask", PASTED_TABLE)
    status, answer = await bot.slack.wait_for_responses(url, 2)
    assert status.error is None and answer.error is None
    assert answer.body["replace_original"] is True
    assert markdown(answer) == "".join(ANSWER)
    quote = json.dumps(answer.body["blocks"][0])
    assert "&lt;table&gt;&lt;tr&gt;&lt;td&gt;&amp;&amp;&amp;" in quote
    assert "<table>" not in quote
    assert len(bot.slack.responses_to(url)) == 2


async def test_research_command_with_a_pasted_html_table_posts_the_whole_topic(
    bot: Harness,
) -> None:
    bot.slack.strict = True
    bot.dashscope.enqueue(clarification_script(QUESTION))
    await slash(bot, "/research", PASTED_TABLE)
    [root] = await bot.slack.wait_for_call("chat.postMessage", lambda c: "thread_ts" not in c.args)
    assert root.error is None
    quoted = "".join(b["text"]["text"] for b in root.args["blocks"])
    assert quoted.count("&amp;") == PASTED_TABLE.count("&")  # all of it, escaped once
    assert "<td>" not in json.dumps(root.args)
    await bot.slack.wait_for_call("chat.postMessage", lambda c: "Which aspects" in str(c.args))
    assert bot.dashscope.requests[0].body["input"]["messages"][0]["content"] == PASTED_TABLE


async def test_an_answer_slack_refuses_still_leaves_the_asker_a_plain_sentence(
    bot: Harness,
) -> None:
    gate = Gate()
    bot.dashscope.enqueue([gate, *thinking_script(["Hmm."], ANSWER)])
    _, url = await slash(bot, "/ask", "Why is the sky blue?")
    [status] = await bot.slack.wait_for_responses(url, 1)
    assert status.error is None
    bot.slack.refuse_responses(url, "invalid_blocks")  # Slack will not take the answer's blocks
    gate.release()
    posts = await bot.slack.wait_for_responses(url, 3)
    refused, fallback = posts[1], posts[2]
    assert refused.error == "invalid_blocks" and refused.body.get("blocks")
    assert fallback.error is None
    assert "blocks" not in fallback.body
    assert fallback.body["text"] == "".join(ANSWER)
    assert fallback.body["replace_original"] is True  # in place of the "thinking" status
    assert fallback.body["response_type"] == "in_channel"


async def test_a_thread_post_slack_refuses_is_posted_as_plain_text(bot: Harness) -> None:
    bot.slack.fail_next("chat.postMessage", status=200, error="invalid_blocks")
    mention = app_mention("<@UBOT> --bogus the use of AI in education")
    await bot.send_event(mention)
    refused, posted = await bot.slack.wait_for_call(
        "chat.postMessage", in_thread(mention["ts"]), count=2
    )
    assert refused.error == "invalid_blocks"
    assert posted.error is None and "blocks" not in posted.args
    assert "I don't know the option `--bogus`" in posted.args["text"]
    assert bot.dashscope.requests == []


# --------------------------------------------------------------------------- item 2


async def test_fifty_long_tool_names_leave_the_home_tab_and_the_modals_working(
    bot: Harness,
) -> None:
    bot.slack.strict = True
    view = await open_modal(bot)
    form = {
        "model": "qwen-deep-research-2025-12-15",
        "mcp_label": "knowledge-base",
        "mcp_url": "https://mcp.example.com/sse",
        "mcp_tools": ", ".join(FIFTY_TOOLS),
    }
    assert len(form["mcp_tools"]) <= 3000  # what the field lets an admin type
    ack = await submit(bot, view, form)
    assert ack["response_action"] == "update"
    assert view_problems(ack["view"]) == []  # the "Saved" modal renders

    # Saving refreshes the Home tab after the ack; opening it publishes it again.
    await bot.slack.wait_for_call("views.publish")
    await bot.send_event({"type": "app_home_opened", "user": "UUSER", "tab": "home"})
    for published in await bot.slack.wait_for_call("views.publish", count=2):
        assert published.error is None
        home = json.dumps(published.args["view"])
        assert f"`{FIFTY_TOOLS[0]}`" in home and "more" in home

    reopened = await open_modal(bot)  # open_modal asserts Slack took it
    assert inputs(reopened)["mcp_tools"]["element"]["initial_value"] == ", ".join(FIFTY_TOOLS)


async def test_an_unknown_option_of_three_thousand_letters_gets_a_short_sentence(
    bot: Harness,
) -> None:
    bot.slack.strict = True
    mention = app_mention(f"<@UBOT> --{'a' * 3000} {TOPIC}")
    await bot.send_event(mention)
    [notice] = await bot.slack.wait_for_call("chat.postMessage", in_thread(mention["ts"]))
    assert notice.error is None
    assert "I don't know the option `--aaaa" in notice.args["text"]
    assert len(notice.args["text"]) < 400
    assert bot.dashscope.requests == []


async def test_an_unknown_ask_flag_of_three_thousand_letters_gets_a_short_usage(
    bot: Harness,
) -> None:
    result, url = await slash(bot, "/ask", f"--{'b' * 3000} why?")
    said = ack_text(bot, result)
    assert "I don't know the option `--bbbb" in said and "Usage: `/ask" in said
    assert "b" * 100 not in said
    assert bot.slack.responses_to(url) == [] and bot.dashscope.requests == []


# --------------------------------------------------------------------------- item 3

HOSTILE_REFERENCES = [
    {
        "index_number": 1,
        "title": "Study <!here> | <@UADMIN> & co",
        "url": "https://evil.example/a> <!channel>",
        "description": "",
    },
    {
        "index_number": 2,
        "title": "Plain",
        "url": "https://ok.example/?a=1&b=2",
        "description": "",
    },
]


async def test_reference_urls_and_titles_never_become_mentions_or_links(bot: Harness) -> None:
    bot.slack.strict = True
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await bot.send_event(mention)
    await bot.slack.wait_for_call("chat.postMessage", in_thread(mention["ts"]))
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, HOSTILE_REFERENCES, rounds=1))
    await bot.send_event(message("Personalised learning", thread_ts=mention["ts"]))
    [summary] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "*Sources*" in json.dumps(c.args.get("blocks"))
    )
    assert summary.error is None
    sent = json.dumps([c.args for c in bot.slack.calls if c.method.startswith("chat.")])
    for markup in ("<!channel", "<!here", "<@UADMIN"):
        assert markup not in sent
    sources = next(
        b["text"]["text"] for b in summary.args["blocks"] if "*Sources*" in json.dumps(b)
    )
    assert "1. <https://evil.example/a%3E%20%3C!channel%3E|Study &lt;!here&gt; ¦ " in sources
    assert "2. <https://ok.example/?a=1&amp;b=2|Plain>" in sources
    assert DEFAULT_REFERENCES[0]["url"] not in sources
