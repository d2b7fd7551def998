"""Images attached to a request, and per-request research options, end to end."""

from __future__ import annotations

import base64
import json
import zlib

from tests.conftest import Harness
from tests.fakes.dashscope_server import DEFAULT_REFERENCES, clarification_script, research_script
from tests.fakes.slack_payloads import app_mention, message
from tests.test_e2e_research import QUESTION, REPORT_CHUNKS


def png(seed: int) -> bytes:
    """A real 1x1 PNG, different per seed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixel = zlib.compress(bytes([0, seed % 256, 0, 0]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel) + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def thread_text(bot: Harness, thread: str) -> str:
    return json.dumps(
        [
            c.args
            for c in bot.slack.calls_to("chat.postMessage")
            if c.args.get("thread_ts") == thread
        ]
    )


async def test_mention_with_two_images_sends_both_as_data_urls_with_the_text(bot: Harness) -> None:
    files = [bot.slack.add_file("chart.png", png(1)), bot.slack.add_file("photo.jpg", JPEG)]
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention("<@UBOT> what do these charts say about adoption?", files=files)
    await bot.send_event(mention)
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == mention["ts"]
    )
    [content] = [m["content"] for m in bot.dashscope.requests[0].body["input"]["messages"]]
    assert content == [
        {"image": "data:image/png;base64," + base64.b64encode(png(1)).decode()},
        {"image": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()},
        {"text": "what do these charts say about adoption?"},
    ]
    assert {token for _, token in bot.slack.file_downloads} == {"xoxb-test"}


async def test_files_outside_the_rules_are_refused_by_name_and_the_rest_goes_ahead(
    bot: Harness,
) -> None:
    files = [bot.slack.add_file(f"chart{i}.png", png(i)) for i in range(6)]
    files.append(bot.slack.add_file("huge.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (11 * 2**20)))
    files.append(bot.slack.add_file("report.png", b"%PDF-1.7\n" + b"\x00" * 100))
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention("<@UBOT> compare these", files=files)
    await bot.send_event(mention)
    thread = str(mention["ts"])
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == thread and "Which" in str(c.args)
    )
    said = thread_text(bot, thread)
    assert "chart5.png" in said and "at most 5 per request" in said
    assert "huge.png" in said and "larger than 10 MB" in said
    assert "report.png" in said and "not an image I can read" in said
    content = bot.dashscope.requests[0].body["input"]["messages"][0]["content"]
    assert [part.get("image", "")[:22] for part in content[:-1]] == ["data:image/png;base64,"] * 5
    assert content[-1] == {"text": "compare these"}


async def test_only_refused_files_and_no_text_start_nothing(bot: Harness) -> None:
    mention = app_mention("<@UBOT>", files=[bot.slack.add_file("notes.png", b"plain text")])
    await bot.send_event(mention)
    [notice] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == mention["ts"]
    )
    assert "notes.png" in notice.args["text"]
    assert bot.dashscope.requests == []


async def test_summary_without_clarifying_question_goes_straight_to_research(
    bot: Harness,
) -> None:
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=1))
    mention = app_mention("<@UBOT> --summary --no-clarify AI tutoring evidence")
    await bot.send_event(mention)
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    [request] = bot.dashscope.requests
    assert request.body["parameters"]["output_format"] == "model_summary_report"
    assert request.body["parameters"]["enable_feedback"] is False
    assert request.body["input"]["messages"] == [
        {"role": "user", "content": "AI tutoring evidence"}
    ]


async def test_model_option_and_clarifying_reply_keep_the_options(bot: Harness) -> None:
    bot.dashscope.enqueue(clarification_script(QUESTION))
    mention = app_mention("<@UBOT> --detailed --model qwen-deep-research-2025-12-15 AI tutoring")
    await bot.send_event(mention)
    thread = str(mention["ts"])
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == thread)
    bot.dashscope.enqueue(research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, snapshot=True))
    await bot.send_event(message("secondary schools", thread_ts=thread))
    await bot.slack.wait_for_call("files.completeUploadExternal", timeout=20)
    first, second = (r.body for r in bot.dashscope.requests)
    assert first["model"] == second["model"] == "qwen-deep-research-2025-12-15"
    assert second["parameters"]["output_format"] == "model_detailed_report"
    assert "enable_feedback" not in second["parameters"]
    await bot.slack.wait_for_call(
        "chat.update", lambda c: "Research complete" in json.dumps(c.args), timeout=15
    )
    updates = json.dumps([c.args for c in bot.slack.calls_to("chat.update")])
    # The snapshot's streamingThinking frames count as research progress.
    assert "6 sources found" in updates and "2 rounds done" in updates


async def test_unknown_option_lists_the_valid_ones(bot: Harness) -> None:
    mention = app_mention("<@UBOT> --short AI tutoring")
    await bot.send_event(mention)
    [notice] = await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == mention["ts"]
    )
    assert "--short" in notice.args["text"] and "--no-clarify" in notice.args["text"]
    assert bot.dashscope.requests == []
