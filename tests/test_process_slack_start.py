"""The real `python -m bot` against the fake Slack when Slack refuses a token or cannot be
reached (issue 10, items 7 and 8): a refused token ends the process with exit code 2 and a
sentence naming the setting to fix; an unreachable Slack is retried with backoff (no
tracebacks), the bot starts anyway and says so, and SIGTERM or SIGINT ends the process within
10 seconds, also while it is still trying to connect."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.dashscope_server import FakeDashScope
from tests.fakes.slack_server import FakeSlack
from tests.test_durability import bot_env
from tests.test_e2e_faults import REPO

STOP_WITHIN = 10.0


class BotProcess:
    """A `python -m bot` whose stderr (its log) is read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_line(self, pattern: str, *, count: int = 1, timeout: float = 20) -> None:
        def seen() -> bool:
            return sum(1 for line in self.lines if re.search(pattern, line)) >= count

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(seen)
        except TimeoutError:
            raise AssertionError(f"{pattern!r} not logged within {timeout}s:\n{self.log}") from None

    async def exit_code(self, timeout: float) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"still running after {timeout}s:\n{self.log}") from None
        await asyncio.wait_for(self._reader, 5)
        return code

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return await self.exit_code(STOP_WITHIN)


@contextlib.asynccontextmanager
async def bot_process(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path, *args: str, **env: str
) -> AsyncIterator[BotProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=REPO,
        env={**bot_env(slack, dashscope, tmp_path / "bot.sqlite3"), **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    bot = BotProcess(process)
    try:
        yield bot
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        bot._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bot._reader


def closed_port_url() -> str:
    """A Slack API URL nothing listens on: every connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/"


def assert_no_traceback(bot: BotProcess) -> None:
    assert "Traceback" not in bot.log, bot.log


# --- item 8: the bot token is checked at start ------------------------------------------------


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_a_wrong_bot_token_stops_the_start_with_a_sentence(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path, mode: str
) -> None:
    args = ("--http",) if mode == "http" else ()
    extra = {"SLACK_SIGNING_SECRET": "s", "PORT": "0", "HOST": "127.0.0.1"}
    async with bot_process(
        slack, dashscope, tmp_path, *args, SLACK_BOT_TOKEN="xoxb-wrong", **extra
    ) as bot:
        assert await bot.exit_code(15) == 2
    assert "Cannot start the bot." in bot.log
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in bot.log
    assert "OAuth & Permissions" in bot.log
    assert "bot started" not in bot.log and "listening for Slack" not in bot.log
    assert "xoxb-wrong" not in bot.log
    assert_no_traceback(bot)
    assert len(slack.calls_to("auth.test")) == 1  # refused for good: not retried
    assert slack.calls_to("apps.connections.open") == []


async def test_slack_briefly_unreachable_at_start_is_retried(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    # One auth.test (with the client's own two retries) meets a Slack that is down.
    slack.fail_next("auth.test", status=503, error="service_unavailable", times=3)
    async with bot_process(slack, dashscope, tmp_path) as bot:
        await bot.wait_for_line(r"Slack did not answer auth\.test \(service_unavailable\); trying")
        await slack.wait_socket_connected(timeout=20)
        await bot.wait_for_line("bot started")
        assert "Slack accepted SLACK_BOT_TOKEN: bot user UBOT in workspace T1" in bot.log
        assert await bot.stop() == 0
    assert [c.error for c in slack.calls_to("auth.test")][-1] is None
    assert_no_traceback(bot)


# --- item 7: Socket Mode ------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["invalid_auth", "not_allowed_token_type", "token_revoked"])
async def test_a_refused_app_token_ends_the_process_naming_the_setting(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path, error: str
) -> None:
    env = {}
    if error == "invalid_auth":
        env["SLACK_APP_TOKEN"] = "xapp-wrong"  # the fake answers invalid_auth itself
    else:
        slack.fail_next("apps.connections.open", status=200, error=error, times=100)
    async with bot_process(slack, dashscope, tmp_path, **env) as bot:
        assert await bot.exit_code(15) == 2
    assert "Cannot start the bot." in bot.log
    assert f"Slack refused SLACK_APP_TOKEN ({error})" in bot.log
    assert "App-Level Tokens" in bot.log and "connections:write" in bot.log
    assert "bot started" not in bot.log
    assert_no_traceback(bot)
    assert len(slack.calls_to("apps.connections.open")) == 1  # no retry storm


async def test_an_app_token_revoked_while_running_ends_the_process(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with bot_process(slack, dashscope, tmp_path) as bot:
        await slack.wait_socket_connected(timeout=20)
        await bot.wait_for_line("bot started")
        slack.fail_next("apps.connections.open", status=200, error="token_revoked", times=100)
        await slack.socket_disconnect()  # Slack rotates the connection; the reconnect is refused
        assert await bot.exit_code(15) == 2
    assert "The bot stopped." in bot.log
    assert "Slack refused SLACK_APP_TOKEN (token_revoked)" in bot.log
    assert_no_traceback(bot)
    assert len(slack.calls_to("apps.connections.open")) == 2


async def test_slack_unreachable_is_retried_with_backoff_and_sigterm_ends_it(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with bot_process(slack, dashscope, tmp_path, SLACK_API_URL=closed_port_url()) as bot:
        # The bot token cannot be checked: retried, then the bot starts anyway and says so.
        await bot.wait_for_line(r"Slack did not answer auth\.test \(ClientConnector")
        await bot.wait_for_line(r"Slack did not answer auth\.test within 10 s.*starting anyway")
        # Socket Mode cannot connect: retried with growing waits, one line each.
        await bot.wait_for_line(r"Socket Mode: could not connect to Slack", count=3, timeout=30)
        waits = [
            int(m.group(1))
            for line in bot.lines
            if (m := re.search(r"could not connect to Slack .*trying again in (\d+) s", line))
        ]
        assert waits[:3] == sorted(waits[:3]) and waits[2] >= 3, waits
        assert await bot.stop(signal.SIGTERM) == 0
    assert "bot started" not in bot.log
    assert_no_traceback(bot)


async def test_ctrl_c_ends_the_process_while_it_waits_for_slack(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with bot_process(slack, dashscope, tmp_path, SLACK_API_URL=closed_port_url()) as bot:
        await bot.wait_for_line(r"Slack did not answer auth\.test")
        assert await bot.stop(signal.SIGINT) == 0
    assert "stopping before the start finished" in bot.log
    assert_no_traceback(bot)


async def test_sigterm_ends_a_connected_bot(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    async with bot_process(slack, dashscope, tmp_path) as bot:
        await slack.wait_socket_connected(timeout=20)
        await bot.wait_for_line("bot started")
        assert await bot.stop(signal.SIGTERM) == 0
    assert "stopping: finishing up running threads" in bot.log
    assert_no_traceback(bot)
