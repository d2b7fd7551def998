"""The user's language (issue 11, item 6): help, notices, buttons, the status line and the
assistant view's prompts in Japanese or Simplified Chinese, chosen from the person's Slack
locale (users.info with include_locale), English when Slack does not say. The model's own
words are not translated."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.render import STOP_ACTION
from tests.conftest import Harness
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    clarification_script,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import app_mention, assistant_thread_started, message
from tests.test_e2e_answers import slash
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS, TOPIC

HELP_TITLE = {"ja": "Qwen Deep Research の使い方", "zh": "Qwen Deep Research 使用方法"}
HOW_TO = {"ja": "トピックを添えて私をメンション", "zh": "提及我并附上主题"}
READING = {"ja": "がリクエストを読んでいます…", "zh": "正在阅读你的请求…"}


def acked(bot: Harness, result: Any) -> str:
    """The text an acknowledgement carried, as the person reads it."""
    body = json.loads(result[1]) if bot.mode == "http" else result.get("payload") or {}
    return str(body.get("text", ""))


def speaks(bot: Harness, locale: str, user: str = "UUSER") -> None:
    bot.slack.users[user]["locale"] = locale


@pytest.mark.parametrize(("locale", "language"), [("ja-JP", "ja"), ("zh-CN", "zh")])
async def test_help_and_notices_in_the_users_language(
    bot: Harness, locale: str, language: str
) -> None:
    speaks(bot, locale)
    result, _ = await slash(bot, "/research", "help")
    assert HELP_TITLE[language] in acked(bot, result)
    # Asked for by locale, as Slack only says it then.
    lookups = bot.slack.calls_to("users.info")
    assert lookups and all(c.args.get("include_locale") in (True, "true", "1") for c in lookups)

    mention = app_mention("<@UBOT>")  # nothing to research: how to use the bot
    await bot.send_event(mention)
    [notice] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == mention["ts"]
    )
    assert HOW_TO[language] in notice.args["text"]


async def test_a_conversation_speaks_its_starters_language(bot: Harness) -> None:
    speaks(bot, "ja-JP")
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention(f"<@UBOT> {TOPIC}")
    await bot.send_event(mention)
    [question] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "Which aspects" in str(c.args)
    )
    # The status line is Japanese; the model's question is as the model wrote it.
    [status] = bot.slack.calls_to("assistant.threads.setStatus")
    assert status.args["status"] == READING["ja"]
    assert all(m.isascii() is False for m in status.args["loading_messages"])
    assert question.args["blocks"][0]["text"] == QUESTION

    # The research's progress message, its buttons and the report's summary: Japanese.
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2, pause=0.05))
    await bot.send_event(message("Personalised learning", thread_ts=str(mention["ts"])))
    [summary] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "所要" in json.dumps(c.args, ensure_ascii=False), timeout=20
    )
    shown = json.dumps(summary.args["blocks"], ensure_ascii=False)
    assert "*出典*" in shown and "良い回答" in shown
    [progress] = [
        c for c in bot.slack.calls_to("chat.postMessage") if STOP_ACTION in json.dumps(c.args)
    ]
    assert "停止" in json.dumps(progress.args["blocks"], ensure_ascii=False)
    edits = json.dumps([c.args for c in bot.slack.calls_to("chat.update")], ensure_ascii=False)
    assert "検索ラウンド" in edits and "件の情報源" in edits


async def test_the_assistant_views_prompts_in_the_users_language(bot: Harness) -> None:
    speaks(bot, "ja-JP")
    await bot.send_event(assistant_thread_started(channel="D1"))
    [call] = await bot.slack.wait_for_call("assistant.threads.setSuggestedPrompts")
    titles = [p["title"] for p in call.args["prompts"]]
    assert titles == ["トピックをリサーチ", "クイック回答", "ワークスペースの使用量", "使い方"]
    # The words the bot recognises stay as they are.
    assert [p["message"] for p in call.args["prompts"]][2:] == ["usage", "help"]
    assert call.args["prompts"][1]["message"].startswith("ask: ")


async def test_english_when_slack_does_not_say(bot: Harness) -> None:
    speaks(bot, "ja-JP")
    bot.slack.fail_next("users.info", status=200, error="user_not_found", times=3)
    result, _ = await slash(bot, "/research", "help")
    assert "how to use it" in acked(bot, result)


async def test_a_quick_answer_in_japanese(bot: Harness) -> None:
    speaks(bot, "ja-JP")
    bot.dashscope.enqueue(thinking_script(["考える。"], ["空が青いのは散乱のためです。"]))
    await slash(bot, "/ask", "なぜ空は青いの", channel="C1")
    [stopped] = await bot.slack.wait_for_call("chat.stopStream")
    [root] = [c for c in bot.slack.calls_to("chat.postMessage") if not c.args.get("thread_ts")]
    assert "さんの質問" in json.dumps(root.args["blocks"], ensure_ascii=False)
    buttons = json.dumps(stopped.args["blocks"], ensure_ascii=False)
    assert "推論を表示" in buttons and "良い回答" in buttons
    [status] = bot.slack.calls_to("assistant.threads.setStatus")
    assert status.args["status"] == "が考えています…"
