"""Starting and stopping the whole bot: storage, model client, Slack transport."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from contextlib import AsyncExitStack
from typing import Final

import aiohttp
from aiohttp import web

from bot import context
from bot.answers import AnswerConfig, AnswerService
from bot.budget import BudgetGuard
from bot.config import Settings
from bot.metering import UsageMeter
from bot.pacing import SharedPacer, WorkspacePacer
from bot.qwen.client import QwenClient, RetryPolicy
from bot.research import ResearchConfig, ResearchService
from bot.secrets_box import SecretBox
from bot.services import Services
from bot.supervisor import LeaseConfig, Supervisor
from bot.usage_report import UsageReporter
from bot.workspace_settings import WorkspaceSettingsService
from handlers.answer_sinks import thread_answer_sinks
from handlers.app import (
    SlackRefused,
    SocketModeTransport,
    build_app,
    check_bot_token,
    http_app,
    slack_client,
)
from handlers.events import replayer
from handlers.files import SlackFiles
from handlers.i18n import UserLanguages
from handlers.slack_sink import slack_sinks
from storage import Storage
from storage.database import StorageError

logger = logging.getLogger(__name__)

EVENTS_PATH: Final = "/slack/events"
SHUTDOWN_GRACE_SECONDS: Final = 20.0
MODEL_CONNECTIONS: Final = 1000


class StartupError(Exception):
    """A service the bot needs cannot be reached at start; the message is for the operator."""


class BotRuntime:
    """Everything the running bot holds, opened in start() and closed in stop().

    The composition root: the only module that imports the domain, the Slack glue and the
    storage implementations together."""

    def __init__(self, settings: Settings, *, model_retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self._model_retry = model_retry
        self._stack = AsyncExitStack()
        self._runner: web.AppRunner | None = None
        self._socket: SocketModeTransport | None = None
        self.services: Services | None = None
        self._supervisor: Supervisor | None = None
        self.http_port: int | None = None
        # Set when Slack refuses a token after the start (Socket Mode reconnecting with a
        # revoked app token): the process must stop; `failure` says which setting to fix.
        self.failed = asyncio.Event()
        self.failure: str | None = None

    async def start(self) -> None:
        settings = self.settings
        try:
            client = slack_client(settings)
            try:
                identity = await check_bot_token(client)
            except SlackRefused as exc:
                raise StartupError(str(exc)) from None
            if identity is not None:
                logger.info(
                    "Slack accepted SLACK_BOT_TOKEN: bot user %s in workspace %s",
                    identity.get("user_id"),
                    identity.get("team_id"),
                )
            try:
                storage = await Storage.open(settings.database_url)
            except StorageError as exc:
                raise StartupError(f"{exc}\nCheck DATABASE_URL (see README.md, Storage).") from exc
            self._stack.push_async_callback(storage.close)
            # aiohttp's default pool of 100 connections would hold the 101st research stream
            # (each lasts minutes) until another ends.
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MODEL_CONNECTIONS, limit_per_host=0)
            )
            self._stack.push_async_callback(session.close)
            model = QwenClient(
                api_key=settings.dashscope_api_key,
                base_url=settings.dashscope_base_url,
                session=session,
                retry=self._model_retry,
            )
            languages = UserLanguages(client, storage.conversations)
            budget = BudgetGuard(storage.ledger, settings.workspace_monthly_token_budget)
            process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            meter = UsageMeter(inflight=storage.inflight, owner=process_id, budget=budget)
            answers = AnswerService(
                conversations=storage.conversations,
                answers=storage.answers,
                ledger=storage.ledger,
                meter=meter,
                model=model,
                pricing=settings.pricing,
                config=AnswerConfig(
                    model=settings.thinking_model, thinking_budget=settings.thinking_budget
                ),
                budget=budget,
                thread_sinks=thread_answer_sinks(client, languages),
                start_round=lambda *args: research.research_again(*args),
            )
            workspace_settings = WorkspaceSettingsService(
                storage.settings,
                default_model=settings.research_model,
                box=SecretBox(settings.secret_key) if settings.secret_key else None,
            )
            research = ResearchService(
                conversations=storage.conversations,
                ledger=storage.ledger,
                kept=storage.kept,
                meter=meter,
                model=model,
                sinks=slack_sinks(client, languages),
                pricing=settings.pricing,
                config=ResearchConfig(
                    model=settings.research_model,
                    progress_interval=settings.progress_update_seconds,
                    process_id=process_id,
                    auto_resume=settings.auto_resume,
                    run_max_seconds=settings.run_max_seconds,
                    stream_idle_seconds=settings.stream_idle_seconds,
                    user_max_running=settings.user_max_running,
                    workspace_max_running=settings.workspace_max_running,
                ),
                follow_up=answers.follow_up,
                # One process on SQLite paces in memory; a fleet shares the buckets.
                pacer=WorkspacePacer()
                if storage.database.dialect == "sqlite"
                else SharedPacer(storage.pacing),
                budget=budget.refusal,
                budget_held=budget.refusal_held,
                workspace_settings=workspace_settings.research,
            )
            self.services = Services(
                conversations=storage.conversations,
                claims=storage.claims,
                inbox=storage.inbox,
                process_id=process_id,
                ledger=storage.ledger,
                research=research,
                answers=answers,
                usage=UsageReporter(storage.ledger, budget),
                budget=budget,
                files=SlackFiles(session, settings.slack_bot_token, settings.slack_api_url),
                settings=workspace_settings,
                feedback=storage.feedback,
                languages=languages,
            )
            app = build_app(settings, self.services, client)
            self._supervisor = Supervisor(
                processes=storage.processes,
                inbox=storage.inbox,
                inflight=storage.inflight,
                conversations=storage.conversations,
                meter=meter,
                config=LeaseConfig(
                    process_id=process_id,
                    lease_seconds=settings.run_lease_seconds,
                    single_process=storage.database.dialect == "sqlite",
                ),
                replay=replayer(app),
                adopt_run=research.adopt,
                deliver=research.deliver_owed,
                watch_runs=research.watch_runs,
            )
            # The tokenizer that fits follow-ups into a context window: loaded now, off the
            # event loop, rather than during the first follow-up.
            await asyncio.to_thread(context.preload)
            # Takes over what a stopped or dead process left: events, runs, usage.
            await self._supervisor.start()
            await research.answer_kept()
            if settings.http_mode:
                await self._serve_http(
                    http_app(app, settings.slack_signing_secret or "", EVENTS_PATH)
                )
            else:
                # Retries with backoff while Slack is unreachable; a refused app token ends it.
                self._socket = SocketModeTransport(
                    app, settings.slack_app_token or "", on_refused=self._slack_refused
                )
                await self._socket.connect_async()
                if self.failure is not None:
                    raise StartupError(self.failure)
                logger.info("connected to Slack in Socket Mode")
        except BaseException:
            # A failed start, or one cut short (SIGTERM while Slack is unreachable): undo
            # what it began, within seconds.
            await self._abandon_start()
            raise

    def _slack_refused(self, sentence: str) -> None:
        self.failure = sentence
        self.failed.set()

    async def _abandon_start(self) -> None:
        with contextlib.suppress(Exception):
            if self.services is not None:
                await self.services.research.shutdown(drain=0, timeout=5)
        with contextlib.suppress(Exception):
            if self._supervisor is not None:
                await self._supervisor.stop()
        with contextlib.suppress(Exception):
            if self._socket is not None:
                await self._socket.close_async()
        with contextlib.suppress(Exception):
            if self._runner is not None:
                await self._runner.cleanup()
        await self._stack.aclose()

    async def _serve_http(self, web_app: web.Application) -> None:
        self._runner = web.AppRunner(web_app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.settings.port
        logger.info(
            "listening for Slack on http://%s:%s%s", self.settings.host, self.http_port, EVENTS_PATH
        )

    async def stop(self) -> None:
        """Stop taking work, let running research go on for DRAIN_SECONDS, record where the
        rest stood, hand this process's work over, close everything."""
        try:
            if self._supervisor is not None:
                self._supervisor.draining = True
            if self.services is not None:
                await self.services.research.shutdown(
                    drain=self.settings.drain_seconds, timeout=SHUTDOWN_GRACE_SECONDS
                )
            if self._supervisor is not None:
                await self._supervisor.stop()
        finally:
            if self._socket is not None:
                with contextlib.suppress(Exception):
                    await self._socket.close_async()
            if self._runner is not None:
                await self._runner.cleanup()
            await self._stack.aclose()
