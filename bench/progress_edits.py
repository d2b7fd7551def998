"""Progress edits per workspace against chat.update's rate tier.

Target (from the issue): "progress edits are paced per workspace so fifty runs in one workspace
stay under the chat.update tier" (Tier 3: about 50 calls per minute per workspace). Starts the
real bot with PROGRESS_UPDATE_SECONDS=1, runs `--runs` research conversations in workspace T1
whose streams bring something new to show (a research goal, sources, a finished round) every
`--step` seconds for `--seconds`, then counts the chat.update calls the fake Slack received in
every sliding 60 s window.

    .venv/bin/python -m bench.progress_edits [--runs 50] [--seconds 70]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench._harness import (
    CountingDashScope,
    Deliverer,
    configure_logging,
    start_real_bot,
    wait_until,
)
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    Pause,
    Script,
    clarification_script,
    keepalive_frame,
    research_frame,
)
from tests.fakes.slack_payloads import app_mention, message
from tests.fakes.slack_server import Call, FakeSlack

TIER_PER_MINUTE = 50
WINDOW = 60.0
QUESTION = "Which aspects matter most to you: personalised learning or assessment?"
COMPLETE = "Research complete"


def eventful_script(seconds: float, step: float, request_id: str, delay: float = 0.0) -> Script:
    """A research stream with something new for the progress message every `step` seconds:
    round r's goal, then its sources, then "round finished", then round r+1's goal... After
    planning it idles `delay` seconds first (to stagger when runs end)."""
    used = 0

    def frame(phase: str, status: str, content: str = "", **kw: Any) -> Any:
        nonlocal used
        used += max(1, len(content.split()))
        return research_frame(
            phase, status, content, output_tokens=used, request_id=request_id, **kw
        )

    script: Script = [
        frame("ResearchPlanning", "typing", "This study focuses on the evidence."),
        frame("ResearchPlanning", "finished"),
    ]
    if delay > 0:
        script.append(Pause(delay))
    for k in range(int(seconds / step)):
        r, beat = k // 3 + 1, k % 3
        script.append(Pause(step))
        if beat == 0:
            goal = {"id": r, "query": "", "researchGoal": f"Goal {r}: what do trials show?"}
            script.append(frame("WebResearch", "streamingQueries", research=goal))
        elif beat == 1:
            sites = [
                {
                    "title": f"Source {r}.{j}",
                    "url": f"https://example.com/round{r}/site{j}",
                    "description": f"Result {j} of round {r}.",
                    "favicon": "https://example.com/favicon.ico",
                }
                for j in range(1, 4)
            ]
            script.append(
                frame("WebResearch", "streamingWebResult", research={"id": r, "webSites": sites})
            )
        else:
            script.append(frame("WebResearch", "WebResultFinished", research={"id": r}))
        script.append(keepalive_frame(request_id, output_tokens=used))
    script.append(frame("WebResearch", "finished"))
    report = "# Report\n\nTrials show gains [1]."
    script.append(frame("answer", "typing", report, references=DEFAULT_REFERENCES))
    script.append(frame("answer", "finished"))
    return script


@dataclass
class Result:
    updates: list[Call] = field(default_factory=list)
    progress_posts: list[Call] = field(default_factory=list)
    released: float = 0.0
    streams_ended: float = 0.0
    reports: int = 0
    final_state: dict[str, str] = field(default_factory=dict)  # progress ts -> shown text now


def is_progress_post(call: Call) -> bool:
    return "research_stop" in json.dumps(call.args.get("blocks"))


async def run(args: argparse.Namespace) -> Result:
    result = Result()
    with tempfile.TemporaryDirectory(prefix="bench-edits-") as tmp:
        dashscope = CountingDashScope()
        async with FakeSlack() as slack, dashscope:
            bot = await start_real_bot(
                slack,
                dashscope,
                Path(tmp),
                args.mode,
                args.placement,
                PROGRESS_UPDATE_SECONDS="1",
                USER_MAX_RUNNING="1000",
                WORKSPACE_MAX_RUNNING="1000",
            )
            try:
                async with aiohttp.ClientSession() as session:
                    send = Deliverer(args.mode, slack, session, bot.port)
                    await _exercise(send, slack, dashscope, args, result)
            finally:
                await bot.stop()
    return result


async def _exercise(
    send: Deliverer,
    slack: FakeSlack,
    dashscope: CountingDashScope,
    args: argparse.Namespace,
    result: Result,
) -> None:
    runs = args.runs
    for _ in range(runs):
        dashscope.enqueue(clarification_script(QUESTION))
    mentions = [app_mention(f"<@UBOT> topic {i}", channel=f"C{i:03d}") for i in range(runs)]
    await asyncio.gather(*(send.event(m, team_id="T1") for m in mentions))
    threads = {m["ts"] for m in mentions}

    def questions() -> int:
        return sum(
            1
            for c in slack.calls_to("chat.postMessage")
            if c.args.get("thread_ts") in threads and "Which aspects" in str(c.args)
        )

    await wait_until(lambda: questions() >= runs, 60, "the clarifying questions")

    for i in range(runs):
        delay = args.stagger * i / max(1, runs - 1)
        dashscope.enqueue(eventful_script(args.seconds, args.step, f"req-{i}", delay))
    result.released = time.monotonic()
    await asyncio.gather(
        *(
            send.event(message("Go ahead", channel=m["channel"], thread_ts=m["ts"]), team_id="T1")
            for m in mentions
        )
    )
    await wait_until(lambda: dashscope.active >= runs, 30, "the research streams to open")
    print(f"  {runs} research runs streaming; about {args.seconds + args.stagger:.0f} s ...")
    await wait_until(
        lambda: dashscope.active == 0,
        args.seconds + args.stagger + 60,
        "the research streams to end",
    )
    result.streams_ended = time.monotonic()
    await wait_until(lambda: len(slack.uploads) >= runs, 60, "the reports")

    def completed() -> int:
        return sum(COMPLETE in json.dumps(c.args) for c in slack.calls_to("chat.update"))

    # The bot posts each report first and then waits for room in the workspace for the
    # progress message's last edit (bot/live_progress.py: up to 90 s), so wait for those too.
    await wait_until(lambda: completed() >= runs, 120, "the final 'complete' edits")
    await asyncio.sleep(1.5)  # a straggling edit would still count
    result.reports = len(slack.uploads)
    result.updates = slack.calls_to("chat.update")
    result.progress_posts = [c for c in slack.calls_to("chat.postMessage") if is_progress_post(c)]
    for ts, msg in slack.messages.items():
        if "research_stop" in json.dumps(msg.get("blocks")) or any(
            u.args.get("ts") == ts for u in result.updates
        ):
            result.final_state[ts] = json.dumps(msg.get("blocks"))


def max_in_window(times: list[float], window: float) -> tuple[int, float]:
    """The most calls in any [t, t + window) and where that window starts."""
    times = sorted(times)
    best, start, j = 0, times[0] if times else 0.0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        if i - j + 1 > best:
            best, start = i - j + 1, times[j]
    return best, start


def report(result: Result, args: argparse.Namespace) -> str:
    """Print the figures; return the verdict line."""
    updates = result.updates
    t0 = result.released
    times = [u.at for u in updates]
    finals = [u for u in updates if COMPLETE in json.dumps(u.args)]
    during = [u for u in updates if COMPLETE not in json.dumps(u.args)]
    peak, peak_start = max_in_window(times, WINDOW) if times else (0, t0)
    peak_live, _ = max_in_window([u.at for u in during], WINDOW) if during else (0, t0)

    print(
        f"\n  chat.update calls in total: {len(updates)} ({len(during)} while researching, "
        f"{len(finals)} final 'complete' edits); all in workspace T1"
    )
    print(
        f"  MAX chat.update IN ANY 60 s WINDOW: {peak} (window starting "
        f"{peak_start - t0:.1f} s after the research began); without the final edits: {peak_live}"
    )
    if times:
        span = max(times) - t0
        buckets = [0] * (int(span // 10) + 1)
        for t in times:
            buckets[int((t - t0) // 10)] += 1
        print("  chat.update per 10 s from the start: " + " ".join(str(b) for b in buckets))
        print(
            f"  research streams ended {result.streams_ended - t0:.1f} s after the start; "
            f"final edits landed {min(u.at for u in finals) - t0 if finals else 0:.1f}-"
            f"{max(u.at for u in finals) - t0 if finals else 0:.1f} s"
        )

    by_ts: dict[str, list[float]] = {}
    for u in updates:
        by_ts.setdefault(str(u.args.get("ts")), []).append(u.at)
    gaps = [
        statistics.fmean(b - a for a, b in itertools.pairwise(ts))
        for ts in by_ts.values()
        if len(ts) > 1
    ]
    per_run = [len(ts) for ts in by_ts.values()]
    live_per_run = {str(u.args.get("ts")): 0 for u in updates}
    for u in during:
        live_per_run[str(u.args.get("ts"))] += 1
    longest_gap = max(
        (b - a for ts in by_ts.values() for a, b in itertools.pairwise([t0, *ts])), default=0.0
    )
    if gaps:
        print(
            f"  per run: {statistics.fmean(per_run):.1f} edits on average "
            f"(min {min(per_run)}, max {max(per_run)}); average interval between a run's edits "
            f"{statistics.fmean(gaps):.1f} s (per-run means {min(gaps):.1f}-{max(gaps):.1f} s; "
            f"PROGRESS_UPDATE_SECONDS=1 would allow 1 s)"
        )
        print(
            f"  {sum(n == 0 for n in live_per_run.values())}/{len(live_per_run)} runs showed no "
            f"progress edit at all before their final one; the longest any progress message "
            f"went unedited: {longest_gap:.0f} s"
        )

    last_edit_complete = 0
    for ts in by_ts:
        last = max((u for u in updates if u.args.get("ts") == ts), key=lambda u: u.at)
        last_edit_complete += COMPLETE in json.dumps(last.args)
    shown_complete = sum(COMPLETE in text for text in result.final_state.values())
    print(
        f"  completion: {last_edit_complete}/{args.runs} runs' last edit says '{COMPLETE}'; "
        f"{shown_complete}/{len(result.progress_posts)} progress messages show it now; "
        f"{result.reports}/{args.runs} reports uploaded"
    )
    ok = peak <= TIER_PER_MINUTE
    unshown = sum(n == 0 for n in live_per_run.values()) + args.runs - len(live_per_run)
    fair = "PASS" if unshown == 0 else "FAIL"
    return (
        f"max chat.update per 60 s <= {TIER_PER_MINUTE}: {'PASS' if ok else 'FAIL'} "
        f"(max {peak}, {peak_live} without the final edits; {args.runs} runs, one workspace; "
        f"last edit complete {last_edit_complete}/{args.runs})\n"
        f"every run shows progress before its end: {fair} ({unshown} of {args.runs} runs "
        f"without an intermediate edit)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.progress_edits", description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=70.0, help="how long each run streams")
    parser.add_argument("--step", type=float, default=1.0, help="seconds between new facts")
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="spread the runs' ends over this many seconds (0: all end together, the worst case)",
    )
    parser.add_argument("--mode", choices=["http", "socket"], default="http")
    parser.add_argument("--placement", choices=["same", "process"], default="same")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    print(
        f"progress edits: {args.runs} research runs in one workspace, each with something new "
        f"to show every {args.step:g} s for {args.seconds:.0f} s "
        f"({f'ends staggered over {args.stagger:g} s' if args.stagger else 'all end together'}); "
        f"PROGRESS_UPDATE_SECONDS=1; "
        f"{args.mode} mode; Slack's chat.update tier: {TIER_PER_MINUTE}/min per workspace"
    )
    started = time.monotonic()
    result = await run(args)
    verdict = report(result, args)
    print(f"  wall time {time.monotonic() - started:.1f} s")
    print(verdict)
    return 0


if __name__ == "__main__":
    configure_logging()
    raise SystemExit(asyncio.run(main(parse_args())))
