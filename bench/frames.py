"""CPU time per research-stream frame: the dashscope SDK's own loop against the bot's whole path.

Target (issue 13): the bot's path over a deep-research stream costs at most 1.25 times what the
dashscope SDK's own stream loop costs over the same stream.

One recorded stream (`--frames`, default 20,000 frames: planning, search rounds with goals,
sources and KeepAlive frames, then the report in small incremental pieces, usage on every frame,
as in ../shared/reference/dashscope-wire.md, built with the fake DashScope's frame builders) is
served byte for byte, each SSE event in its own HTTP chunk, by a plain socket server in a child
process, so none of the serving is charged to the reader. Each path reads the whole stream over
loopback, and the CPU time of the reading thread (`time.thread_time`) is divided by the frames.
The paths run in interleaved rounds (round k runs them all, in an order that rotates), and the
figures are the median [min-max] over the rounds.

    .venv/bin/python -m bench.frames [--frames 20000] [--rounds 15]

Paths:
  aiohttp   a bare aiohttp line loop and json.loads of each data line (the floor)
  sdk       the dashscope SDK's stream loop alone (`BaseAioApi.call(stream=True)`, as the bot
            calls it), doing nothing with the responses
  bot       the bot's whole path: QwenClient.stream (client, interpreter, usage peak) and the
            research run's fold of each event (progress tracker, call result, usage meter)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from bench._harness import configure_logging
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    Frame,
    _sse,
    keepalive_frame,
    metadata_frame,
    research_frame,
)

MODEL = "qwen-deep-research"
API_KEY = "sk-test"
TARGET_RATIO = 1.25
REQUEST_ID = "5f0c1d7e-8b0a-4c55-9f3e-2f6c1a9d7b42"
PROSE = (
    "adaptive tutoring systems show measurable gains for learners who start behind, while "
    "evidence on automated assessment is mixed across subjects and age groups; teachers "
    "report saved time but also new work checking the feedback the tools generate"
)
WORDS = PROSE.split(" ")


# --------------------------------------------------------------------------- the stream


def recorded_stream(total: int) -> list[Frame]:
    """A realistic deep-research step 2 of about `total` frames (at least a few hundred)."""
    frames: list[Frame] = [metadata_frame(REQUEST_ID)]
    used = 0
    word = 0

    def piece(n: int) -> str:
        nonlocal word
        text = " ".join(WORDS[(word + k) % len(WORDS)] for k in range(n)) + " "
        word += n
        return text

    def add(phase: str, status: str, content: str = "", **kw: Any) -> None:
        nonlocal used
        used += max(1, len(content.split()))
        frames.append(
            research_frame(
                phase,
                status,
                content,
                input_tokens=1652,
                output_tokens=used,
                request_id=REQUEST_ID,
                **kw,
            )
        )

    def keepalive() -> None:
        frames.append(keepalive_frame(REQUEST_ID, input_tokens=1652, output_tokens=used))

    for n in range(max(20, total // 50)):
        add("ResearchPlanning", "typing", piece(1 + n % 3))
    add("ResearchPlanning", "finished")
    rounds = 6
    for r in range(1, rounds + 1):
        for n in range(30):  # the goal streams in pieces
            goal = {"id": r, "query": "", "researchGoal": piece(1 + n % 2)}
            add("WebResearch", "streamingQueries", research=goal)
        for _ in range(max(5, total // 120)):  # quiet while searching
            keepalive()
        sites = [
            {
                "title": f"Source {r}.{j}: {piece(4).strip()}",
                "url": f"https://example.com/research/round{r}/site{j}",
                "description": piece(18).strip(),
                "favicon": "https://example.com/favicon.ico",
            }
            for j in range(1, 11)
        ]
        add("WebResearch", "streamingWebResult", research={"id": r, "webSites": sites})
        add("WebResearch", "WebResultFinished", research={"id": r})
    add("WebResearch", "finished")
    left = max(10, total - len(frames) - 1)
    for n in range(left):
        refs = DEFAULT_REFERENCES if n == 0 or n == left - 1 else None
        add("answer", "typing", piece(1 + n % 4), references=refs)
        if n % 500 == 250:
            keepalive()
    add("answer", "finished")
    return frames


def http_body(frames: list[Frame]) -> bytes:
    """The whole HTTP response: headers, then each SSE event as one chunk."""
    head = (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/event-stream;charset=UTF-8\r\n"
        b"Cache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
    )
    parts = [head]
    for n, frame in enumerate(frames, 1):
        event = _sse(n, frame.event, frame.http_status, frame.data)
        parts.append(b"%x\r\n%s\r\n" % (len(event), event))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def _serve(body: bytes, conn: Connection) -> None:
    """Child process: answer every request on a loopback port with `body`, until told to stop."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    conn.send(server.getsockname()[1])
    while not conn.poll():
        try:
            client, _ = server.accept()
        except TimeoutError:
            continue
        with client:
            client.settimeout(30)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = client.recv(65536)
                if not chunk:
                    break
                request += chunk
            head, _, rest = request.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(rest) < length:
                chunk = client.recv(65536)
                if not chunk:
                    break
                rest += chunk
            try:
                client.sendall(body)
                client.shutdown(socket.SHUT_WR)
                while client.recv(65536):  # until the reader closes its side
                    pass
            except OSError:
                pass
    server.close()


# --------------------------------------------------------------------------- the paths

Path = Callable[[aiohttp.ClientSession, str], Awaitable[int]]


async def path_aiohttp(session: aiohttp.ClientSession, base: str) -> int:
    body = {"model": MODEL, "input": {"messages": []}, "parameters": {}}
    frames = 0
    async with session.post(
        f"{base}/services/aigc/text-generation/generation",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}", "X-DashScope-SSE": "enable"},
    ) as response:
        async for line in response.content:
            if line.startswith(b"data:"):
                json.loads(line[5:])
                frames += 1
    return frames


async def path_sdk(session: aiohttp.ClientSession, base: str) -> int:
    from dashscope.client.base_api import BaseAioApi

    frames = 0
    stream: Any = await BaseAioApi.call(
        model=MODEL,
        input={"messages": [{"role": "user", "content": "AI in education"}]},
        task_group="aigc",
        task="text-generation",
        function="generation",
        api_key=API_KEY,
        stream=True,
        incremental_output=True,
        base_address=base,
        session=session,
        request_timeout=600,
    )
    async for _ in stream:
        frames += 1
    return frames


async def path_bot(session: aiohttp.ClientSession, base: str) -> int:
    """What ResearchService._run does with each event of its model stream."""
    from bot.metering import UsageMeter
    from bot.progress import ProgressTracker
    from bot.qwen.client import QwenClient, research_call
    from bot.qwen.events import Usage
    from bot.records import UsageRecord
    from bot.research import _CallResult

    client = QwenClient(api_key=API_KEY, base_url=base, session=session)
    meter = UsageMeter()
    draft = UsageRecord("T1", "U1", "C1", "1.0", MODEL, "research", 0, 0)
    metered = await meter.open(draft, lambda u: None)
    assert metered is not None
    tracker = ProgressTracker()
    result = _CallResult()
    last_frame: dict[str, float] = {}
    call = research_call(MODEL, [{"role": "user", "content": "AI in education"}])
    async for event in client.stream(call):
        last_frame["key"] = time.monotonic()
        tracker.apply(event)
        result.apply(event)
        if isinstance(event, Usage):
            metered.see(event)
    metered.close()
    assert result.finished and result.text, "the bot did not read the stream to its end"
    return 0


PATHS: dict[str, Path] = {"aiohttp": path_aiohttp, "sdk": path_sdk, "bot": path_bot}


async def measure(path: Path, base: str, frames: int) -> float:
    """CPU microseconds of this thread per frame for one read of the stream."""
    async with aiohttp.ClientSession() as session:
        started = time.thread_time()
        seen = await path(session, base)
        spent = time.thread_time() - started
    if seen and seen != frames:
        raise RuntimeError(f"read {seen} frames, expected {frames}")
    return spent / frames * 1e6


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} [{min(values):.1f}-{max(values):.1f}]"


async def run(args: argparse.Namespace) -> int:
    frames = recorded_stream(args.frames)
    body = http_body(frames)
    kinds: dict[str, int] = {}
    for f in frames:
        message = f.data.get("output", {}).get("message", {})
        kinds[message.get("phase", "?")] = kinds.get(message.get("phase", "?"), 0) + 1
    print(
        f"frames: one recorded deep-research stream of {len(frames):,} frames "
        f"({len(body) / 1e6:.1f} MB on the wire; by phase: "
        + ", ".join(f"{k} {v:,}" for k, v in kinds.items())
        + f"); {args.rounds} interleaved rounds; CPU time of the reading thread"
    )
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(body, child), daemon=True)
    server.start()
    try:
        port = parent.recv()
        base = f"http://127.0.0.1:{port}/api/v1"
        names = [n for n in PATHS if n in args.paths]
        for name in names:  # warm up: imports, first connections
            await measure(PATHS[name], base, len(frames))
        results: dict[str, list[float]] = {n: [] for n in names}
        ratios: list[float] = []
        for k in range(args.rounds):
            order = names[k % len(names) :] + names[: k % len(names)]
            this: dict[str, float] = {}
            for name in order:
                this[name] = await measure(PATHS[name], base, len(frames))
                results[name].append(this[name])
            if "sdk" in this and "bot" in this:
                ratios.append(this["bot"] / this["sdk"])
    finally:
        parent.send("stop")
        server.join(5)
        if server.is_alive():
            server.terminate()  # only this benchmark's own child
    print("\n| path | CPU µs per frame, median [min-max] |\n|---|---|")
    for name in names:
        print(f"| {name} | {fmt(results[name])} |")
    if ratios:
        ratio = statistics.median(ratios)
        print(f"\nbot / sdk per round: {fmt(ratios)}")
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(f"bot <= {TARGET_RATIO}x sdk: {verdict} (median ratio {ratio:.2f})")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.frames", description=__doc__)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    return parser.parse_args(argv)


if __name__ == "__main__":
    configure_logging()
    raise SystemExit(asyncio.run(run(parse_args())))
