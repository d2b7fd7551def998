"""Quick answers, follow-ups, `/research` and usage end to end: the real Bolt app, slack_sdk and
dashscope SDK against the local fakes, over signed HTTP and over Socket Mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bot.conversation import ConversationKey, State
from handlers.answer_render import (
    NEXT_PAGE_ACTION,
    PREVIOUS_PAGE_ACTION,
    RESEARCH_DEEPER_ACTION,
    SHOW_REASONING_ACTION,
)
from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    HttpError,
    clarification_script,
    research_script,
    thinking_script,
)
from tests.fakes.slack_payloads import app_mention, block_action, message
from tests.fakes.slack_payloads import slash_command as slash_payload
from tests.fakes.slack_server import Call, FakeSlack, ResponsePost
from tests.test_e2e_research import QUESTION, REPORT, REPORT_CHUNKS, TOPIC, start_conversation

REASONING = ["Rayleigh scattering ", "favours short wavelengths."]
ANSWER = ["The sky is blue because ", "air scatters blue light the most."]


# A channel the bot has not joined: `/ask` answers there through the command's response URL
# as whole messages. Where the bot can post, the answer streams into a thread instead
# (tests/test_e2e_streaming.py).
OUTSIDE = "COUT"


async def slash(
    bot: Harness, command: str, text: str, *, channel: str | None = None
) -> tuple[Any, str]:
    """Run a slash command (`/ask` from a channel the bot is not in, unless `channel` says
    otherwise); returns (what the ack carried, the command's response_url)."""
    url = bot.slack.response_url()
    bot.slack.outside_channels.add(OUTSIDE)
    if channel is None:
        channel = OUTSIDE if command == "/ask" else "C1"
    payload = slash_payload(command, text, response_url=url, channel_id=channel)
    result = await bot.send(payload, "command")
    return result, url


def ack_text(bot: Harness, result: Any) -> str:
    if bot.mode == "http":
        return str(result[1])
    return json.dumps(result.get("payload") or {})


def buttons(blocks: Any) -> dict[str, str]:
    """action_id -> value of every button in a message's blocks."""
    return {
        e["action_id"]: e["value"]
        for b in blocks or []
        if b.get("type") == "actions"
        for e in b["elements"]
    }


def markdown(post: ResponsePost | Call) -> str:
    body = post.body if isinstance(post, ResponsePost) else post.args
    return "".join(b["text"] for b in body.get("blocks") or [] if b["type"] == "markdown")


@asynccontextmanager
async def running(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path, mode: str = "http", **env: str
) -> AsyncIterator[Harness]:
    """The bot with extra settings (the `bot` fixture takes none)."""
    runtime = await start_bot(slack, dashscope, tmp_path, mode, **env)
    async with aiohttp.ClientSession() as session:
        try:
            yield Harness(runtime, slack, dashscope, mode, session)
        finally:
            await runtime.stop()


# --- /ask --------------------------------------------------------------------------------------


async def test_ask_answers_in_channel_with_reasoning_behind_a_button(bot: Harness) -> None:
    bot.dashscope.enqueue(thinking_script(REASONING, ANSWER))
    result, url = await slash(bot, "/ask", "Why is the sky blue?")
    if bot.mode == "socket":
        assert result["_elapsed"] < 3
    status, answer = await bot.slack.wait_for_responses(url, 2)

    # A status first, in the channel, with the question quoted; then the answer in its place.
    assert status.body["response_type"] == "in_channel"
    assert "is thinking" in json.dumps(status.body)
    assert ">Why is the sky blue?" in json.dumps(status.body)
    assert answer.error is None
    assert answer.body["response_type"] == "in_channel"
    assert answer.body["replace_original"] is True
    assert ">Why is the sky blue?" in json.dumps(answer.body["blocks"])
    assert markdown(answer) == "".join(ANSWER).strip()
    assert "Rayleigh" not in json.dumps(answer.body)  # the reasoning is not inline
    assert len(bot.slack.responses_to(url)) == 2

    [request] = bot.dashscope.requests
    assert request.body["model"] == "qwen-plus"
    assert request.body["input"]["messages"] == [
        {"role": "user", "content": "Why is the sky blue?"}
    ]
    params = request.body["parameters"]
    assert params["enable_thinking"] is True and params["result_format"] == "message"
    assert params["incremental_output"] is True and "thinking_budget" not in params

    [record] = await bot.services.ledger.records("T1")
    assert (record.kind, record.model, record.user_id, record.channel_id) == (
        "answer",
        "qwen-plus",
        "UUSER",
        OUTSIDE,
    )
    assert record.reasoning_tokens > 0 and record.output_tokens > record.reasoning_tokens
    assert record.cost_usd is None  # qwen-plus has no seeded price: tokens only
    assert f"{record.input_tokens + record.output_tokens:,} tokens" in json.dumps(answer.body)

    # The button opens a modal with the reasoning.
    value = buttons(answer.body["blocks"])[SHOW_REASONING_ACTION]
    await bot.send(block_action(SHOW_REASONING_ACTION, value), "interactive")
    [opened] = await bot.slack.wait_for_call("views.open")
    assert opened.error is None
    view_text = json.dumps(opened.args["view"])
    assert "".join(REASONING) in view_text
    assert opened.args["view"]["type"] == "modal"


async def test_long_reasoning_pages_through_the_modal(bot: Harness) -> None:
    steps = [f"Step {i}: " + "consider the evidence carefully. " * 30 + "\n" for i in range(80)]
    bot.dashscope.enqueue(thinking_script(steps, ["Done."]))
    _, url = await slash(bot, "/ask", "A hard one")
    _, answer = await bot.slack.wait_for_responses(url, 2)
    value = buttons(answer.body["blocks"])[SHOW_REASONING_ACTION]
    await bot.send(block_action(SHOW_REASONING_ACTION, value), "interactive")
    [opened] = await bot.slack.wait_for_call("views.open")
    assert opened.error is None
    first = opened.args["view"]
    assert "Step 0:" in json.dumps(first) and "Step 79:" not in json.dumps(first)
    next_value = buttons(first["blocks"])[NEXT_PAGE_ACTION]

    click = block_action(NEXT_PAGE_ACTION, next_value)
    view_id = next(iter(bot.slack.views))
    click["container"] = {"type": "view", "view_id": view_id}
    click["view"] = {"id": view_id, "type": "modal"}
    del click["message"]
    await bot.send(click, "interactive")
    [updated] = await bot.slack.wait_for_call("views.update")
    assert updated.error is None and updated.args["view_id"] == view_id
    assert "Page 2 of" in json.dumps(updated.args["view"])
    assert PREVIOUS_PAGE_ACTION in buttons(updated.args["view"]["blocks"])


async def test_ask_flags_private_fast_and_another_model(bot: Harness) -> None:
    bot.dashscope.enqueue(thinking_script([], ["Paris."]))
    _, url = await slash(bot, "/ask", "--private --fast --model qwen-turbo capital of France?")
    status, answer = await bot.slack.wait_for_responses(url, 2)
    assert status.body["response_type"] == answer.body["response_type"] == "ephemeral"
    assert markdown(answer) == "Paris."
    assert SHOW_REASONING_ACTION not in buttons(answer.body["blocks"])  # nothing to show
    body = bot.dashscope.requests[0].body
    assert body["model"] == "qwen-turbo"
    assert body["parameters"]["enable_thinking"] is False
    assert body["input"]["messages"][0]["content"] == "capital of France?"


async def test_ask_with_a_thinking_only_model(bot: Harness) -> None:
    bot.dashscope.enqueue(thinking_script(["Let me count."], ["Three r's."]))
    _, url = await slash(bot, "/ask", "--model qwq-plus --budget 300 r's in strawberry?")
    _, answer = await bot.slack.wait_for_responses(url, 2)
    params = bot.dashscope.requests[0].body["parameters"]
    assert "enable_thinking" not in params and "thinking_budget" not in params
    assert markdown(answer) == "Three r's."
    assert "does not take a thinking budget" in json.dumps(answer.body)
    assert SHOW_REASONING_ACTION in buttons(answer.body["blocks"])


async def test_ask_budget_flag_reaches_a_hybrid_model(bot: Harness) -> None:
    bot.dashscope.enqueue(thinking_script(["Short."], ["Yes."]))
    _, url = await slash(bot, "/ask", "--budget 300 is it?")
    await bot.slack.wait_for_responses(url, 2)
    params = bot.dashscope.requests[0].body["parameters"]
    assert params["enable_thinking"] is True and params["thinking_budget"] == 300


async def test_ask_usage_text_for_an_empty_question_or_unknown_flag(bot: Harness) -> None:
    for text in ("", "--verbose why?", "--fast"):
        result, url = await slash(bot, "/ask", text)
        said = ack_text(bot, result)
        assert "Usage: `/ask" in said, said
        assert "in_channel" not in said  # privately
        assert bot.slack.responses_to(url) == []
    assert bot.dashscope.requests == []


async def test_ask_model_error_replaces_the_status_with_a_sentence(bot: Harness) -> None:
    bot.dashscope.enqueue([HttpError(400, "DataInspectionFailed", "secret service detail")])
    _, url = await slash(bot, "/ask", "something flagged")
    _, notice = await bot.slack.wait_for_responses(url, 2)
    said = json.dumps(notice.body)
    assert notice.body["replace_original"] is True
    assert "content moderation" in said and "secret service detail" not in said
    assert await bot.services.ledger.records("T1") == []


async def test_long_answer_is_split_across_messages_not_cut(bot: Harness) -> None:
    long_answer = [f"Paragraph {i}. " + "Details follow here. " * 120 + "\n\n" for i in range(12)]
    bot.dashscope.enqueue(thinking_script(["Plan."], long_answer))
    _, url = await slash(bot, "/ask", "Tell me everything")
    posts = await bot.slack.wait_for_responses(url, 4)
    answer_posts = posts[1:]
    assert all(p.error is None for p in posts)
    assert answer_posts[0].body["replace_original"] is True
    assert not any(p.body.get("replace_original") for p in answer_posts[1:])
    joined = "".join(markdown(p) for p in answer_posts)
    assert joined.replace("\n", "").replace(" ", "") == "".join(long_answer).replace(
        "\n", ""
    ).replace(" ", "")
    assert SHOW_REASONING_ACTION in buttons(answer_posts[-1].body["blocks"])


# --- follow-ups ----------------------------------------------------------------------------


async def finish_research(bot: Harness) -> str:
    """A finished research thread whose follow-ups are answered as whole messages (where
    Slack offers no streaming; streamed ones are in tests/test_e2e_streaming.py)."""
    bot.slack.streaming = False
    thread = await start_conversation(bot)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    await bot.send_event(message("Personalised learning, please", thread_ts=thread))
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: "AI in Education" in str(c.args.get("blocks"))
    )
    return thread


def deeper_posts(bot: Harness, thread: str) -> list[Call]:
    return [
        c
        for c in bot.slack.calls_to("chat.postMessage")
        if c.args.get("thread_ts") == thread and RESEARCH_DEEPER_ACTION in json.dumps(c.args)
    ]


async def test_follow_up_answered_with_the_report_then_researched_deeper(bot: Harness) -> None:
    thread = await finish_research(bot)

    bot.dashscope.enqueue(thinking_script(["The report says [1]."], ["Costs are modest [1]."]))
    await bot.send_event(message("What about costs?", thread_ts=thread))
    [posted] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c in deeper_posts(bot, thread)
    )
    assert markdown(posted) == "Costs are modest [1]."
    assert SHOW_REASONING_ACTION in buttons(posted.args["blocks"])

    follow_up = bot.dashscope.requests[2].body
    assert follow_up["model"] == "qwen-plus"
    assert follow_up["parameters"]["enable_thinking"] is True
    system, *context, question = follow_up["input"]["messages"]
    assert system["role"] == "system"
    assert DEFAULT_REFERENCES[0]["url"] in system["content"]  # sources to cite by number
    assert context == [
        {"role": "user", "content": TOPIC},
        {"role": "assistant", "content": QUESTION},
        {"role": "user", "content": "Personalised learning, please"},
        {"role": "assistant", "content": REPORT},
    ]
    assert question == {"role": "user", "content": "What about costs?"}
    records = await bot.services.ledger.records("T1")
    assert [(r.kind, r.model, r.thread_ts) for r in records][-1] == ("answer", "qwen-plus", thread)

    # A second follow-up sees the first one too.
    bot.dashscope.enqueue(thinking_script(["Again."], ["In 2024, yes."]))
    await bot.send_event(message("And in 2024?", thread_ts=thread))
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c in deeper_posts(bot, thread), count=2
    )
    second = bot.dashscope.requests[3].body["input"]["messages"]
    assert second[-3:] == [
        {"role": "user", "content": "What about costs?"},
        {"role": "assistant", "content": "Costs are modest [1]."},
        {"role": "user", "content": "And in 2024?"},
    ]

    # "Research this deeper" on the first answer: a new round with the whole thread.
    value = buttons(posted.args["blocks"])[RESEARCH_DEEPER_ACTION]
    bot.dashscope.enqueue(
        research_script(["# Costs\n\nDeeper findings [1].\n"], DEFAULT_REFERENCES)
    )
    await bot.send(block_action(RESEARCH_DEEPER_ACTION, value, thread_ts=thread), "interactive")
    await bot.slack.wait_for_call("files.completeUploadExternal", count=2, timeout=20)
    deeper = bot.dashscope.requests[4].body
    assert deeper["model"] == "qwen-deep-research"
    messages = deeper["input"]["messages"]
    assert messages[:4] == context
    assert messages[4:8] == [
        {"role": "user", "content": "What about costs?"},
        {"role": "assistant", "content": "Costs are modest [1]."},
        {"role": "user", "content": "And in 2024?"},
        {"role": "assistant", "content": "In 2024, yes."},
    ]
    assert messages[8]["role"] == "user" and "What about costs?" in messages[8]["content"]
    assert len(messages) == 9


async def test_long_follow_up_answer_is_uploaded_to_the_thread(bot: Harness) -> None:
    thread = await finish_research(bot)
    chunks = [f"Section {i}. " + "Evidence and discussion. " * 100 + "\n\n" for i in range(16)]
    bot.dashscope.enqueue(thinking_script(["Long one."], chunks))
    await bot.send_event(message("Tell me everything", thread_ts=thread))
    [beside] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c in deeper_posts(bot, thread)
    )
    uploads = [u for u in bot.slack.uploads.values() if u.filename == "answer.md"]
    assert [u.thread_ts for u in uploads] == [thread]
    assert uploads[0].content.decode() == "".join(chunks).strip()
    assert "in the file above" in json.dumps(beside.args["blocks"])
    assert SHOW_REASONING_ACTION in buttons(beside.args["blocks"])


# --- /research ---------------------------------------------------------------------------


async def test_research_command_posts_the_topic_and_converses_in_its_thread(bot: Harness) -> None:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    _result, _url = await slash(bot, "/research", TOPIC)
    [root] = await bot.slack.wait_for_call("chat.postMessage", lambda c: "thread_ts" not in c.args)
    assert root.args["channel"] == "C1"
    assert TOPIC in json.dumps(root.args) and "<@UUSER>" in json.dumps(root.args)
    root_ts = next(ts for ts, m in bot.slack.messages.items() if m["thread_ts"] is None)
    await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == root_ts and "Which aspects" in str(c.args),
    )
    assert bot.dashscope.requests[0].body["input"]["messages"] == [
        {"role": "user", "content": TOPIC}
    ]
    conversation = await bot.services.conversations.get(ConversationKey("T1", "C1", root_ts))
    assert conversation is not None and conversation.state is State.AWAITING_CLARIFICATION


async def test_research_help_explains_every_command(bot: Harness) -> None:
    for text in ("help", ""):
        result, _url = await slash(bot, "/research", text)
        said = ack_text(bot, result)
        for needle in (
            "/ask",
            "/research <topic>",
            "/research usage",
            "--private",
            "Research this deeper",
        ):
            assert needle in said, needle
    assert bot.dashscope.requests == []


async def test_usage_command_and_home_tab_match_the_ledger(bot: Harness) -> None:
    bot.dashscope.enqueue(thinking_script(REASONING, ANSWER))
    _, url = await slash(bot, "/ask", "Why is the sky blue?")
    await bot.slack.wait_for_responses(url, 2)
    await start_conversation(bot)  # a priced deep-research call
    records = await bot.services.ledger.records("T1")
    assert {r.model for r in records} == {"qwen-plus", "qwen-deep-research"}

    _, url = await slash(bot, "/research", "usage")
    [post] = await bot.slack.wait_for_responses(url)
    assert post.body["response_type"] == "ephemeral"
    shown = json.dumps(post.body["blocks"])
    for model in ("qwen-plus", "qwen-deep-research"):
        mine = [r for r in records if r.model == model]
        tokens_in = sum(r.input_tokens for r in mine)
        tokens_out = sum(r.output_tokens for r in mine)
        assert f"`{model}`: {len(mine)} call" in shown
        assert f"{tokens_in:,} in / {tokens_out:,} out" in shown
    priced = sum(r.cost_usd or 0 for r in records)
    assert f"est. ${priced:,.4f}" in shown
    assert "no price set" in shown  # qwen-plus
    reasoning = sum(r.reasoning_tokens for r in records)
    assert f"({reasoning:,} reasoning)" in shown
    everything = sum(r.input_tokens + r.output_tokens for r in records)
    assert f"<@UUSER>: {everything:,} tokens" in shown
    assert "This month" in shown and "All time" in shown

    await bot.send_event({"type": "app_home_opened", "user": "UUSER", "tab": "home"})
    [published] = await bot.slack.wait_for_call("views.publish")
    home = json.dumps(published.args["view"])
    assert "/ask" in home and "/research usage" in home
    assert f"<@UUSER>: {everything:,} tokens" in home


# --- budgets and restarts (own settings, HTTP only) ------------------------------------------


async def test_budget_refuses_new_work_with_usage_and_reset(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with running(slack, dashscope, tmp_path, WORKSPACE_MONTHLY_TOKEN_BUDGET="20") as bot:
        dashscope.enqueue(thinking_script(REASONING, ANSWER))  # more than 20 tokens
        _, url = await slash(bot, "/ask", "Why is the sky blue?")
        await bot.slack.wait_for_responses(url, 2)
        [record] = await bot.services.ledger.records("T1")
        used = record.input_tokens + record.output_tokens

        _, url = await slash(bot, "/ask", "And why are sunsets red?")
        [refusal] = await bot.slack.wait_for_responses(url)
        said = json.dumps(refusal.body)
        assert refusal.body["response_type"] == "ephemeral"
        assert f"used {used:,} of its 20 tokens" in said and "resets on 1 " in said

        result, _ = await slash(bot, "/research", TOPIC)
        assert f"used {used:,} of its 20 tokens" in ack_text(bot, result)

        mention = app_mention(f"<@UBOT> {TOPIC}")
        await bot.send_event(mention)
        [notice] = await bot.slack.wait_for_call(
            "chat.postMessage", lambda c: c.args.get("thread_ts") == mention["ts"]
        )
        assert "of its 20 tokens" in notice.args["text"]
        assert len(dashscope.requests) == 1


async def test_default_thinking_budget_and_reasoning_after_a_restart(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with running(slack, dashscope, tmp_path, THINKING_BUDGET="1234") as bot:
        dashscope.enqueue(thinking_script(REASONING, ANSWER))
        _, url = await slash(bot, "/ask", "Why is the sky blue?")
        _, answer = await bot.slack.wait_for_responses(url, 2)
        assert dashscope.requests[0].body["parameters"]["thinking_budget"] == 1234
        value = buttons(answer.body["blocks"])[SHOW_REASONING_ACTION]

    async with running(slack, dashscope, tmp_path) as bot:
        await bot.send(block_action(SHOW_REASONING_ACTION, value), "interactive")
        [opened] = await slack.wait_for_call("views.open")
        assert "".join(REASONING) in json.dumps(opened.args["view"])
        # Another workspace cannot read it.
        await bot.send(block_action(SHOW_REASONING_ACTION, value, team_id="T2"), "interactive")
        [_, other] = await slack.wait_for_call("views.open", count=2)
        assert "".join(REASONING) not in json.dumps(other.args["view"])
