"""Storage throughput on SQLite and PostgreSQL: the same workload through the real Storage API.

1. Conversation churn: `--conversations` research conversations from `--tasks` concurrent
   asyncio tasks. Each is created (AWAITING_CLARIFICATION, with its clarify usage row), saved
   to RESEARCHING, then saved to DONE with its report and research usage row: three writes,
   each one transaction (state and usage together), as the bot makes them.
2. Usage-report queries: `--ledger-rows` ledger rows inserted first through ledger.record in
   batches of `--batch`, then ledger.by_model(team), ledger.top_users(team) and
   ledger.tokens(team, since=30 days ago), each timed `--repeats` times.
3. PostgreSQL only: the churn from `--writers` processes at once (each its own conversation
   keys, same database and workspace), and from one process for comparison.

SQLite runs on a file in a temporary directory. PostgreSQL runs in a database created for the
run on TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) and dropped at the
end; if the server does not answer, only SQLite runs.

    .venv/bin/python -m bench.storage [--engine both|sqlite|postgresql] [--conversations N]
        [--tasks K] [--ledger-rows R] [--repeats N] [--writers P] [--per-writer N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import asyncpg
import sqlalchemy
from sqlalchemy import func, select

from bench._harness import configure_logging, percentile
from bot.config import database_url
from bot.conversation import Conversation, ConversationKey, State
from bot.records import UsageRecord
from storage import Storage
from storage.tables import conversations as conversations_table
from storage.tables import usage as usage_table

DEFAULT_ADMIN_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"
MODEL: Final = "qwen-deep-research"
CHURN_TEAM: Final = "TCHURN"
LEDGER_TEAM: Final = "TLEDGER"
DAY: Final = 86_400.0
# The ledger's models; the last has no price (NULL cost), as a model missing from PRICING_FILE.
LEDGER_MODELS: Final = (
    (MODEL, Decimal("0.000054")),
    ("qwen-deep-research-2025-12-15", Decimal("0.000054")),
    ("qwen-plus", Decimal("0.0000008")),
    ("qwen-unpriced-preview", None),
)
TOPIC: Final = "Research the effects of AI tutoring on learning outcomes in secondary schools"
QUESTION: Final = "Which aspects matter most to you: personalised learning or assessment?"
REPLY: Final = "Personalised learning, please, with studies from the last five years"
REFERENCES: Final = tuple(
    {"index": i, "title": f"Study {i} on adaptive tutoring", "url": f"https://example.org/{i}"}
    for i in range(1, 13)
)


# --------------------------------------------------------------------------- the churn workload


@dataclass
class Churn:
    """What one run of the churn workload did (picklable: it comes back from child processes)."""

    requested: int
    tasks: int
    done: int = 0  # conversations that reached DONE
    ops: int = 0  # successful creates + saves
    started: float = 0.0  # time.monotonic(), one clock for every process on Linux
    ended: float = 0.0
    create_ms: list[float] = field(default_factory=list)
    save_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # this process's CPU time (all its threads) during the run
    busy_cores: float | None = None  # the whole machine's, during the run (Linux)

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat; None elsewhere."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cores(
    before: tuple[float, float] | None, after: tuple[float, float] | None
) -> float | None:
    """How many cores were busy on average between two machine_cpu() readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def _usage(key: ConversationKey, kind: str, tokens_in: int, tokens_out: int) -> UsageRecord:
    return UsageRecord(
        team_id=key.team_id,
        user_id="U0001",
        channel_id=key.channel_id,
        thread_ts=key.thread_ts,
        model=MODEL,
        kind=kind,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        reasoning_tokens=tokens_out // 4,
        request_id=uuid.uuid4().hex,
        cost_usd=Decimal(tokens_in + tokens_out) * Decimal("0.000054"),
    )


def _describe(exc: BaseException) -> str:
    """The exception's type and first line (SQLAlchemy appends the statement and a link)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__module__}.{type(exc).__name__}: {first[:240]}"


async def churn(
    storage: Storage, tag: str, n: int, tasks: int, report: str, team: str = CHURN_TEAM
) -> Churn:
    """`n` conversations through create -> RESEARCHING -> DONE from `tasks` asyncio tasks.
    `tag` keeps the keys of different runs (and processes) apart."""
    result = Churn(requested=n, tasks=tasks)
    numbers = iter(range(n))  # shared: each task takes the next conversation
    conversations = storage.conversations

    async def one(i: int) -> None:
        key = ConversationKey(team, f"C{tag}-{i % 50:02d}", f"{1_700_000_000 + i}.{tag}")
        draft = Conversation(
            key=key,
            user_id="U0001",
            state=State.AWAITING_CLARIFICATION,
            model=MODEL,
            history=(
                {"role": "user", "content": TOPIC},
                {"role": "assistant", "content": QUESTION},
            ),
        )
        t = time.monotonic()
        created = await conversations.create(draft, [_usage(key, "clarify", 120, 60)])
        result.create_ms.append((time.monotonic() - t) * 1000)
        if created is None:
            result.errors["create returned None (the thread had a conversation already)"] += 1
            return
        result.ops += 1
        researching = created.to(
            State.RESEARCHING,
            history=(*created.history, {"role": "user", "content": REPLY}),
            progress_ts=f"{1_800_000_000 + i}.{tag}",
        )
        t = time.monotonic()
        saved = await conversations.save(researching)
        result.save_ms.append((time.monotonic() - t) * 1000)
        result.ops += 1
        finished = saved.to(State.DONE, report=report, references=REFERENCES, progress_ts=None)
        t = time.monotonic()
        await conversations.save(finished, [_usage(key, "research", 2_400, 9_000)])
        result.save_ms.append((time.monotonic() - t) * 1000)
        result.ops += 1
        result.done += 1

    async def worker() -> None:
        for i in numbers:
            try:
                await one(i)
            except Exception as exc:  # an error is a finding: count it, go on
                result.errors[_describe(exc)] += 1

    cpu, machine = time.process_time(), machine_cpu()
    result.started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    result.ended = time.monotonic()
    result.cpu_seconds = time.process_time() - cpu
    result.busy_cores = busy_cores(machine, machine_cpu())
    return result


async def count_churn(storage: Storage, team: str = CHURN_TEAM) -> tuple[int, int, int]:
    """(conversations in DONE, clarify rows, research rows) of `team` as stored."""
    c, u = conversations_table, usage_table
    async with storage.database.read() as conn:
        done = (
            await conn.execute(
                select(func.count()).where(c.c.team_id == team, c.c.state == State.DONE.value)
            )
        ).scalar_one()
        kinds: dict[str, int] = dict(
            (
                await conn.execute(
                    select(u.c.kind, func.count()).where(u.c.team_id == team).group_by(u.c.kind)
                )
            ).all()
        )
    return int(done), int(kinds.get("clarify", 0)), int(kinds.get("research", 0))


# --------------------------------------------------------------------------- the ledger queries


@dataclass
class Queries:
    rows: int
    insert_seconds: float
    team_rows: int  # the rows by_model saw (a check that they all arrived)
    since_rows_share: float  # share of the rows tokens(since) covers
    ms: dict[str, list[float]]


def ledger_rows(n: int, team: str, now: float, seed: int = 8) -> list[UsageRecord]:
    """`n` calls over the last 90 days by 200 users on four models (one unpriced)."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        model, price = LEDGER_MODELS[rnd.randrange(len(LEDGER_MODELS))]
        kind = rnd.choice(("clarify", "research", "research", "answer"))
        tokens_in = rnd.randint(100, 8_000)
        tokens_out = rnd.randint(50, 20_000)
        rows.append(
            UsageRecord(
                team_id=team,
                user_id=f"U{rnd.randrange(200):04d}",
                channel_id=f"C{rnd.randrange(40):03d}",
                thread_ts=f"{1_700_000_000 + i // 3}.000100",
                model=model,
                kind=kind,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                reasoning_tokens=tokens_out // 3,
                request_id=f"req-{i}",
                cost_usd=None if price is None else price * (tokens_in + tokens_out),
                created_at=now - rnd.random() * 90 * DAY,
            )
        )
    return rows


async def ledger_queries(storage: Storage, rows: int, batch: int, repeats: int) -> Queries:
    now = time.time()
    records = ledger_rows(rows, LEDGER_TEAM, now)
    started = time.monotonic()
    for i in range(0, rows, batch):
        await storage.ledger.record(records[i : i + batch])
    insert_seconds = time.monotonic() - started
    since = now - 30 * DAY
    ledger = storage.ledger
    calls = {
        "by_model(team)": lambda: ledger.by_model(LEDGER_TEAM),
        "top_users(team)": lambda: ledger.top_users(LEDGER_TEAM),
        "tokens(team, since=30 days)": lambda: ledger.tokens(LEDGER_TEAM, since),
    }
    by_model = await ledger.by_model(LEDGER_TEAM)  # also the warm-up, not timed
    await ledger.top_users(LEDGER_TEAM)
    await ledger.tokens(LEDGER_TEAM, since)
    ms: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t = time.monotonic()
            await call()
            ms[name].append((time.monotonic() - t) * 1000)
    return Queries(
        rows=rows,
        insert_seconds=insert_seconds,
        team_rows=sum(t.calls for t in by_model),
        since_rows_share=sum(r.created_at >= since for r in records) / max(1, rows),
        ms=ms,
    )


# --------------------------------------------------------------------------- one engine


@dataclass
class EngineResult:
    engine: str
    version: str
    churn: Churn
    stored: tuple[int, int, int]
    queries: Queries
    settings: str = ""


def report_text(size: int) -> str:
    line = "Finding: adaptive tutoring helps some learners more than others [1]. "
    return ("# AI in Education\n\n" + line * (size // len(line) + 1))[:size]


async def run_engine(engine: str, url: str, args: argparse.Namespace) -> EngineResult:
    storage = await Storage.open(url)
    try:
        async with storage.database.read() as conn:
            if engine == "sqlite":
                version = (await conn.exec_driver_sql("select sqlite_version()")).scalar_one()
                settings = "WAL, synchronous=NORMAL (storage/database.py)"
            else:
                version = (await conn.exec_driver_sql("show server_version")).scalar_one()
                names = ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
                values = [
                    (await conn.exec_driver_sql(f"show {name}")).scalar_one() for name in names
                ]
                settings = ", ".join(f"{n}={v}" for n, v in zip(names, values, strict=True))
        report = report_text(args.report_bytes)
        # Warm-up (not counted): opens the pool's connections, fills the caches.
        await churn(storage, "warm", args.tasks, args.tasks, report, team="TWARM")
        print(f"  {engine}: churn of {args.conversations} conversations ...")
        result = await churn(storage, "main", args.conversations, args.tasks, report)
        stored = await count_churn(storage)
        print(f"  {engine}: {args.ledger_rows:,} ledger rows and {args.repeats} x 3 queries ...")
        queries = await ledger_queries(storage, args.ledger_rows, args.batch, args.repeats)
    finally:
        await storage.close()
    return EngineResult(engine, str(version), result, stored, queries, settings)


# --------------------------------------------------------------------------- writer processes


def _writer_main(url: str, tag: str, args: dict[str, Any], go: Event, conn: Connection) -> None:
    """Child process: open Storage, warm up, say ready, wait for the start, run the churn."""
    configure_logging()

    async def main() -> None:
        storage = await Storage.open(url)
        try:
            report = report_text(args["report_bytes"])
            tasks = args["tasks"]
            await churn(storage, f"warm{tag}", tasks, tasks, report, team="TWARM")
            conn.send("ready")
            loop = asyncio.get_running_loop()
            if not await loop.run_in_executor(None, go.wait, 120):
                raise RuntimeError("no start signal within 120 s")
            result = await churn(storage, tag, args["per_writer"], tasks, report)
        finally:
            await storage.close()
        conn.send(result)

    try:
        asyncio.run(main())
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(f"failed: {_describe(exc)}")
        raise


@dataclass
class WritersResult:
    processes: int
    per_process: list[Churn]
    failures: list[str]
    busy_cores: float | None = None

    @property
    def seconds(self) -> float:
        if not self.per_process:
            return float("nan")
        return max(c.ended for c in self.per_process) - min(c.started for c in self.per_process)

    @property
    def done(self) -> int:
        return sum(c.done for c in self.per_process)

    @property
    def ops(self) -> int:
        return sum(c.ops for c in self.per_process)

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for c in self.per_process:
            total.update(c.errors)
        return total


async def run_writers(
    url: str, processes: int, run: str, args: argparse.Namespace
) -> WritersResult:
    """`processes` writer processes started together on one database; every wait bounded."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    child_args = {
        "report_bytes": args.report_bytes,
        "tasks": args.tasks,
        "per_writer": args.per_writer,
    }
    pipes: list[Connection] = []
    procs = []
    for p in range(processes):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_writer_main,
            args=(url, f"{run}p{p}", child_args, go, child),
            daemon=True,
            name=f"bench-storage-writer-{run}-{p}",
        )
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)
    loop = asyncio.get_running_loop()
    result = WritersResult(processes, [], [])
    try:
        for p, pipe in enumerate(pipes):  # all ready (imported, migrated, warmed up)
            if not await loop.run_in_executor(None, pipe.poll, 120):
                raise RuntimeError(f"writer {p} was not ready within 120 s")
            try:
                message = pipe.recv()
            except EOFError:
                raise RuntimeError(f"writer {p} exited while starting (see above)") from None
            if message != "ready":
                raise RuntimeError(f"writer {p}: {message}")
        go.set()
        machine = machine_cpu()
        for p, pipe in enumerate(pipes):
            if not await loop.run_in_executor(None, pipe.poll, args.timeout):
                result.failures.append(f"writer {p}: no result within {args.timeout:.0f} s")
                continue
            try:
                message = pipe.recv()
            except EOFError:
                result.failures.append(f"writer {p} exited without a result")
                continue
            if isinstance(message, Churn):
                result.per_process.append(message)
            else:
                result.failures.append(f"writer {p}: {message}")
        result.busy_cores = busy_cores(machine, machine_cpu())
    finally:
        for proc in procs:  # a child never released gives up after 120 s, or is ended here
            await loop.run_in_executor(None, proc.join, 10)
            if proc.is_alive():
                proc.terminate()  # only this benchmark's own child
                await loop.run_in_executor(None, proc.join, 5)
        for pipe in pipes:
            pipe.close()
    return result


async def _stored(url: str) -> tuple[int, int, int]:
    storage = await Storage.open(url)
    try:
        return await count_churn(storage)
    finally:
        await storage.close()


# --------------------------------------------------------------------------- PostgreSQL database


def _with_database(url: str, name: str) -> str:
    """`url` on database `name`, with the plain postgresql:// scheme asyncpg takes."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql", path=f"/{name}"))


def _safe(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}" if parts.password else url


async def create_database(admin_url: str) -> str | None:
    """A new database's name, or None (one line printed) if the server does not answer."""
    admin = _with_database(admin_url, urlsplit(admin_url).path.strip("/") or "postgres")
    try:
        conn = await asyncpg.connect(admin, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL unreachable at {_safe(admin_url)} ({_describe(exc)}); SQLite only")
        return None
    name = f"bench_storage_{uuid.uuid4().hex[:12]}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"', timeout=30)
    finally:
        await conn.close(timeout=10)
    return name


async def drop_database(admin_url: str, name: str) -> None:
    admin = _with_database(admin_url, urlsplit(admin_url).path.strip("/") or "postgres")
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=60)
    finally:
        await conn.close(timeout=10)


# --------------------------------------------------------------------------- printing


def _p(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f}"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "-"


def print_errors(where: str, errors: Counter[str]) -> None:
    for text, count in errors.most_common():
        print(f"  ! {where}: {count} x {text}")


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(head: list[str], rows: list[list[str]]) -> None:
    width = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        cells = [row[0].ljust(width[0])]
        cells += [v.rjust(w) for v, w in zip(row[1:], width[1:], strict=True)]
        print("  ".join(cells))


def _churn_rows(
    churns: list[Churn], seconds: list[float], busy: list[float | None]
) -> list[list[str]]:
    """The churn figures of one column per run (a run may be several processes' Churns)."""
    done = [c.done for c in churns]
    return [
        ["conversations/s"] + [_rate(d, s) for d, s in zip(done, seconds, strict=True)],
        ["ops/s (creates + saves)"]
        + [_rate(c.ops, s) for c, s in zip(churns, seconds, strict=True)],
        ["create p50 / p95 ms"] + [_p(c.create_ms) for c in churns],
        ["save p50 / p95 ms"] + [_p(c.save_ms) for c in churns],
        ["done / errors"] + [f"{c.done}/{c.requested} / {c.errors.total()}" for c in churns],
        ["client CPU ms per conversation"]
        + [f"{c.cpu_seconds * 1000 / c.done:.1f}" if c.done else "-" for c in churns],
        ["machine: busy cores (all processes)"] + [_cores(b) for b in busy],
    ]


def _merged(w: WritersResult) -> Churn:
    """The writer processes' Churns as one."""
    total = Churn(requested=sum(c.requested for c in w.per_process), tasks=0)
    for c in w.per_process:
        total.tasks += c.tasks
        total.done += c.done
        total.ops += c.ops
        total.create_ms += c.create_ms
        total.save_ms += c.save_ms
        total.errors.update(c.errors)
        total.cpu_seconds += c.cpu_seconds
    return total


def print_table(results: list[EngineResult], writers: list[WritersResult], args: Any) -> None:
    print(
        f"\nChurn: {args.conversations} conversations from {args.tasks} tasks in one process; "
        f"ledger: {args.ledger_rows:,} rows, each query x {args.repeats}"
    )
    rows = _churn_rows(
        [r.churn for r in results],
        [r.churn.seconds for r in results],
        [r.churn.busy_cores for r in results],
    )
    rows = [[f"churn: {row[0]}", *row[1:]] for row in rows]
    rows.append(
        [f"ledger: insert rows/s (ledger.record x {args.batch:,})"]
        + [_rate(r.queries.rows, r.queries.insert_seconds) for r in results]
    )
    for name in results[0].queries.ms if results else ():
        rows.append([f"ledger.{name} p50 / p95 ms"] + [_p(r.queries.ms[name]) for r in results])
    _table(["", *(r.engine for r in results)], rows)
    if writers:
        print(
            f"\nPostgreSQL writer processes: {args.per_writer} conversations and "
            f"{args.tasks} tasks each, one database and workspace, started together"
        )
        head = [""] + [f"{w.processes} process{'es' if w.processes > 1 else ''}" for w in writers]
        _table(
            head,
            _churn_rows(
                [_merged(w) for w in writers],
                [w.seconds for w in writers],
                [w.busy_cores for w in writers],
            ),
        )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("--engine", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--conversations", type=int, default=2_000, help="churn: conversations")
    parser.add_argument("--tasks", type=int, default=16, help="concurrent asyncio tasks")
    parser.add_argument("--report-bytes", type=int, default=8_000, help="size of each report")
    parser.add_argument("--ledger-rows", type=int, default=100_000, help="usage rows to query")
    parser.add_argument("--batch", type=int, default=1_000, help="rows per ledger.record call")
    parser.add_argument("--repeats", type=int, default=30, help="timings of each query")
    parser.add_argument("--writers", type=int, default=4, help="PostgreSQL writer processes")
    parser.add_argument(
        "--per-writer", type=int, default=1_000, help="conversations per writer process"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds any one phase may take")
    return parser.parse_args(argv)


def print_header(args: argparse.Namespace) -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(
        f"storage: {args.conversations} conversations (create -> RESEARCHING -> DONE, "
        f"{args.report_bytes:,}-byte report, 2 usage rows each) from {args.tasks} tasks; "
        f"{args.ledger_rows:,} ledger rows in batches of {args.batch:,}, each query "
        f"x {args.repeats}; PostgreSQL: 1 and {args.writers} writer processes x "
        f"{args.per_writer} conversations"
    )
    print(
        f"machine: {os.cpu_count()} cores ({affinity} usable), {platform.machine()}, "
        f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"aiosqlite {aiosqlite.__version__}, asyncpg {asyncpg.__version__}, "
        f"SQLite library {sqlite3.sqlite_version}"
    )


async def main(args: argparse.Namespace) -> int:
    print_header(args)
    started = time.monotonic()
    results: list[EngineResult] = []
    writers: list[WritersResult] = []
    writers_stored = (0, 0, 0)
    if args.engine in ("both", "sqlite"):
        with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
            url = database_url(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
            async with asyncio.timeout(args.timeout):
                results.append(await run_engine("sqlite", url, args))
    if args.engine in ("both", "postgresql"):
        admin_url = os.environ.get("TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL
        name = await create_database(admin_url)
        if name is not None:
            url = database_url(_with_database(admin_url, name))
            try:
                async with asyncio.timeout(args.timeout):
                    results.append(await run_engine("postgresql", url, args))
                for processes in (1, args.writers):
                    print(f"  postgresql: {processes} writer process(es) ...")
                    writers.append(await run_writers(url, processes, f"w{processes}", args))
                if writers:
                    writers_stored = await _stored(url)
            finally:
                await drop_database(admin_url, name)
                print(f"  dropped database {name}")
    for r in results:
        print(f"{r.engine} {r.version}: {r.settings}")
    print_table(results, writers, args)
    print()
    for r in results:
        done, clarify, research = r.stored
        c = r.churn
        check = "ok" if (done, clarify, research) == (c.done,) * 3 else "MISMATCH"
        print(
            f"{r.engine}: stored {done} done conversations, {clarify} clarify and {research} "
            f"research usage rows ({check}: the run counted {c.done} done); ledger check: "
            f"by_model counted {r.queries.team_rows:,} of {r.queries.rows:,} rows; "
            f"tokens(since) covers {r.queries.since_rows_share:.0%} of them"
        )
        print_errors(f"{r.engine} churn", c.errors)
    if writers:
        pg = next(r.churn.done for r in results if r.engine == "postgresql")
        done = pg + sum(w.done for w in writers)
        check = "ok" if writers_stored == (done,) * 3 else "MISMATCH"
        print(
            f"postgresql after the writer processes: stored {writers_stored[0]} done "
            f"conversations, {writers_stored[1]} clarify and {writers_stored[2]} research usage "
            f"rows ({check}: {done} done counted, the single-process churn included)"
        )
    for w in writers:
        print_errors(f"postgresql {w.processes} process(es)", w.errors)
        for failure in w.failures:
            print(f"  ! postgresql {w.processes} process(es): {failure}")
    print(f"\nwall time {time.monotonic() - started:.1f} s (Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    configure_logging()
    raise SystemExit(asyncio.run(main(parse_args())))
