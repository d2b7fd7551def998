"""Admission, fair and bounded (issue 14): a flood from one user queues instead of spending.

`python -m bench.admission` starts the real bot in this process (HTTP, SQLite) against the
fakes and measures two things:

1. A flood: `--mentions` research requests from one user inside `--flood-seconds` (each with
   `--no-clarify`, so each is a research run at once). Prints how many streams were open at
   once at most (goal: <= USER_MAX_RUNNING), how many got a "queued" sentence, and whether all
   were eventually answered with a report.
2. A burst against a budget: `--burst` mentions within 10 s in a workspace whose monthly budget
   is `--budget` tokens. Prints the tokens the ledger recorded, the overshoot past the budget,
   and one research run's token estimate (goal: overshoot <= one run's estimate).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench._harness import configure_logging
from bot.budget import ESTIMATED_TOKENS
from bot.conversation import State
from tests.conftest import Harness, start_bot
from tests.fakes.dashscope_server import DEFAULT_REFERENCES, FakeDashScope, research_script
from tests.fakes.slack_payloads import app_mention
from tests.fakes.slack_server import FakeSlack


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__)
    parser.add_argument("--mentions", type=int, default=300)
    parser.add_argument("--flood-seconds", type=float, default=60.0)
    parser.add_argument("--user-max", type=int, default=2)
    parser.add_argument("--frame-pause", type=float, default=0.05, help="seconds between frames")
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=600.0)
    return parser.parse_args()


def short_run(pause: float = 0.0) -> list[Any]:
    return research_script(["A short report.\n\n", "With one finding [1]."], DEFAULT_REFERENCES,
                           rounds=1, sites_per_round=1, pause=pause)  # fmt: skip


async def flood(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-admission-") as tmp:
        async with FakeSlack() as slack, FakeDashScope() as dashscope:
            for _ in range(args.mentions):
                dashscope.enqueue(short_run(args.frame_pause))
            runtime = await start_bot(
                slack, dashscope, Path(tmp), "http",
                USER_MAX_RUNNING=str(args.user_max), RUN_LEASE_SECONDS="3",
            )  # fmt: skip
            peak = 0
            stop = asyncio.Event()

            async def watch() -> None:
                nonlocal peak
                while not stop.is_set():
                    running = await runtime.services.conversations.in_state(State.RESEARCHING)  # type: ignore[union-attr]
                    peak = max(peak, len(running))
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch())
            started = time.monotonic()
            try:
                async with aiohttp.ClientSession() as session:
                    bot = Harness(runtime, slack, dashscope, "http", session)
                    gap = args.flood_seconds / max(1, args.mentions)
                    for i in range(args.mentions):
                        await bot.send_event(app_mention(f"<@UBOT> --no-clarify topic {i}"))
                        await asyncio.sleep(gap)
                    sent = time.monotonic() - started
                    with contextlib.suppress(AssertionError):  # counted below either way
                        await slack.wait_for_call(
                            "files.completeUploadExternal",
                            count=args.mentions,
                            timeout=args.timeout,
                        )
            finally:
                stop.set()
                await watcher
                await runtime.stop()
            queued = sum(1 for c in slack.calls_to("chat.postMessage") if "in line" in str(c.args))
            print(f"flood: {args.mentions} mentions from one user in {sent:.1f} s, "
                  f"USER_MAX_RUNNING={args.user_max}")  # fmt: skip
            print(f"  research streams open at once, at most: {peak} (goal <= {args.user_max}): "
                  f"{'PASS' if peak <= args.user_max else 'FAIL'}")  # fmt: skip
            print(f"  told they were queued: {queued}")
            print(f"  answered with a report: {len(slack.uploads)}/{args.mentions} "
                  f"in {time.monotonic() - started:.1f} s")  # fmt: skip


async def burst(args: argparse.Namespace) -> None:
    estimate = ESTIMATED_TOKENS["research"]
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        async with FakeSlack() as slack, FakeDashScope() as dashscope:
            for _ in range(args.burst):
                dashscope.enqueue(short_run())
            runtime = await start_bot(
                slack, dashscope, Path(tmp), "http",
                WORKSPACE_MONTHLY_TOKEN_BUDGET=str(args.budget),
                USER_MAX_RUNNING="1000", WORKSPACE_MAX_RUNNING="1000", RUN_LEASE_SECONDS="3",
            )  # fmt: skip
            try:
                async with aiohttp.ClientSession() as session:
                    bot = Harness(runtime, slack, dashscope, "http", session)
                    await asyncio.gather(
                        *(
                            bot.send_event(app_mention(f"<@UBOT> --no-clarify topic {i}"))
                            for i in range(args.burst)
                        )
                    )
                    await asyncio.sleep(10)
                records = await runtime.services.ledger.records("T1")  # type: ignore[union-attr]
            finally:
                await runtime.stop()
            used = sum(r.input_tokens + r.output_tokens for r in records)
            overshoot = max(0, used - args.budget)
            print(f"budget: {args.burst} mentions at once, budget {args.budget:,} tokens")
            print(f"  model calls made: {len(dashscope.requests)}; tokens recorded: {used:,}")
            print(f"  overshoot: {overshoot:,} tokens; one run's estimate: {estimate:,}: "
                  f"{'PASS' if overshoot <= estimate else 'FAIL'}")  # fmt: skip


async def main() -> None:
    args = parse_args()
    configure_logging()
    await flood(args)
    await burst(args)


if __name__ == "__main__":
    asyncio.run(main())
