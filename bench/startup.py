"""Import time of `python -m bot` before it listens (issue 13: under 0.6 s).

Starts the real entry point, `python -X importtime -m bot --http`, against the local fake Slack
(auth.test) and fake DashScope, and watches its port: first on a fresh SQLite database (the
first start ever, which creates the schema with Alembic), then again on the same database (every
later start: a restart, a deploy). Everything the
process imported until the port accepted a connection is summed from the `-X importtime` lines
(the cumulative time of each top-level import, in any thread). The port opens before the rest
of the bot is imported (bot/front.py), so the time until GET /readyz answers 200 (Slack's
requests served) and the imports until then are printed too. Then it is stopped with SIGTERM.
Rounds are repeated and the median [min-max] printed, with the ten heaviest top-level imports of
the median round.

    .venv/bin/python -m bench.startup [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench._harness import configure_logging
from tests.conftest import SIGNING_SECRET
from tests.fakes.dashscope_server import FakeDashScope
from tests.fakes.slack_server import FakeSlack
from tests.test_durability import bot_env

GOAL_SECONDS = 0.6
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.05)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def one_round(slack: FakeSlack, dashscope: FakeDashScope, tmp: str) -> Round:
    port = _free_port()
    env = bot_env(
        slack,
        dashscope,
        Path(tmp) / "bot.sqlite3",
        PYTHONPATH=str(Path.cwd()),  # the bot's code, from a process started in `tmp`
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        HOST="127.0.0.1",
        PORT=str(port),
    )
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "bot",
        "--http",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=tmp,
    )
    lines: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            lines.append(raw.decode(errors="replace").rstrip("\n"))

    reader = asyncio.create_task(read())
    try:
        while not _listening(port):
            if proc.returncode is not None or time.monotonic() - started > 60:
                raise RuntimeError("the bot did not listen:\n" + "\n".join(lines[-20:]))
            await asyncio.sleep(0.005)
        listening = time.monotonic() - started
        await asyncio.sleep(0.05)  # lines already written reach the pipe
        before = list(lines)
        while not await asyncio.to_thread(_ready, port):
            if proc.returncode is not None or time.monotonic() - started > 60:
                raise RuntimeError("the bot did not get ready:\n" + "\n".join(lines[-20:]))
            await asyncio.sleep(0.005)
        ready = time.monotonic() - started
        await asyncio.sleep(0.05)
        until_ready = list(lines)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)  # only the process this round started
        await asyncio.wait_for(proc.wait(), 30)
        await reader
    top = _top_level(before)
    return Round(
        imports=sum(t for t, _ in top),
        listening=listening,
        ready=ready,
        imports_ready=sum(t for t, _ in _top_level(until_ready)),
        top=top,
    )


@dataclass
class Round:
    imports: float  # seconds of imports before the port accepted a connection
    listening: float  # seconds from the process's start to the port accepting
    ready: float  # ... to GET /readyz answering 200 (Slack's requests served)
    imports_ready: float  # seconds of imports before that
    top: list[tuple[float, str]]  # the top-level imports before listening


def _top_level(lines: list[str]) -> list[tuple[float, str]]:
    """(seconds, module) of each top-level import in `-X importtime` lines."""
    top = []
    for line in lines:
        match = _LINE.match(line)
        if match and not match.group(3):
            top.append((int(match.group(2)) / 1e6, match.group(4)))
    return top


def _ready(port: int) -> bool:
    try:
        url = f"http://127.0.0.1:{port}/readyz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False  # 503 while starting (an HTTPError), or no answer yet


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


async def run(args: argparse.Namespace) -> int:
    first, results = [], []
    async with FakeSlack() as slack, FakeDashScope() as dashscope:
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
                first.append(await one_round(slack, dashscope, tmp))
                results.append(await one_round(slack, dashscope, tmp))
    load = _load()
    for name, rounds in (("first start (new database)", first), ("later starts", results)):
        print(
            f"python -m bot --http, {name}, {args.rounds} rounds (load {load}): "
            f"imports before listening {_spread([r.imports for r in rounds], 3)} s, "
            f"listening after {_spread([r.listening for r in rounds])} s; "
            f"ready (GET /readyz 200) after {_spread([r.ready for r in rounds])} s, "
            f"imports until then {_spread([r.imports_ready for r in rounds], 3)} s"
        )
    imports = [r.imports for r in results]
    median = sorted(results, key=lambda r: r.imports)[len(results) // 2]
    print(
        "heaviest top-level imports before listening (later starts, median round): "
        + ", ".join(f"{name} {t:.3f} s" for t, name in sorted(median.top, reverse=True)[:10])
    )
    verdict = "PASS" if statistics.median(imports) < GOAL_SECONDS else "FAIL"
    print(f"imports before listening (later starts) < {GOAL_SECONDS} s: {verdict}")
    return 0


def _spread(values: list[float], digits: int = 2) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args(argv)


if __name__ == "__main__":
    configure_logging()
    raise SystemExit(asyncio.run(run(parse_args())))
