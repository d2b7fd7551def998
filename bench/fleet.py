"""Fleet (PostgreSQL): three bot processes on one database, one killed, one stopped (issue 14).

Creates a fresh PostgreSQL database `bench_fleet_<random>` (on TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test; dropped WITH (FORCE) at the end, failures included)
and starts three real `python -m bot --http` processes on it, each on its own PORT, with
RUN_LEASE_SECONDS=5 and DRAIN_SECONDS=0, against one fake Slack and one fake DashScope.
`--conversations` research conversations (mention -> clarifying question -> answer -> research
of 6-10 s -> report) are started over the processes in turn, as signed HTTP events. Some events
are also redelivered to ANOTHER process (same event_id, X-Slack-Retry-Num: 1), and some answers
mention the bot, so Slack sends them twice (app_mention and message, two event ids) and they
go to two processes at once.

Mid-run, once process A streams some research, A is SIGKILLed (not restarted; the load
balancer keeps sending it events for 2 s, which fail and are retried elsewhere, as Slack does);
2 s later process B is SIGTERMed and, once it has exited, started again on its port (a deploy).
Users press Retry when a thread offers it. At the end every process is stopped and the fake
Slack's record, the fake DashScope's record and the database are compared:

- duplicate model calls: DashScope requests for a conversation step beyond the first, split
  into those a cut forces (a process died while the previous one streamed) and true duplicates;
- lost conversations, reports missing or duplicated (as in bench.crash_safety);
- takeover time: from the kill (or SIGTERM) to the first progress message of each adopted run
  on a live process (goal: <= RUN_LEASE_SECONDS + 5 s);
- usage rows lost or double-counted, as in bench.crash_safety.

    .venv/bin/python -m bench.fleet [--conversations 60] [--seed N] [--lease 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from bench._durability import (
    BotProcess,
    Conv,
    HookedSlack,
    LedgerRow,
    Pacing,
    ScriptedDashScope,
    ThreadIndex,
    Triggers,
    await_report,
    base_env,
    check_usage,
    clarify_marker,
    counts,
    free_port,
    log_findings,
    outcomes,
    progress_left_live,
    split_by_death,
    step_counts,
    timeline,
    topic,
)
from bot.conversation import ConversationKey
from bot.runtime import EVENTS_PATH
from handlers.render import RETRY_ACTION, STOP_ACTION, key_value
from tests.fakes.slack_payloads import (
    app_mention,
    block_action,
    event_callback,
    message,
    post_signed,
)

DEFAULT_ADMIN_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"
SIGNING_SECRET: Final = "bench-fleet-signing-secret"
ANSWER_TEXT: Final = "Personalised learning in secondary schools"
ACK_TIMEOUT: Final = 3.0  # Slack's
LB_DELAY: Final = 2.0  # the load balancer notices a dead process after this long


@dataclass
class Slot:
    """One place in the fleet: a port, and the process serving it now."""

    name: str
    port: int
    process: BotProcess | None = None
    routable: bool = False
    pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{EVENTS_PATH}"


@dataclass
class Disruption:
    what: str  # "SIGKILL A" / "SIGTERM B"
    slot: str
    pid: int
    at: float
    runs: list[str]  # threads it was streaming research for
    exited_at: float | None = None
    exit_code: int | None = None


class FleetRun:
    def __init__(self, args: argparse.Namespace, tmp: Path, database_url: str) -> None:
        self.args = args
        self.tmp = tmp
        self.database_url = database_url
        self.rng = random.Random(args.seed)
        self.triggers = Triggers()
        self.slack = HookedSlack(self.triggers)
        self.dashscope = ScriptedDashScope(
            args.seed,
            Pacing(clarify=(0.5, 1.5), research=(args.research_min, args.research_max)),
            self.triggers,
        )
        self.index = ThreadIndex(self.slack)
        self.slots = [Slot(name, free_port()) for name in ("A", "B", "C")]
        self.logs: list[Path] = []
        self.convs: dict[int, Conv] = {}
        self.by_thread: dict[str, Conv] = {}
        self.disruptions: list[Disruption] = []
        self.deaths: list[float] = []
        self.hard_deadline = float("inf")
        self.acks: list[float] = []
        self.failovers = 0
        self.redeliveries = 0
        self.redelivery_answers: Counter[int] = Counter()
        self.dual_answers = 0
        self.retry_clicks = 0
        self.replacement_ready: float | None = None
        self.aborted: str | None = None
        self.problems = 0
        self.wall = 0.0
        self.final_codes: list[int | None] = []
        self.session: aiohttp.ClientSession | None = None
        self.pg: asyncpg.Connection | None = None

    # --- processes ------------------------------------------------------------------------

    def env(self, slot: Slot) -> dict[str, str]:
        return base_env(
            self.tmp,
            self.slack,
            self.dashscope,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            DATABASE_URL=self.database_url,
            HOST="127.0.0.1",
            PORT=str(slot.port),
            RUN_LEASE_SECONDS=str(self.args.lease),
            PROGRESS_UPDATE_SECONDS="5",  # the default
            # Admission caps (when the bot has them) high enough that research is never
            # queued: this measures takeover, not admission.
            USER_MAX_RUNNING="1000",
            WORKSPACE_MAX_RUNNING="1000",
        )

    async def start(self, slot: Slot, generation: int) -> None:
        log = self.tmp / f"bot-{slot.name}{generation}.log"
        self.logs.append(log)
        slot.process = BotProcess(self.env(slot), log, "--http")
        await slot.process.start()
        slot.pids.append(slot.process.pid)
        deadline = time.monotonic() + 90
        while True:
            if not slot.process.alive:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"bot {slot.name} exited while starting:\n{tail}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", slot.port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"bot {slot.name} did not listen within 90 s")
            await asyncio.sleep(0.1)
        slot.routable = True

    def routable(self) -> list[Slot]:
        return [s for s in self.slots if s.routable] or self.slots

    async def researching_on(self, pid: int) -> list[str]:
        assert self.pg is not None
        rows = await self.pg.fetch(
            "SELECT thread_ts FROM conversations WHERE state = 'researching' AND owner LIKE $1",
            f"%:{pid}:%",
        )
        return [r["thread_ts"] for r in rows]

    async def disrupt(self) -> None:
        """SIGKILL A once it streams research; SIGTERM B 2 s later and start it again."""
        a, b = self.slots[0], self.slots[1]
        assert a.process is not None and b.process is not None
        # Once enough conversations started, as soon as A streams its share of the research
        # running then (about 60 %), or at 80 % of the spread at the latest.
        rate = self.args.conversations / self.args.spread
        share = rate * (self.args.research_min + self.args.research_max) / 2 / 3
        enough = max(3, int(0.6 * share))
        latest = time.monotonic() + 0.8 * self.args.spread
        while time.monotonic() < latest:
            started = len(self.convs) >= self.args.conversations * self.args.kill_at
            if started and len(await self.researching_on(a.process.pid)) >= enough:
                break
            await asyncio.sleep(0.25)
        runs = await self.researching_on(a.process.pid)
        a.process.kill()
        killed = Disruption("SIGKILL", a.name, a.process.pid, time.monotonic(), runs)
        self.deaths.append(killed.at)
        self.disruptions.append(killed)
        print(f"  SIGKILL {a.name} (pid {a.process.pid}) while it streamed {len(runs)} run(s)")
        killed.exit_code = await a.process.wait(10)
        killed.exited_at = time.monotonic()

        async def deregister() -> None:
            await asyncio.sleep(LB_DELAY)
            a.routable = False

        deregistering = asyncio.create_task(deregister())
        await asyncio.sleep(2.0)
        runs = await self.researching_on(b.process.pid)
        b.routable = False  # a deploy takes the process out of rotation first
        stopped = Disruption("SIGTERM", b.name, b.process.pid, time.monotonic(), runs)
        self.disruptions.append(stopped)
        self.deaths.append(stopped.at)
        print(f"  SIGTERM {b.name} (pid {b.process.pid}) while it streamed {len(runs)} run(s)")
        stopped.exit_code = await b.process.terminate(40)
        stopped.exited_at = time.monotonic()
        self.deaths.append(stopped.exited_at)
        await self.start(b, 2)
        self.replacement_ready = time.monotonic()
        print(
            f"  {b.name} exited ({stopped.exit_code}) after "
            f"{stopped.exited_at - stopped.at:.1f} s; started again as pid {b.process.pid}, "
            f"ready {self.replacement_ready - stopped.at:.1f} s after the SIGTERM"
        )
        await deregistering

    # --- Slack, as the users and Slack's retries would behave ------------------------------

    async def post(self, slot: Slot, payload: dict[str, Any], retry_num: int | None) -> bool:
        assert self.session is not None
        try:
            status, _, elapsed = await asyncio.wait_for(
                post_signed(self.session, slot.url, SIGNING_SECRET, payload, retry_num=retry_num),
                ACK_TIMEOUT,
            )
        except Exception:
            return False
        if status == 200:
            self.acks.append(elapsed)
        return status == 200

    async def deliver(self, conv: Conv, payload: dict[str, Any], what: str, first: int) -> bool:
        """Slack's delivery: a failure or a late ack is retried (same event_id, retry number
        + 1), and the load balancer sends the retry to whichever process it picks."""
        attempt = 0
        while time.monotonic() < self.hard_deadline:
            slots = self.routable()
            slot = slots[(first + attempt) % len(slots)]
            if await self.post(slot, payload, attempt or None):
                conv.actions.append((time.monotonic(), f"{what} acked by {slot.name}"))
                return True
            attempt += 1
            self.failovers += 1
            await asyncio.sleep(0.3)
        return False

    async def redeliver(self, conv: Conv, payload: dict[str, Any], what: str, not_to: int) -> None:
        """The same event again, to another process, as Slack does when an ack was late."""
        await asyncio.sleep(self.rng.uniform(0.0, 0.5))
        slots = [s for i, s in enumerate(self.routable()) if i != not_to % 3] or self.routable()
        slot = slots[conv.conv % len(slots)]
        self.redeliveries += 1
        ok = await self.post(slot, payload, 1)
        conv.actions.append(
            (time.monotonic(), f"{what} redelivered to {slot.name} ({'acked' if ok else 'failed'})")
        )

    async def click_retry(self, conv: Conv) -> None:
        key = ConversationKey("T1", "C1", conv.thread)
        payload = block_action(RETRY_ACTION, key_value(key), thread_ts=conv.thread)
        assert self.session is not None
        for attempt in range(10):
            slots = self.routable()
            slot = slots[(conv.conv + attempt) % len(slots)]
            with contextlib.suppress(Exception):
                status, _, _ = await asyncio.wait_for(
                    post_signed(
                        self.session, slot.url, SIGNING_SECRET, payload, kind="interactive"
                    ),
                    ACK_TIMEOUT,
                )
                if status == 200:
                    break
            await asyncio.sleep(0.3)
        conv.retry_clicks += 1
        self.retry_clicks += 1
        conv.actions.append((time.monotonic(), "pressed Retry"))

    async def wait_for(self, conv: Conv, done: Any, what: str) -> bool:
        while True:
            self.index.update()
            if done():
                return True
            now = time.monotonic()
            record = self.index.get(conv.thread)
            last = max(record.last_at, conv.actions[-1][0] if conv.actions else conv.started)
            if now > self.hard_deadline or now - last > self.args.quiet:
                conv.gave_up = what
                return False
            await asyncio.sleep(0.1)

    async def converse(self, conv: Conv) -> None:
        rng = random.Random(f"{self.args.seed}:conv:{conv.conv}")
        conv.started = time.monotonic()
        conv.user = f"UFLEET{conv.conv % 40:02d}"
        mention = app_mention(f"<@UBOT> {topic(conv.conv)}", user=conv.user)
        conv.thread = str(mention["ts"])
        self.by_thread[conv.thread] = conv
        payload = event_callback(mention)
        first = conv.conv % 3
        redelivery = None
        if rng.random() < self.args.redeliver:
            redelivery = asyncio.create_task(self.redeliver(conv, payload, "mention", first))
        if not await self.deliver(conv, payload, "mention", first):
            conv.gave_up = "mention never acknowledged"
            return
        conv.mention_acked = True
        if redelivery is not None:
            await redelivery
        thread = self.index.get(conv.thread)
        if not await self.wait_for(
            conv, lambda: thread.count(clarify_marker(conv.conv)) > 0, "clarifying question"
        ):
            return
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        first = rng.randrange(3)
        if rng.random() < self.args.dual:
            # A reply that mentions the bot: Slack sends app_mention and message events (two
            # event ids) for the one message; here they reach two processes at once.
            self.dual_answers += 1
            ts = str(message("x")["ts"])
            as_mention = app_mention(
                f"<@UBOT> {ANSWER_TEXT}", user=conv.user, ts=ts, thread_ts=conv.thread
            )
            as_message = message(
                f"<@UBOT> {ANSWER_TEXT}", user=conv.user, ts=ts, thread_ts=conv.thread
            )
            results = await asyncio.gather(
                self.deliver(conv, event_callback(as_mention), "answer (app_mention)", first),
                self.deliver(conv, event_callback(as_message), "answer (message)", first + 1),
            )
            acked = any(results)
        else:
            reply = event_callback(message(ANSWER_TEXT, user=conv.user, thread_ts=conv.thread))
            redelivery = None
            if rng.random() < self.args.redeliver:
                self.redelivery_answers[conv.conv] += 1
                redelivery = asyncio.create_task(self.redeliver(conv, reply, "answer", first))
            acked = await self.deliver(conv, reply, "answer", first)
            if redelivery is not None:
                await redelivery
        if not acked:
            conv.gave_up = "answer never acknowledged"
            return
        conv.answered_at = time.monotonic()
        await await_report(
            conv,
            thread,
            self.wait_for,
            self.click_retry,
            rng,
            retry_wait=15,
            pause=(0.2, 1.0),
        )

    async def launcher(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        gap = self.args.spread / max(1, self.args.conversations)
        for number in range(1, self.args.conversations + 1):
            conv = Conv(number)
            self.convs[number] = conv
            tasks.add(asyncio.create_task(self.converse(conv)))
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * gap)
        await asyncio.wait(tasks, timeout=max(1.0, self.hard_deadline - time.monotonic()))

    async def settle(self, quiet: float = 6.0, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.slack.calls[-1].at if self.slack.calls else 0.0
            if not self.dashscope.open and time.monotonic() - last > quiet:
                return
            await asyncio.sleep(0.2)

    async def run(self) -> None:
        async with self.slack, self.dashscope, aiohttp.ClientSession() as session:
            self.session = session
            self.pg = await asyncpg.connect(_plain(self.database_url), timeout=10)
            try:
                await asyncio.gather(*(self.start(slot, 1) for slot in self.slots))
                print(
                    "  started "
                    + ", ".join(f"{s.name} (pid {s.pids[0]}, port {s.port})" for s in self.slots)
                )
                started = time.monotonic()
                self.hard_deadline = started + self.args.spread + self.args.tail
                launcher = asyncio.create_task(self.launcher())
                try:
                    await asyncio.wait_for(self.disrupt(), self.args.spread + 180)
                    await asyncio.wait_for(launcher, self.args.spread + self.args.tail + 30)
                except Exception as exc:
                    self.aborted = f"{type(exc).__name__}: {exc}"
                    launcher.cancel()
                await self.settle()
                self.wall = time.monotonic() - started
                live = [s.process for s in self.slots if s.process and s.process.alive]
                self.final_codes = await asyncio.gather(*(p.terminate(40) for p in live))
                await self.analyse()
            finally:
                for slot in self.slots:
                    if slot.process is not None and slot.process.alive:
                        slot.process.kill()
                        await slot.process.wait(10)
                await self.pg.close(timeout=10)

    # --- the figures --------------------------------------------------------------------------

    async def db_rows(self) -> dict[str, Any]:
        assert self.pg is not None
        columns = (
            "thread_ts, kind, input_tokens, output_tokens, reasoning_tokens, request_id, call_id"
        )
        usage = [LedgerRow(*r) for r in await self.pg.fetch(f"SELECT {columns} FROM usage")]
        inflight = [
            LedgerRow(*r) for r in await self.pg.fetch(f"SELECT {columns} FROM inflight_usage")
        ]
        states = {
            r["thread_ts"]: (r["state"], r["resumes"], r["owner"])
            for r in await self.pg.fetch(
                "SELECT thread_ts, state, resumes, owner FROM conversations"
            )
        }
        inbox = await self.pg.fetch("SELECT event_id, attempts, done_at FROM inbox")
        return {"usage": usage, "inflight": inflight, "states": states, "inbox": inbox}

    def takeover(self, d: Disruption) -> tuple[list[float], list[float], list[str]]:
        """(to the first progress message, to the model request) per adopted run; threads
        never taken over."""
        progress: list[float] = []
        model: list[float] = []
        missing: list[str] = []
        for thread in d.runs:
            conv = self.by_thread.get(thread)
            record = self.index.get(thread)
            shown = next((t for t, text in record.posts if t > d.at and STOP_ACTION in text), None)
            asked = next(
                (
                    s.arrived
                    for s in self.dashscope.served
                    if conv is not None
                    and s.conv == conv.conv
                    and s.kind == "research"
                    and s.arrived > d.at
                ),
                None,
            )
            if shown is None:
                missing.append(thread)
            else:
                progress.append(shown - d.at)
            if asked is not None:
                model.append(asked - d.at)
        return progress, model, missing

    async def analyse(self) -> None:
        db = await self.db_rows()
        out = outcomes(self.index, self.convs.values())
        usage = check_usage(
            self.dashscope.served,
            db["usage"],
            self.deaths,
            flush_seconds=self.args.lease / 3,
            inflight=db["inflight"],
            threads={c.conv: c.thread for c in self.convs.values()},
        )
        forced, self_cut, duplicate, dup_details = step_counts(self.dashscope.served, self.deaths)
        print()
        print(
            f"seed {self.args.seed}; {len(self.convs)} conversations over 3 processes; wall "
            f"time {self.wall:.0f} s; RUN_LEASE_SECONDS={self.args.lease:g}"
        )
        if self.aborted:
            print(f"  ! the run was cut short: {self.aborted}")
        served = self.dashscope.served
        print(
            f"events: {len(self.acks)} acknowledged (ack p50 "
            f"{statistics.median(self.acks) * 1000:.0f} ms, max {max(self.acks) * 1000:.0f} ms); "
            f"{self.redeliveries} redelivered to another process; {self.failovers} deliveries "
            f"failed and were retried elsewhere; {self.dual_answers} answers sent as "
            f"app_mention + message to two processes"
        )
        print(
            f"model requests: {len(served)} ({counts(Counter(s.kind for s in served))}); "
            f"'running it again' notices: {out.resuming_notices}; Retry presses: "
            f"{self.retry_clicks}; exit codes of the live processes stopped (SIGTERM) at the "
            f"end: {self.final_codes}"
        )
        gave_up = Counter(c.gave_up for c in self.convs.values() if c.gave_up)
        if gave_up:
            print(
                f"  the driver stopped waiting (nothing happened for {self.args.quiet:.0f} s): "
                + ", ".join(f"{n} at '{what}'" for what, n in gave_up.most_common())
            )
        print()
        takeovers: list[float] = []
        for d in self.disruptions:
            progress, model, missing = self.takeover(d)
            takeovers += progress
            exited = f"{d.exited_at - d.at:.1f} s" if d.exited_at else "?"
            print(
                f"{d.what} {d.slot} (pid {d.pid}, exit {d.exit_code} after {exited}): "
                f"{len(d.runs)} research run(s) streaming on it"
            )
            if progress:
                print(
                    f"  first progress of the adopted run on a live process: median "
                    f"{statistics.median(progress):.1f} s, max {max(progress):.1f} s after the "
                    f"signal (model request: median {statistics.median(model):.1f} s, max "
                    f"{max(model):.1f} s)"
                )
            if missing:
                print(f"  ! {len(missing)} run(s) never showed progress again: {missing[:5]}")
        goal = self.args.lease + 5
        worst = max(takeovers) if takeovers else float("nan")
        print()
        figures = [
            (
                "DUPLICATE MODEL CALLS",
                sum(duplicate.values()),
                f"beyond one per step and not forced by a cut: {counts(duplicate)}; forced by "
                f"a process death: {counts(forced)}; after the bot closed the previous stream "
                f"itself: {counts(self_cut)}",
            ),
            (
                "CONVERSATIONS LOST",
                out.lost,
                f"{len(out.no_question)} never got their clarifying question, "
                f"{len(out.no_final)} answered but no report and no Retry as last word",
            ),
            (
                "REPORTS MISSING",
                len(out.report_missing),
                f"{len(out.no_final)} of the lost above, {len(out.ended_on_retry)} ending on a "
                "Retry button",
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
        ]
        for name, count, note in figures:
            print(f"{name:24s} {count:4d}   ({note})")
        for what, convs, kind in (
            ("no clarifying question", out.no_question, "clarify"),
            ("no report", out.report_missing, "research"),
            ("no report summary", out.summary_missing, "research"),
        ):
            if convs:
                print(f"  {what}: {split_by_death(convs, served, kind, self.deaths)}")
        verdict_takeover = "PASS" if takeovers and worst <= goal else "FAIL"
        print(
            f"{'TAKEOVER (max)':24s} {worst:4.1f} s (goal <= RUN_LEASE_SECONDS + 5 = {goal:g} s: "
            f"{verdict_takeover}; {len(takeovers)} adopted runs)"
        )
        print("other findings:")
        print(f"  clarifying question posted twice: {len(out.question_dup)}")
        print(
            f"  'your research is queued' notices: {out.queued_notices} (saying '0th in line': "
            f"{out.queued_zeroth})"
        )
        latest, older = progress_left_live(self.slack)
        print(
            f"  progress messages still showing Stop: {latest} the thread's latest, {older} "
            "older ones (of runs cut and started again)"
        )
        pending = [r for r in db["inbox"] if r["done_at"] is None]
        print(
            f"  inbox events never done: {len(pending)}; conversations still researching: "
            f"{sum(s[0] == 'researching' for s in db['states'].values())}"
        )
        for line in usage.lines():
            print("  " + line)
        print()
        marks = [(d.at, f"{d.what} {d.slot}") for d in self.disruptions]
        marks += [(d.exited_at, f"{d.slot} exited") for d in self.disruptions if d.exited_at]
        if self.replacement_ready:
            marks.append((self.replacement_ready, "B started again"))

        def show(title: str, convs: list[Conv]) -> None:
            if not convs:
                return
            print(f"{title}: {len(convs)}")
            for conv in convs[: self.args.show or 3]:
                state = db["states"].get(conv.thread)
                on = [
                    f"{d.slot} at its {d.what}" for d in self.disruptions if conv.thread in d.runs
                ]
                print(
                    f"  conv-{conv.conv:04d} thread {conv.thread} (db: {state}"
                    + (f"; streamed on {', '.join(on)}" if on else "")
                    + ")"
                )
                for line in timeline(conv, self.index, served, marks):
                    print(line)

        show("conversations without their clarifying question", out.no_question)
        show("answered conversations with no final state", out.no_final)
        show("reports missing, thread ending on Retry", out.ended_on_retry)
        show("reports duplicated", out.report_dup)
        show("report summaries missing", out.summary_missing)
        show("clarifying question posted twice", out.question_dup)
        dup_convs = sorted(
            {int(part.split("conv-")[1][:4]) for part in dup_details if "conv-" in part}
        )
        if dup_details:
            print(f"duplicate model requests: {len(dup_details)}")
            for item in dup_details[:10]:
                print(f"  {item}")
            for number in dup_convs[: self.args.show or 2]:
                conv = self.convs.get(number)
                if conv is not None:
                    print(f"  conv-{number:04d} thread {conv.thread}")
                    for line in timeline(conv, self.index, served, marks):
                        print(line)
        for title, items in (
            ("usage rows lost (not cut before a flush)", usage.lost),
            ("usage rows double-counted", usage.doubled),
            ("ledger rows with no request", usage.phantom),
            ("recorded more than was sent", usage.over),
            ("recorded less, no cut", usage.short_unexplained),
        ):
            if items:
                print(f"{title}: {len(items)}")
                for item in items[:10]:
                    print(f"  {item}")
        now = time.monotonic()
        still_open = sorted(self.dashscope.open.values(), key=lambda s: s.arrived)
        if still_open:
            print(f"model streams still open when the bots were stopped: {len(still_open)}")
            for s in still_open[:10]:
                print(
                    f"  {s.kind} of conv-{s.conv:04d} ({s.request_id}): at {s.where}, "
                    f"open {now - s.arrived:.1f} s, {s.frames_sent} frames written"
                )
        findings = log_findings(self.logs)
        if findings:
            print("the bots' ERROR lines and exceptions, grouped:")
            for line in findings:
                print("  " + line)
        self.problems = sum(count for _, count, _ in figures) + (verdict_takeover == "FAIL")
        verdict = "PASS" if self.problems == 0 and not self.aborted else "FAIL"
        print()
        print(
            f"fleet, 3 processes, {len(self.convs)} conversations, seed {self.args.seed}: "
            f"{verdict}: "
            + " / ".join(f"{name.lower()} {count}" for name, count, _ in figures)
            + f" / takeover max {worst:.1f} s (goal <= {goal:g} s)"
        )


# --------------------------------------------------------------------------- PostgreSQL


def _plain(url: str, database: str | None = None) -> str:
    """`url` with the plain postgresql:// scheme asyncpg takes (and another database)."""
    parts = urlsplit(url)
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit(parts._replace(scheme="postgresql", path=path))


async def create_database(admin_url: str) -> str:
    conn = await asyncpg.connect(_plain(admin_url), timeout=10)
    name = f"bench_fleet_{uuid.uuid4().hex[:12]}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"', timeout=30)
    finally:
        await conn.close(timeout=10)
    return name


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(_plain(admin_url), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=60)
    finally:
        await conn.close(timeout=10)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--conversations", type=int, default=60)
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    parser.add_argument("--lease", type=float, default=5.0, help="RUN_LEASE_SECONDS")
    parser.add_argument(
        "--spread", type=float, default=None, help="seconds over which conversations start"
    )
    parser.add_argument("--research-min", type=float, default=6.0)
    parser.add_argument("--research-max", type=float, default=10.0)
    parser.add_argument(
        "--redeliver", type=float, default=0.3, help="events also sent to another process"
    )
    parser.add_argument(
        "--dual", type=float, default=0.2, help="answers sent as app_mention + message"
    )
    parser.add_argument(
        "--kill-at", type=float, default=0.5, help="kill once this share has started"
    )
    parser.add_argument("--tail", type=float, default=120.0)
    parser.add_argument("--quiet", type=float, default=40.0)
    parser.add_argument("--show", type=int, default=0, help="timelines shown per finding")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (bot logs)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    if args.spread is None:
        args.spread = max(10.0, args.conversations / 5)
    return args


async def main_async(args: argparse.Namespace) -> int:
    admin_url = os.environ.get("TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        name = await create_database(admin_url)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL unreachable at {urlsplit(admin_url).hostname}: {exc}")
        return 2
    print(
        f"fleet: 3 bot processes (HTTP, PostgreSQL database {name}), {args.conversations} "
        f"conversations over {args.spread:.0f} s, seed {args.seed}; RUN_LEASE_SECONDS="
        f"{args.lease:g}, DRAIN_SECONDS=0; research streams {args.research_min:g}-"
        f"{args.research_max:g} s; {args.redeliver:.0%} of events redelivered to another "
        f"process; temp dir {tmp}"
    )
    run = FleetRun(args, tmp, _plain(admin_url, name))
    keep = args.keep
    try:
        await run.run()
        keep = keep or run.problems > 0
        return 0 if run.problems == 0 else 1
    except BaseException:
        keep = True
        raise
    finally:
        try:
            await drop_database(admin_url, name)
            print(f"(dropped database {name})")
        except Exception as exc:
            print(f"! could not drop database {name}: {exc}")
        if keep:
            print(f"(bot logs kept in {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
