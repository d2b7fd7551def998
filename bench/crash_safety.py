"""Crash safety, one process (SQLite): SIGKILL at random moments, restart after each (issue 14).

One real `python -m bot` in Socket Mode on a SQLite file, against the local fakes, with
RUN_LEASE_SECONDS=1 (usage of streaming calls flushed every 1/3 s) and DRAIN_SECONDS=0. A stream
of research conversations runs (mention -> clarifying question -> the user's answer -> research
-> report; some users also ask a question in the thread while research runs, which is owed an
answer after the report). Model calls stream for 0.2-1.2 s. The bot is SIGKILLed `--kills`
times at moments drawn from a seeded RNG across all phases, and started again each time; Slack
redelivers unacknowledged events as it does (same event_id, retry_attempt + 1); a user who sees
a Retry button presses it. After the last kill everything may finish (bounded), the bot is
stopped, and the fake Slack's record and the database are compared with what was owed:

- conversations lost: a mention that never got its clarifying question, or an answered thread
  that reached no final state with a message in it;
- reports missing (answered threads without an upload) or duplicated (more than one upload or
  report summary in a thread);
- questions asked during research never answered (or answered more than once);
- usage rows lost or double-counted: every request the fake DashScope served carries its own
  request_id and deterministic token figures; the ledger should hold one row per request that
  streamed usage, with the script's final figures (or, for a call cut by the kill, the last
  figures flushed before it).

    .venv/bin/python -m bench.crash_safety [--kills 30] [--seed N] [--conversations 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench._durability import (
    BotProcess,
    Conv,
    HookedSlack,
    LedgerRow,
    Pacing,
    ScriptedDashScope,
    ThreadIndex,
    Triggers,
    answer_marker,
    asked,
    await_report,
    base_env,
    check_usage,
    clarify_marker,
    counts,
    log_findings,
    outcomes,
    progress_left_live,
    split_by_death,
    step_counts,
    timeline,
    topic,
)
from bot.conversation import ConversationKey
from handlers.render import RETRY_ACTION, key_value
from tests.fakes.slack_payloads import app_mention, block_action, event_callback, message

# phase -> (trigger, delay after it in seconds). None: a moment with nothing in particular.
PHASES: Final[dict[str, tuple[str | None, tuple[float, float]]]] = {
    "just after an ack": ("ack", (0.0, 0.03)),
    "during clarifying": ("clarify-start", (0.0, 0.5)),
    "clarify end (usage write, question post)": ("clarify-end", (0.0, 0.06)),
    "during research": ("research-start", (0.05, 1.0)),
    "research end (usage write, DONE, upload)": ("research-end", (0.0, 0.1)),
    "report upload started": ("slack:files.getUploadURLExternal", (0.0, 0.04)),
    "upload completed, before the summary": ("slack:files.completeUploadExternal", (0.0, 0.03)),
    "during a kept question's answer": ("answer-start", (0.0, 0.3)),
    "answer end (usage write, answer post)": ("answer-end", (0.0, 0.06)),
    "random moment": (None, (0.0, 1.5)),
}
ANSWER_TEXT: Final = "Personalised learning in secondary schools"
ACK_TIMEOUT: Final = 3.0  # Slack's


@dataclass
class Kill:
    number: int
    phase: str
    detail: str
    at: float
    open_calls: str
    uptime: float


class CrashRun:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.rng = random.Random(args.seed)
        self.triggers = Triggers()
        self.slack = HookedSlack(self.triggers)
        self.dashscope = ScriptedDashScope(args.seed, Pacing(), self.triggers)
        self.index = ThreadIndex(self.slack)
        self.db = tmp / "bot.sqlite3"
        self.bot: BotProcess | None = None
        self.incarnation = 0
        self.logs: list[Path] = []
        self.kills: list[Kill] = []
        self.deaths: list[float] = []
        self.restart_seconds: list[float] = []
        self.convs: dict[int, Conv] = {}
        self.by_thread: dict[str, Conv] = {}
        self.kills_done = False
        self.redeliveries = 0
        self.retry_clicks = 0
        self.conv_activity: dict[int, float] = {}
        self.triggers.listeners.append(self._note_model_activity)
        self.aborted: str | None = None
        self.problems = 0
        self.hard_deadline = float("inf")
        self.wall = 0.0
        self.final_exit: int | None = None

    def _note_model_activity(self, name: str, detail: str) -> None:
        if name.endswith(("-start", "-end")) and detail.lstrip("-").isdigit():
            self.conv_activity[int(detail)] = time.monotonic()

    # --- the bot ------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return base_env(
            self.tmp,
            self.slack,
            self.dashscope,
            SLACK_APP_TOKEN="xapp-test",
            DATABASE_URL=f"sqlite:///{self.db}",
            RUN_LEASE_SECONDS=str(self.args.lease),
            PROGRESS_UPDATE_SECONDS="5",  # the default
        )

    async def start_bot(self) -> None:
        self.incarnation += 1
        log = self.tmp / f"bot-{self.incarnation:03d}.log"
        self.logs.append(log)
        connects = self.slack.connects
        self.bot = BotProcess(self.env(), log)
        await self.bot.start()
        deadline = time.monotonic() + 60
        while not (self.slack.connects > connects and self.slack.socket_count > 0):
            if not self.bot.alive:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the bot exited while starting:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("the bot did not connect to Socket Mode within 60 s")
            await asyncio.sleep(0.02)

    async def kill_and_restart(self, phase: str, detail: str) -> None:
        assert self.bot is not None
        open_calls = Counter(s.kind for s in self.dashscope.open.values())
        self.bot.kill()
        at = time.monotonic()
        self.deaths.append(at)
        self.kills.append(
            Kill(
                len(self.kills) + 1,
                phase,
                detail,
                at,
                ", ".join(f"{n} {k}" for k, n in sorted(open_calls.items())) or "none",
                at - self.bot.started,
            )
        )
        await self.bot.wait(10)
        deadline = time.monotonic() + 5
        while self.slack.socket_count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await self.start_bot()
        self.restart_seconds.append(time.monotonic() - at)

    async def killer(self) -> None:
        try:
            # Every phase in turn, in a shuffled order each round, so all are covered.
            order: list[str] = []
            for _ in range(self.args.kills):
                if not order:
                    order = list(PHASES)
                    self.rng.shuffle(order)
                await asyncio.sleep(self.rng.uniform(0.3, 1.5))
                phase = order.pop()
                trigger, (low, high) = PHASES[phase]
                detail = ""
                if trigger is not None:
                    try:
                        detail = await asyncio.wait_for(self.triggers.arm(trigger), 8.0)
                    except TimeoutError:
                        phase = f"{phase} [not seen in 8 s: random moment]"
                await asyncio.sleep(self.rng.uniform(low, high))
                await self.kill_and_restart(phase, detail)
                if len(self.kills) % 10 == 0:
                    print(f"  {len(self.kills)} kills, {len(self.convs)} conversations started")
        finally:
            self.kills_done = True

    # --- Slack, as the users and Slack's retries would behave ---------------------------

    async def deliver(self, conv: Conv, payload: dict[str, Any], what: str) -> bool:
        """Socket Mode delivery; unacknowledged envelopes are sent again (same event_id)."""
        attempt = 0
        while time.monotonic() < self.hard_deadline:
            try:
                await self.slack.socket_send(
                    "events_api",
                    payload,
                    retry_attempt=attempt,
                    retry_reason="timeout" if attempt else "",
                    timeout=ACK_TIMEOUT,
                )
            except Exception:  # no ack, no socket, socket closing: Slack tries again
                attempt += 1
                self.redeliveries += 1
                await asyncio.sleep(0.2)
                continue
            conv.actions.append((time.monotonic(), f"{what} acked (attempt {attempt})"))
            self.triggers.fire("ack", str(conv.conv))
            return True
        return False

    async def click_retry(self, conv: Conv) -> None:
        key = ConversationKey("T1", "C1", conv.thread)
        payload = block_action(RETRY_ACTION, key_value(key), thread_ts=conv.thread)
        while time.monotonic() < self.hard_deadline:
            try:
                await self.slack.socket_send("interactive", payload, timeout=ACK_TIMEOUT)
                break
            except Exception:
                await asyncio.sleep(0.2)
        conv.retry_clicks += 1
        self.retry_clicks += 1
        conv.actions.append((time.monotonic(), "pressed Retry"))

    def activity(self, conv: Conv) -> float:
        record = self.index.get(conv.thread)
        last_action = conv.actions[-1][0] if conv.actions else conv.started
        return max(record.last_at, self.conv_activity.get(conv.conv, 0.0), last_action)

    async def wait_for(self, conv: Conv, done: Any, what: str) -> bool:
        """Until `done()`; gives up after `--quiet` s without anything happening in the
        thread or its model calls, or at the hard deadline."""
        while True:
            self.index.update()
            if done():
                return True
            now = time.monotonic()
            if now > self.hard_deadline or now - self.activity(conv) > self.args.quiet:
                conv.gave_up = what
                return False
            await asyncio.sleep(0.05)

    async def converse(self, conv: Conv) -> None:
        rng = random.Random(f"{self.args.seed}:conv:{conv.conv}")
        conv.started = time.monotonic()
        user = f"UBENCH{conv.conv % 16:02d}"  # many users: per-user caps never queue research
        mention = app_mention(f"<@UBOT> {topic(conv.conv)}", user=user)
        conv.thread = str(mention["ts"])
        self.by_thread[conv.thread] = conv
        if not await self.deliver(conv, event_callback(mention), "mention"):
            conv.gave_up = "mention never acknowledged"
            return
        conv.mention_acked = True
        thread = self.index.get(conv.thread)
        if not await self.wait_for(
            conv, lambda: thread.count(clarify_marker(conv.conv)) > 0, "clarifying question"
        ):
            return
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        reply = message(ANSWER_TEXT, thread_ts=conv.thread, user=user)
        if not await self.deliver(conv, event_callback(reply), "answer"):
            conv.gave_up = "answer never acknowledged"
            return
        conv.answered_at = time.monotonic()
        if rng.random() < self.args.ask_fraction:
            started = await self.wait_for(
                conv,
                lambda: any(
                    s.conv == conv.conv and s.kind == "research" for s in self.dashscope.served
                ),
                "research to start (before asking)",
            )
            if started:
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                conv.asked.append(1)
                question = message(asked(conv.conv, 1), thread_ts=conv.thread, user=user)
                await self.deliver(conv, event_callback(question), "question during research")
        await await_report(
            conv,
            thread,
            self.wait_for,
            self.click_retry,
            rng,
            retry_wait=10,
            pause=(0.1, 0.4),
        )
        for n in conv.asked:
            await self.wait_for(
                conv, lambda n=n: thread.count(answer_marker(conv.conv, n)) > 0, "answer"
            )

    async def launcher(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        number = 0
        while (number < self.args.conversations or not self.kills_done) and (
            time.monotonic() < self.hard_deadline
        ):
            active = [t for t in tasks if not t.done()]
            if len(active) >= self.args.concurrency:
                await asyncio.sleep(0.05)
                continue
            number += 1
            conv = Conv(number)
            self.convs[number] = conv
            tasks.add(asyncio.create_task(self.converse(conv)))
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
        if tasks:
            await asyncio.wait(tasks, timeout=max(1.0, self.hard_deadline - time.monotonic()))

    async def settle(self, quiet: float = 6.0, timeout: float = 30.0) -> None:
        """Wait until no model call is open and Slack heard nothing for `quiet` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.slack.calls[-1].at if self.slack.calls else 0.0
            if not self.dashscope.open and time.monotonic() - last > quiet:
                return
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        async with self.slack, self.dashscope:
            await self.start_bot()
            started = time.monotonic()
            # The deadline for everything: the kills' own time plus a bounded tail.
            self.hard_deadline = started + self.args.kills * 12 + self.args.tail
            killer = asyncio.create_task(self.killer())
            launcher = asyncio.create_task(self.launcher())
            try:
                await asyncio.wait_for(killer, self.args.kills * 12 + 60)
                self.kills_done_at = time.monotonic()
                self.hard_deadline = min(self.hard_deadline, self.kills_done_at + self.args.tail)
                await asyncio.wait_for(launcher, self.args.tail + 30)
            except Exception as exc:
                self.aborted = f"{type(exc).__name__}: {exc}"
                killer.cancel()
                launcher.cancel()
            self.kills_done = True
            await self.settle()
            self.wall = time.monotonic() - started
            assert self.bot is not None
            self.final_exit = await self.bot.terminate(40)
            self.analyse()

    # --- the figures ------------------------------------------------------------------------

    def db_rows(self) -> dict[str, Any]:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            conversations = {
                row[0]: row[1:]
                for row in conn.execute(
                    "SELECT thread_ts, state, resumes, owner, applied FROM conversations"
                )
            }
            usage = [
                LedgerRow(*row)
                for row in conn.execute(
                    "SELECT thread_ts, kind, input_tokens, output_tokens, reasoning_tokens, "
                    "request_id, call_id FROM usage"
                )
            ]
            inflight = [
                LedgerRow(*row)
                for row in conn.execute(
                    "SELECT thread_ts, kind, input_tokens, output_tokens, reasoning_tokens, "
                    "request_id, call_id FROM inflight_usage"
                )
            ]
            kept = conn.execute(
                "SELECT thread_ts, text FROM kept_questions WHERE text != ''"
            ).fetchall()
            inbox = conn.execute(
                "SELECT event_id, attempts, done_at IS NULL, body FROM inbox"
            ).fetchall()
        return {
            "conversations": conversations,
            "usage": usage,
            "inflight": inflight,
            "kept": kept,
            "inbox": inbox,
        }

    def timeline(self, conv: Conv) -> list[str]:
        marks = [(k.at, f"SIGKILL #{k.number} ({k.phase})") for k in self.kills]
        return timeline(conv, self.index, self.dashscope.served, marks)

    def analyse(self) -> None:
        db = self.db_rows()
        states = db["conversations"]
        out = outcomes(self.index, self.convs.values())
        usage = check_usage(
            self.dashscope.served,
            db["usage"],
            self.deaths,
            flush_seconds=max(0.1, self.args.lease / 3),
            inflight=db["inflight"],
            threads={c.conv: c.thread for c in self.convs.values()},
        )
        forced, self_cut, duplicate, dup_details = step_counts(self.dashscope.served, self.deaths)
        pending_inbox = [row for row in db["inbox"] if row[2]]
        dropped_events = [row for row in db["inbox"] if row[1] > 3]

        print()
        print(f"seed {self.args.seed}; {len(self.kills)} SIGKILLs; wall time {self.wall:.0f} s")
        if self.aborted:
            print(f"  ! the run was cut short: {self.aborted}")
        phases = Counter(k.phase.split(" [")[0] for k in self.kills)
        fallback = sum("[not seen" in k.phase for k in self.kills)
        print("kills by phase (trigger, then a random delay):")
        for phase in PHASES:
            print(f"  {phases.get(phase, 0):4d}  {phase}")
        if fallback:
            print(f"        ({fallback} of them at a random moment: their trigger did not come)")
        in_flight: Counter[str] = Counter()
        for kill in self.kills:
            for part in kill.open_calls.split(", "):
                if part != "none":
                    n, kind = part.split(" ", 1)
                    in_flight[kind] += int(n)
        print(f"model streams open at the kills: {counts(in_flight)}")
        if self.restart_seconds:
            print(
                f"restart (kill -> Socket Mode connected): median "
                f"{statistics.median(self.restart_seconds):.2f} s, max "
                f"{max(self.restart_seconds):.2f} s; final stop (SIGTERM) exit code "
                f"{self.final_exit}"
            )
        print(
            f"conversations: {len(self.convs)} started, {out.acked} mentions acknowledged, "
            f"{out.answered} answered by their user, {out.asked} questions asked during "
            f"research; Slack redeliveries of unacknowledged events: {self.redeliveries}; "
            f"'running it again' notices: {out.resuming_notices}; Retry presses: "
            f"{self.retry_clicks}"
        )
        gave_up = Counter(c.gave_up for c in self.convs.values() if c.gave_up)
        if gave_up:
            print(
                "  the driver stopped waiting (nothing happened for "
                f"{self.args.quiet:.0f} s): "
                + ", ".join(f"{n} at '{what}'" for what, n in gave_up.most_common())
            )
        print(
            f"model requests beyond one per step: forced by a kill {counts(forced)}; "
            f"after the bot closed the previous stream itself {counts(self_cut)}; "
            f"duplicates {counts(duplicate)}"
        )
        print()
        figures = [
            (
                "CONVERSATIONS LOST",
                out.lost,
                f"{len(out.no_question)} never got their clarifying question, "
                f"{len(out.no_final)} answered but no report and no Retry as last word",
            ),
            (
                "REPORTS MISSING",
                len(out.report_missing),
                f"answered threads without an upload: {len(out.no_final)} of the lost above, "
                f"{len(out.ended_on_retry)} ending on a Retry button",
            ),
            (
                "REPORTS DUPLICATED",
                len(out.report_dup),
                "threads with more than one upload or report summary",
            ),
            (
                "REPORT SUMMARIES MISSING",
                len(out.summary_missing),
                "report file uploaded, its summary message (sources, cost) never posted",
            ),
            (
                "QUESTIONS NEVER ANSWERED",
                len(out.unanswered),
                f"of {out.asked} asked during research; answered twice: {len(out.answered_twice)}",
            ),
            (
                "USAGE ROWS LOST",
                usage.lost_count,
                f"{len(usage.lost_before_flush)} cut before their first flush "
                f"({max(0.1, self.args.lease / 3):.2f} s), {len(usage.lost)} otherwise",
            ),
            (
                "USAGE ROWS DOUBLE-COUNTED",
                usage.doubled_count,
                "more than one row per request, rows with no request, or more than was sent",
            ),
        ]
        for name, count, note in figures:
            print(f"{name:28s} {count:4d}   ({note})")
        served, deaths = self.dashscope.served, self.deaths
        for what, convs, kind in (
            ("no clarifying question", out.no_question, "clarify"),
            ("no report", out.report_missing, "research"),
            ("no report summary", out.summary_missing, "research"),
            ("question never answered", out.unanswered, "answer"),
        ):
            if convs:
                print(f"  {what}: {split_by_death(convs, served, kind, deaths)}")
        print("other findings:")
        print(f"  clarifying question posted twice: {len(out.question_dup)}")
        print(
            f"  'your research is queued' notices: {out.queued_notices} (saying '0th in line': "
            f"{out.queued_zeroth})"
        )
        print(
            f"  clarifying question came after the driver gave up: {len(out.not_answered_by_user)}"
        )
        latest, older = progress_left_live(self.slack)
        print(
            f"  progress messages still showing Stop: {latest} the thread's latest, {older} "
            "older ones (of runs cut and started again)"
        )
        print(
            f"  inbox events never done: {len(pending_inbox)}; cut more than 3 times and "
            f"dropped: {len(dropped_events)}; kept questions left: {len(db['kept'])}"
        )
        for line in usage.lines():
            print("  " + line)
        print()

        def show(title: str, convs: list[Conv]) -> None:
            if not convs:
                return
            print(f"{title}: {len(convs)}")
            for conv in convs[: self.args.show or 3]:
                state = states.get(conv.thread)
                described = (
                    f"db: {state[0]}, resumes {state[1]}, owner {'set' if state[2] else 'none'}"
                    if state
                    else "db: no conversation row"
                )
                print(f"  conv-{conv.conv:04d} thread {conv.thread} ({described})")
                for line in self.timeline(conv):
                    print(line)

        show("conversations without their clarifying question", out.no_question)
        show("answered conversations with no final state", out.no_final)
        show("reports missing, thread ending on Retry", out.ended_on_retry)
        show("reports duplicated", out.report_dup)
        show("report summaries missing", out.summary_missing)
        show("questions never answered", out.unanswered)
        show("questions answered twice", out.answered_twice)
        show("clarifying question posted twice", out.question_dup)
        for title, items in (
            ("usage rows lost (not cut before a flush)", usage.lost),
            ("usage rows double-counted", usage.doubled),
            ("ledger rows with no request", usage.phantom),
            ("recorded more than was sent", usage.over),
            ("recorded less, no cut", usage.short_unexplained),
            ("duplicate model requests", dup_details),
        ):
            if items:
                print(f"{title}: {len(items)}")
                for item in items[:10]:
                    print(f"  {item}")
        now = time.monotonic()
        still_open = sorted(self.dashscope.open.values(), key=lambda s: s.arrived)
        if still_open:
            print(f"model streams still open when the bot was stopped: {len(still_open)}")
            for s in still_open[:10]:
                print(
                    f"  {s.kind} of conv-{s.conv:04d} ({s.request_id}): at {s.where}, "
                    f"open {now - s.arrived:.1f} s, {s.frames_sent} frames written"
                )
        odd = sorted(
            {
                int(m)
                for item in (*usage.lost, *usage.short_unexplained, *usage.over, *dup_details)
                for m in re.findall(r"conv-(\d{4})", item)
            }
        )
        if odd and self.args.show:
            print("timelines of the conversations named above:")
            for number in odd[: self.args.show]:
                conv = self.convs[number]
                print(f"  conv-{number:04d} thread {conv.thread}")
                for line in self.timeline(conv):
                    print(line)
        findings = log_findings(self.logs)
        if findings:
            print("the bot's ERROR lines and exceptions, grouped (log files in the temp dir):")
            for line in findings:
                print("  " + line)
        self.problems = sum(count for _, count, _ in figures)
        verdict = "PASS" if self.problems == 0 and not self.aborted else "FAIL"
        print()
        print(
            f"crash safety, {len(self.kills)} SIGKILLs, seed {self.args.seed}: {verdict}: "
            + " / ".join(f"{name.lower()} {count}" for name, count, _ in figures)
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_safety", description=__doc__)
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    parser.add_argument(
        "--conversations",
        type=int,
        default=30,
        help="at least this many conversations; new ones start until the last kill",
    )
    parser.add_argument("--concurrency", type=int, default=6, help="conversations at once")
    parser.add_argument(
        "--ask-fraction", type=float, default=0.4, help="users who ask during research"
    )
    parser.add_argument("--lease", type=float, default=1.0, help="RUN_LEASE_SECONDS")
    parser.add_argument(
        "--tail", type=float, default=90.0, help="seconds allowed after the last kill"
    )
    parser.add_argument(
        "--quiet", type=float, default=30.0, help="a conversation silent this long is given up"
    )
    parser.add_argument("--show", type=int, default=0, help="timelines shown per finding")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, db)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    return args


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    print(
        f"crash safety: one bot process (Socket Mode, SQLite), {args.kills} SIGKILLs, seed "
        f"{args.seed}; RUN_LEASE_SECONDS={args.lease:g}, DRAIN_SECONDS=0; at least "
        f"{args.conversations} conversations, {args.concurrency} at once, "
        f"{args.ask_fraction:.0%} ask during research; temp dir {tmp}"
    )
    run = CrashRun(args, tmp)
    keep = args.keep
    try:
        await run.run()
        keep = keep or run.problems > 0
        return 0 if run.problems == 0 else 1
    except BaseException:
        keep = True
        raise
    finally:
        if run.bot is not None and run.bot.alive:
            run.bot.kill()
            await run.bot.wait(10)
        if keep:
            print(f"(logs and database kept in {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
