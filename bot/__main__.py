"""`python -m bot`: Socket Mode when SLACK_APP_TOKEN is set, else HTTP; `--http` forces HTTP."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bot.config import ConfigError, Settings, load_settings
from bot.logs import configure_logging
from bot.runtime import BotRuntime, StartupError

logger = logging.getLogger("bot")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument(
        "--http",
        action="store_true",
        help="serve Slack's HTTP requests on HOST:PORT at /slack/events, even if "
        "SLACK_APP_TOKEN is set",
    )
    return parser.parse_args(argv)


async def run(settings: Settings) -> None:
    runtime = BotRuntime(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await runtime.start()
    logger.info("bot started: %r", settings)
    try:
        await stopping.wait()
        logger.info("stopping: finishing up running threads")
    finally:
        await runtime.stop()
    logger.info("stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    configure_logging(settings.secrets)
    try:
        asyncio.run(run(settings))
    except StartupError as exc:
        logger.debug("start failed", exc_info=True)
        print(f"Cannot start the bot.\n{exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
