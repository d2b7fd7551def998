"""Tried as a new user would, in Japanese (issue 11, "Done when"): open the bot in Slack's
AI-app view, pick a suggested prompt, watch the research with loading messages, stop it with
Slack's own button, rerun it, read the report as a canvas, see a quick answer appear as it is
written, rate it. Every sentence the bot writes on the way is Japanese; only the model's own
words (the question, the report, the answer) are as the model wrote them."""

from __future__ import annotations

import asyncio
import json
import re

from handlers.render import RETRY_ACTION, key_value
from tests.conftest import Harness
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    Gate,
    clarification_script,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import (
    agent_session_stopped,
    assistant_thread_started,
    block_action,
    feedback_press,
)
from tests.test_e2e_answers import slash
from tests.test_e2e_assistant import DM, dm, key
from tests.test_e2e_feedback import home_of, rated
from tests.test_e2e_research import QUESTION, REPORT, REPORT_CHUNKS
from tests.test_i18n import key as msgid
from tests.test_i18n import marked

ANSWER = ["全固体電池は", "エネルギー密度が高く、", "安全性にも優れます。"]
# What the bot writes that is not a sentence of its own: the model's words, and the words
# of the tests' fakes (reference titles).
MODEL_WORDS = [
    QUESTION,
    REPORT,
    *REPORT_CHUNKS,
    *(str(r["title"]) for r in DEFAULT_REFERENCES),
    *(str(r.get("description") or "") for r in DEFAULT_REFERENCES),
]
_FIELD = re.compile(r"\{[a-z_]+\}|[*_`:]")
NAMES = frozenset({"Qwen Deep Research"})  # the same in every language


def english_fragments() -> set[str]:
    """Pieces of the bot's English sentences (every marked sentence, cut at its fields and
    markup) long enough (three words or more) never to appear by chance."""
    pieces: set[str] = set()
    for sentence in marked():
        forms = sentence if isinstance(sentence, tuple) else (msgid(sentence),)
        for form in forms:
            for line in form.splitlines():
                for piece in _FIELD.split(line):
                    piece = piece.strip(" .,;()…•→-")
                    if len(piece.split()) >= 3:
                        pieces.add(piece)
    return pieces - NAMES


def everything_said(bot: Harness) -> str:
    """Everything the bot sent to Slack for people to read, the model's words taken out."""
    methods = (
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
        "assistant.threads.setStatus",
        "assistant.threads.setSuggestedPrompts",
        "assistant.threads.setTitle",
        "views.publish",
        "views.open",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    )
    said = json.dumps([c.args for c in bot.slack.calls if c.method in methods], ensure_ascii=False)
    said = said.replace("\\n", "\n")
    for words in sorted(MODEL_WORDS, key=len, reverse=True):
        if words:
            said = said.replace(json.dumps(words, ensure_ascii=False)[1:-1], "")
            said = said.replace(words, "")
    return said


async def test_a_new_japanese_user_tries_everything(bot: Harness) -> None:
    bot.slack.users["UUSER"]["locale"] = "ja-JP"

    # Opens the AI-app view: its prompts are Japanese.
    started = assistant_thread_started(channel=DM)
    await bot.send_event(started)
    thread = str(started["assistant_thread"]["thread_ts"])
    [prompts] = await bot.slack.wait_for_call("assistant.threads.setSuggestedPrompts")
    assert prompts.args["title"] == "リサーチするか、手早く質問してください:"
    [research_prompt, *_] = prompts.args["prompts"]
    assert research_prompt["title"] == "トピックをリサーチ"

    # Picks the research prompt: Slack sends its message as theirs.
    bot.dashscope.enqueue(clarification_script(QUESTION))
    await bot.send_event(dm(research_prompt["message"], thread))
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == thread and QUESTION in str(c.args)
    )
    topic = bot.dashscope.requests[0].body["input"]["messages"][0]["content"]
    assert topic == "電気自動車向け全固体電池の現状をリサーチして"
    assert bot.slack.thread_titles[(DM, thread)] == topic
    reading = bot.slack.calls_to("assistant.threads.setStatus")[0].args
    assert reading["status"] == "がリクエストを読んでいます…"
    assert reading["loading_messages"] == ["リクエストを読んでいます…", "確認の質問を考えています…"]

    # Answers the question: research runs, its status line follows the stage.
    gate = Gate(timeout=60)
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    bot.dashscope.enqueue([*script[:6], gate, *script[6:]])
    await bot.send_event(dm("1 kWh あたりのコストを中心に", thread))
    await gate.wait_reached(timeout=10)
    [searching] = await bot.slack.wait_for_call(
        "assistant.threads.setStatus", lambda c: c.args["status"] == "がウェブを検索しています…"
    )
    assert "情報源を読んでいます…" in searching.args["loading_messages"]
    assert bot.slack.sessions[(DM, thread)] == "processing"

    # Stops it with Slack's own Stop: told so, with a Retry button, in Japanese.
    await bot.send_event(agent_session_stopped(channel=DM, thread_ts=thread))
    [stopped] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "リサーチを停止しました" in c.args.get("text", "")
    )
    assert (
        stopped.args["text"] == "リサーチを停止しました。この実行でこれ以上の費用はかかりません。"
    )
    assert "再試行" in json.dumps(stopped.args["blocks"], ensure_ascii=False)
    await bot.slack.wait_for_call(
        "agents.sessions.setStatus", lambda c: c.args["status"] == "active"
    )
    assert not gate.released

    # Reruns it: the report arrives as a canvas, linked from a Japanese summary.
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    retry = block_action(RETRY_ACTION, key_value(key(thread)), channel_id=DM, thread_ts=thread)
    await bot.send(retry, "interactive")
    [summary] = await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: "所要" in json.dumps(c.args, ensure_ascii=False),
        timeout=20,
    )
    [canvas_id] = bot.slack.canvases
    assert bot.slack.canvases[canvas_id]["markdown"].startswith(REPORT)
    shown = json.dumps(summary.args["blocks"], ensure_ascii=False)
    assert f"/docs/T1/{canvas_id}|レポートを読む>" in shown
    assert "*出典*" in shown and "トークン" in shown and "入力" in shown and "推定 $" in shown

    # A quick answer, streamed into the channel as it is written.
    bot.dashscope.enqueue(thinking_script(["考える。"], ANSWER))
    await slash(bot, "/ask", "全固体電池の利点", channel="C1")
    [ended] = await bot.slack.wait_for_call("chat.stopStream")
    answer = bot.slack.messages[ended.args["ts"]]
    assert answer["text"] == "".join(ANSWER)
    assert bot.slack.calls_to("chat.startStream")
    footer = json.dumps(ended.args["blocks"], ensure_ascii=False)
    assert "思考あり" in footer and "推論を表示" in footer and "良い回答" in footer

    # Rates it: kept once, with the model and kind.
    await bot.send(feedback_press(answer, positive=True), "interactive")
    [share] = await rated(bot, positive=1, total=1)
    assert (share.kind, share.positive) == ("ask", 1)

    # The Home tab's figures read Japanese too.
    home = await home_of(bot, "UUSER")
    assert "このワークスペースの使用量" in home and "回の呼び出し" in home

    await asyncio.sleep(0.3)  # the last edits of the progress messages
    said = everything_said(bot)
    english = sorted(f for f in english_fragments() if f in said)
    assert not english, f"English the bot wrote for a ja-JP user: {english}"
