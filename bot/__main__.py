"""`python -m bot`: Socket Mode when SLACK_APP_TOKEN is set, else HTTP; `--http` forces HTTP.

`python -m bot check`: check the settings and reach Slack, Model Studio and the database once
each, one line per check; exit status 1 if any failed.
`python -m bot workspaces [--json]`: the installations, their usage and whether each has its
own Model Studio key."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from typing import Any

from bot.config import ConfigError, Settings, StartupError, load_database_url, load_settings
from bot.front import FrontThread, new_event_loop
from bot.logs import configure_logging

# The rest of the bot (bot.runtime: Bolt, SQLAlchemy, the domain; about a second of imports)
# is imported only once the port is open: see bot/front.py, Doorway.

logger = logging.getLogger("bot")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["check", "workspaces"],
        help="check: validate the settings and reach each service once, then exit\n"
        "workspaces: list the installations with their usage this month and all time, "
        "and whether each has its own Model Studio key (reads DATABASE_URL only)",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="serve Slack's HTTP requests on HOST:PORT at /slack/events, even if "
        "SLACK_APP_TOKEN is set",
    )
    parser.add_argument("--json", action="store_true", help="with workspaces: JSON for scripts")
    return parser.parse_args(argv)


async def run(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT (0), or until Slack refuses a token (2). A signal ends the
    process even while it is still starting (Slack unreachable, say): the start is cut short
    and undone."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    logger.info("event loop: %s", type(loop).__module__.split(".")[0])
    front = FrontThread()
    try:
        await front.open(settings.host, settings.listen_port)
        if front.door is not None:
            logger.info(
                "port %s open: health checks answered while the bot starts", front.door.port
            )
        # On a thread: the loop stays free for the signals meanwhile.
        await asyncio.to_thread(importlib.import_module, "bot.runtime")
    except BaseException:
        await front.stop()
        raise
    from bot.runtime import BotRuntime  # imported by now

    runtime = BotRuntime(settings, front=front)
    starting = asyncio.create_task(runtime.start(), name="start")
    if not await _first(starting, stopping):
        logger.info("stopping before the start finished")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        logger.info("stopped")
        return 0
    await starting  # raises StartupError
    logger.info("bot started: %r", settings)
    try:
        failed = asyncio.create_task(runtime.failed.wait())
        try:
            await _first(failed, stopping)
        finally:
            failed.cancel()
        logger.info("stopping: finishing up running threads")
    finally:
        await runtime.stop()
    logger.info("stopped")
    if runtime.failure is not None:
        print(f"The bot stopped.\n{runtime.failure}", file=sys.stderr)
        return 2
    return 0


async def _first(work: asyncio.Task[Any], stopping: asyncio.Event) -> bool:
    """Wait for `work` or `stopping`; True if `work` finished first (or both did)."""
    waiter = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return work.done()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "workspaces":
        return workspaces(as_json=args.json)
    if args.command == "check":
        from bot.runtime import check

        return asyncio.run(check(force_http=args.http))
    try:
        settings = load_settings(force_http=args.http)
    except ConfigError as exc:
        print(f"Cannot start the bot.\n{exc}", file=sys.stderr)
        print(
            "\nCreate the Slack app in one step from manifest.yml (see README.md), then set "
            "the values above.",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.secrets, settings.log_level, settings.log_format)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(run(settings))
    except StartupError as exc:
        logger.debug("start failed", exc_info=True)
        print(f"Cannot start the bot.\n{exc}", file=sys.stderr)
        return 2


def workspaces(*, as_json: bool) -> int:
    try:
        url = load_database_url()
        from bot.runtime import workspaces_report

        print(asyncio.run(workspaces_report(url, as_json=as_json)))
    except (ConfigError, StartupError) as exc:
        print(f"Cannot read the workspaces.\n{exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
