"""The user's language (issue 11, item 6): help, notices, buttons, the status line and the
assistant view's prompts in Japanese or Simplified Chinese, chosen from the person's Slack
locale (users.info with include_locale), English when Slack does not say. The model's own
words are not translated."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.research_options import SUMMARY
from bot.workspace_settings import MAINLINE, SNAPSHOT
from handlers.render import STOP_ACTION
from tests.conftest import Harness
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    Gate,
    clarification_script,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import app_mention, assistant_thread_started, message
from tests.fakes.slack_server import FakeSlack
from tests.test_e2e_answers import running, slash
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS, TOPIC
from tests.test_e2e_settings import MCP_URL, open_modal, submit

HELP_TITLE = {"ja": "Qwen Deep Research の使い方", "zh": "Qwen Deep Research 使用方法"}
HOW_TO = {"ja": "トピックを添えて私をメンション", "zh": "提及我并附上主题"}
READING = {"ja": "がリクエストを読んでいます…", "zh": "正在阅读你的请求…"}


def acked(bot: Harness, result: Any) -> str:
    """The text an acknowledgement carried, as the person reads it (over HTTP, Bolt sends an
    ack of text alone as plain text)."""
    if bot.mode == "http":
        try:
            body = json.loads(result[1])
        except ValueError:
            return str(result[1])
    else:
        body = result.get("payload") or {}
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


# --- every sentence: forms, figures, notices, errors (issue 11, item 6) ---------------------


async def test_the_settings_form_and_its_errors_in_japanese(bot: Harness) -> None:
    speaks(bot, "ja-JP", user="UADMIN")
    view = await open_modal(bot)
    shown = json.dumps(view, ensure_ascii=False)
    assert view["title"]["text"] == "リサーチ設定" and view["submit"]["text"] == "保存"
    labels = [b["label"]["text"] for b in view["blocks"] if b["type"] == "input"]
    assert labels[:5] == [
        "リサーチモデル",
        "その他のモデル名",
        "レポートの長さ",
        "確認の質問",
        "レポートの受け取り方",
    ]
    for english in ("Research model", "Report length", "Detailed report", "Another model"):
        assert english not in shown
    # A field to fix is named in Japanese, with its figures as they were written.
    form = {"model": MAINLINE, "mcp_label": "kb", "mcp_url": MCP_URL, "mcp_tools": "search"}
    ack = await submit(bot, view, form)
    assert ack["response_action"] == "errors"
    assert ack["errors"]["mcp_url"] == (
        f"MCP サーバーは `{SNAPSHOT}` モデルでのみ使えます。上でそのモデルを選ぶか、"
        f"`{MAINLINE}` のままにするなら MCP の欄を空にしてください。"
    )
    ack = await submit(bot, view, {"length": SUMMARY})
    assert ack["response_action"] == "update"
    saved = json.dumps(ack["view"], ensure_ascii=False)
    assert "保存しました。" in saved and "*レポートの長さ:* 要約" in saved


async def test_usage_figures_and_the_ask_flags_in_chinese(bot: Harness) -> None:
    speaks(bot, "zh-CN")
    result, _ = await slash(bot, "/ask", "--verbose 为什么天空是蓝色的")
    said = acked(bot, result)
    assert said.startswith("我不认识选项 `--verbose`。\n用法：`/ask [--model 模型名]")
    assert "only you see the answer" not in said

    bot.dashscope.enqueue(thinking_script(["想一想。"], ["因为瑞利散射。"]))
    bot.slack.outside_channels.add("C9")  # not a member: answered through the response URL
    _, url = await slash(bot, "/ask", "为什么天空是蓝色的", channel="C9")
    await bot.slack.wait_for_responses(url, 2)
    [record] = await bot.services.ledger.records("T1")
    _, url = await slash(bot, "/research", "usage")
    [usage] = await bot.slack.wait_for_responses(url)
    tokens = record.input_tokens + record.output_tokens
    assert usage.body["text"].startswith(f"本月用量：{tokens:,} 个 Token，")
    shown = json.dumps(usage.body["blocks"], ensure_ascii=False)
    assert "此工作区的用量" in shown and "累计" in shown and "1 次调用" in shown
    assert f"输入 {record.input_tokens:,} / 输出 {record.output_tokens:,}" in shown
    for english in ("All time", " calls", "tokens", "Top users", "est. $"):
        assert english not in shown


async def test_a_model_studio_error_in_japanese(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    slack.users["UUSER"]["locale"] = "ja-JP"
    async with running(slack, dashscope, tmp_path, DASHSCOPE_API_KEY="sk-wrong") as bot:
        mention = app_mention(f"<@UBOT> {TOPIC}")
        await bot.send_event(mention)
        [notice] = await slack.wait_for_call(
            "chat.postMessage", lambda c: c.args.get("thread_ts") == mention["ts"]
        )
    assert notice.args["text"] == (
        "ボットの Model Studio API キーが拒否されました。管理者が有効な DASHSCOPE_API_KEY"
        "（北京リージョン）を設定し、ボットを再起動する必要があります。"
    )
    assert "再試行" in json.dumps(notice.args["blocks"], ensure_ascii=False)


async def test_queue_and_budget_notices_in_japanese(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    slack.users["UUSER"]["locale"] = "ja-JP"
    env = {"USER_MAX_RUNNING": "1", "WORKSPACE_MONTHLY_TOKEN_BUDGET": "100000"}
    async with running(slack, dashscope, tmp_path, **env) as bot:
        gate = Gate(timeout=60)
        script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1)
        dashscope.enqueue([*script[:4], gate, *script[4:]])
        await bot.send_event(app_mention(f"<@UBOT> --no-clarify {TOPIC}"))
        await gate.wait_reached(timeout=10)
        dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
        # The same person's second research waits its turn, and is told so in Japanese.
        second = app_mention(f"<@UBOT> --no-clarify {TOPIC} 2")
        await bot.send_event(second)
        [queued] = await slack.wait_for_call(
            "chat.postMessage", lambda c: c.args.get("thread_ts") == second["ts"]
        )
        assert queued.args["text"].startswith("リサーチは順番待ちです。")
        assert "待ち行列で 1 番目" in queued.args["text"]
        gate.release()
        await slack.wait_for_call("files.completeUploadExternal", count=2, timeout=30)

    # Over its budget, the workspace is told so with the figures and the date as Japanese
    # writes them.
    used = sum(r.input_tokens + r.output_tokens for r in await bot.services.ledger.records("T1"))
    async with running(slack, dashscope, tmp_path, WORKSPACE_MONTHLY_TOKEN_BUDGET="10") as bot:
        third = app_mention(f"<@UBOT> {TOPIC} 3")
        await bot.send_event(third)
        [refused] = await slack.wait_for_call(
            "chat.postMessage", lambda c: c.args.get("thread_ts") == third["ts"]
        )
    text = refused.args["text"]
    assert (
        text.startswith("このワークスペースは ") and f"トークン予算 10 のうち {used:,} を" in text
    )
    assert re.search(r"予算がリセットされる \d{4}年\d{1,2}月1日 00:00 \(UTC\) まで", text), text
