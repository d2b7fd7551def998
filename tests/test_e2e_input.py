"""What people and attackers send, end to end (issue 10, items 4, 5 and 14): text with nothing
to research costs no model call; malformed or unsigned requests get a 4xx (over Socket Mode, an
ack) and one log line, no traceback and no work; Slack's escaping is undone once on the way to
the model and done once on the way back; group DMs; no link previews under summaries and
progress; the manifest asks only for what is used."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from bot.research import HOW_TO
from handlers.render import STOP_ACTION, TEXT_LIMIT, escaped
from tests.conftest import SIGNING_SECRET, Harness
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    clarification_script,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import (
    app_mention,
    block_action,
    event_callback,
    message,
    post_signed,
    signed_headers,
)
from tests.test_e2e_answers import ack_text, markdown, slash
from tests.test_e2e_faults import key
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS, TOPIC

REPO = Path(__file__).resolve().parent.parent
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"


def model_inputs(bot: Harness) -> list[Any]:
    return [r.body["input"]["messages"] for r in bot.dashscope.requests]


async def thread_posts(bot: Harness, thread: str, count: int = 1) -> list[dict[str, Any]]:
    calls = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == thread, count=count
    )
    return [c.args for c in calls]


# --- item 4: nothing to research, no model call -----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"<@UBOT> {ZERO_WIDTH}",  # only zero-width characters
        "<@UBOT> <@U0OTHER>",  # only a mention of another user
        f"<@UBOT>{ZERO_WIDTH} <@U0OTHER|ana> \u3164 <!here> ?!",
        "<@UBOT> --summary <@U0OTHER>",
    ],
)
async def test_a_mention_with_nothing_to_research_gets_the_help_sentence(
    bot: Harness, text: str
) -> None:
    mention = app_mention(text)
    await bot.send_event(mention)
    [post] = await thread_posts(bot, str(mention["ts"]))
    assert post["text"] == escaped(HOW_TO, TEXT_LIMIT)
    await asyncio.sleep(0.3)
    assert bot.dashscope.requests == []
    assert await bot.services.conversations.get(key(str(mention["ts"]))) is None


async def test_a_direct_message_of_zero_width_characters_starts_nothing(bot: Harness) -> None:
    dm = message(ZERO_WIDTH, channel="D1", channel_type="im")
    await bot.send_event(dm)
    [post] = await thread_posts(bot, str(dm["ts"]))
    assert "Mention me with a topic" in post["text"]
    await asyncio.sleep(0.3)
    assert bot.dashscope.requests == []


async def test_an_answer_of_only_a_mention_does_not_start_research(bot: Harness) -> None:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await bot.send_event(mention)
    thread = str(mention["ts"])
    await thread_posts(bot, thread)
    await bot.send_event(message(f"<@U0OTHER> {ZERO_WIDTH}", thread_ts=thread))
    await asyncio.sleep(0.5)
    assert len(bot.dashscope.requests) == 1  # the clarifying question only


async def test_commands_with_nothing_to_research_call_no_model(bot: Harness) -> None:
    result, _ = await slash(bot, "/research", ZERO_WIDTH)
    assert "/research <topic>" in ack_text(bot, result)
    result, _ = await slash(bot, "/ask", f"--fast {ZERO_WIDTH}")
    assert "Please add a question." in ack_text(bot, result)
    await asyncio.sleep(0.3)
    assert bot.dashscope.requests == []
    assert bot.slack.calls_to("chat.postMessage") == []


# --- item 5: malformed and unsigned requests ---------------------------------------------------


def _without_actions() -> dict[str, Any]:
    payload = block_action(STOP_ACTION, "{}")
    del payload["actions"]
    return payload


def _with_actions(actions: Any) -> dict[str, Any]:
    payload = block_action(STOP_ACTION, "{}")
    payload["actions"] = actions
    return payload


def _message_with_text(text: Any, kind: str = "message") -> dict[str, Any]:
    event = message("placeholder", channel="D1", channel_type="im")
    if kind == "app_mention":
        event = app_mention("placeholder")
    event["text"] = text
    return event_callback(event)


MALFORMED = {
    "block_actions without actions": (_without_actions, "interactive"),
    "block_actions with an empty list": (lambda: _with_actions([]), "interactive"),
    "block_actions with a string": (lambda: _with_actions("research_stop"), "interactive"),
    "a message whose text is null": (lambda: _message_with_text(None), "event"),
    "a message whose text is a list": (lambda: _message_with_text(["a", "b"]), "event"),
    "a mention whose text is null": (lambda: _message_with_text(None, "app_mention"), "event"),
}


def lines_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the bot logged (aiohttp's access log, one line per request, aside)."""
    return [r for r in caplog.records if r.name != "aiohttp.access"]


def assert_one_line_no_traceback(caplog: pytest.LogCaptureFixture, what: str) -> None:
    logged = lines_logged(caplog)
    assert len(logged) == 1, (what, [r.getMessage() for r in logged])
    [line] = logged
    assert line.levelno == logging.WARNING and line.exc_info is None, what
    assert "placeholder" not in line.getMessage()  # never the message text


def assert_no_work(bot: Harness) -> None:
    assert bot.dashscope.requests == []
    # Not even Bolt's own auth.test: refused before authorization.
    assert bot.slack.calls == []


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_requests_get_a_4xx_and_one_log_line(
    bot: Harness, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    build, kind = MALFORMED[case]
    caplog.set_level(logging.INFO)
    bot.slack.calls.clear()  # the start's auth.test
    if bot.mode == "http":
        status, _, _ = await post_signed(
            bot.session,
            bot.url,
            SIGNING_SECRET,
            build(),
            kind=kind,  # type: ignore[arg-type]
        )
        assert status == 400
    else:
        envelope = "events_api" if kind == "event" else "interactive"
        ack = await bot.slack.socket_send(envelope, build())  # acknowledged: never redelivered
        assert "payload" not in ack
    await asyncio.sleep(0.3)
    assert_one_line_no_traceback(caplog, case)
    assert_no_work(bot)


async def test_unsigned_or_unreadable_http_requests_are_refused_before_parsing(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    if bot.mode == "socket":
        pytest.skip("Socket Mode has no HTTP bodies or signatures")
    caplog.set_level(logging.INFO)
    bot.slack.calls.clear()
    form = "application/x-www-form-urlencoded"
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        ("unsigned, not JSON", b"{not json", {"Content-Type": "application/json"}, 401),
        ("unsigned, payload not JSON", b"payload=%7Bnot", {"Content-Type": form}, 401),
        (
            "unsigned, well formed",
            urlencode({"payload": json.dumps(block_action(STOP_ACTION, "{}"))}).encode(),
            {"Content-Type": form},
            401,
        ),
        ("unsigned, not UTF-8", b"\xff\xfe{", {"Content-Type": "application/json"}, 401),
    ]
    for name, body, ct in [
        ("signed, not JSON", "{not json", "application/json"),
        ("signed, a JSON list", '[{"type": "block_actions"}]', "application/json"),
        ("signed, payload not JSON", "payload=%7Bnot", form),
        ("signed, a channel that is a number", json.dumps({"type": "x", "channel": 3}), form),
    ]:
        cases.append(
            (name, body.encode(), signed_headers(SIGNING_SECRET, body, content_type=ct), 400)
        )
    for name, body, headers, expected in cases:
        caplog.clear()
        async with bot.session.post(bot.url, data=body, headers=headers) as resp:
            assert resp.status == expected, name
        assert_one_line_no_traceback(caplog, name)
    assert_no_work(bot)


# --- item 14: escaping, group DMs, unfurls, manifest -------------------------------------------


async def test_slack_escaping_is_undone_once_for_the_model(bot: Harness) -> None:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    # As Slack sends what someone typed: `compare R&D budgets <2020> and the entity &lt; itself`.
    text = "compare R&amp;D budgets &lt;2020&gt; and the entity &amp;lt; itself"
    mention = app_mention(f"<@UBOT> {text}")
    await bot.send_event(mention)
    await thread_posts(bot, str(mention["ts"]))
    [[first]] = model_inputs(bot)
    assert first["content"] == "compare R&D budgets <2020> and the entity &lt; itself"


async def test_ask_quotes_the_question_escaped_once(bot: Harness) -> None:
    bot.dashscope.enqueue(thinking_script(["Yes."], ["It is true."]))
    _, url = await slash(bot, "/ask", "is 1 &lt; 2 &amp;&amp; 3 &gt; 2?")
    _, answer = await bot.slack.wait_for_responses(url, 2)
    assert model_inputs(bot)[0][-1]["content"] == "is 1 < 2 && 3 > 2?"
    quoted = json.dumps(answer.body["blocks"])
    assert ">is 1 &lt; 2 &amp;&amp; 3 &gt; 2?" in quoted
    assert "&amp;lt;" not in quoted and "&amp;amp;" not in quoted
    assert markdown(answer) == "It is true."


async def test_research_command_quotes_the_topic_escaped_once(bot: Harness) -> None:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    await slash(bot, "/research", "R&amp;D &lt;AI&gt; spending")
    [root] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") is None
    )
    shown = json.dumps(root.args["blocks"])
    assert ">R&amp;D &lt;AI&gt; spending" in shown
    assert "&amp;amp;" not in shown and "&amp;lt;" not in shown
    await bot.slack.wait_for_call("chat.postMessage", lambda c: "Which aspects" in str(c.args))
    assert model_inputs(bot)[0][0]["content"] == "R&D <AI> spending"


async def test_group_dms_work_like_dms(bot: Harness) -> None:
    # A top-level group DM message starts a research conversation, no mention needed.
    bot.dashscope.enqueue(clarification_script(QUESTION))
    first = message(TOPIC, channel="G1", channel_type="mpim")
    await bot.send_event(first)
    thread = str(first["ts"])
    [question] = await thread_posts(bot, thread)
    assert question["channel"] == "G1" and "Which aspects" in json.dumps(question)
    assert model_inputs(bot)[0][0]["content"] == TOPIC
    # The answer in the thread arrives as message.mpim, without a mention, and starts research.
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    await bot.send_event(
        message("Personalised learning", channel="G1", channel_type="mpim", thread_ts=thread)
    )
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    assert model_inputs(bot)[1][-1]["content"] == "Personalised learning"

    # One that mentions the bot: Slack may send it twice (message.mpim and app_mention), and
    # it starts one conversation, with one model call.
    bot.dashscope.enqueue(clarification_script(QUESTION))
    start = message(f"<@UBOT> {TOPIC}", channel="G1", channel_type="mpim")
    mention = app_mention(f"<@UBOT> {TOPIC}", channel="G1", ts=str(start["ts"]))
    await bot.send_event(start)
    await bot.send_event(mention)
    await thread_posts(bot, str(start["ts"]))
    # The DM's words work too: `help` gets how to use the bot.
    asked = message("help", channel="G1", channel_type="mpim")
    await bot.send_event(asked)
    [helped] = await thread_posts(bot, str(asked["ts"]))
    assert "how to use it" in helped["text"]
    # A thread between people that the bot is not part of stays theirs.
    other = str(message("lunch?", channel="G1", channel_type="mpim")["ts"])
    await bot.send_event(message("noon", channel="G1", channel_type="mpim", thread_ts=other))
    await asyncio.sleep(0.3)
    assert len(bot.dashscope.requests) == 3
    assert not [
        c for c in bot.slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == other
    ]


async def test_summaries_and_progress_are_posted_without_link_previews(bot: Harness) -> None:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await bot.send_event(mention)
    thread = str(mention["ts"])
    await thread_posts(bot, thread)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2, pause=0.05))
    await bot.send_event(message("Personalised learning", thread_ts=thread))
    [summary] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "Took " in json.dumps(c.args), timeout=20
    )
    [progress] = [
        c for c in bot.slack.calls_to("chat.postMessage") if STOP_ACTION in json.dumps(c.args)
    ]
    for post in (summary, progress):
        assert post.args["unfurl_links"] is False and post.args["unfurl_media"] is False


def test_manifest_asks_for_what_the_bot_uses() -> None:
    manifest = yaml.safe_load((REPO / "manifest.yml").read_text(encoding="utf-8"))
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert "reactions:write" not in scopes  # never used
    assert "mpim:history" in scopes and "message.mpim" in events  # group DMs
    for scope, event in [
        ("channels:history", "message.channels"),
        ("groups:history", "message.groups"),
        ("im:history", "message.im"),
    ]:
        assert scope in scopes and event in events
