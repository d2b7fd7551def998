"""Starting and stopping the whole bot: storage, model client, Slack transport."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import make_url

from bot import context, metrics, operator_view, tracing
from bot.answers import AnswerConfig, AnswerService
from bot.background import spawn
from bot.budget import BudgetGuard
from bot.config import ConfigError, Settings, StartupError, load_settings
from bot.conversation import State
from bot.front import FrontThread, Loop
from bot.metering import UsageMeter
from bot.operator_view import workspace_lines
from bot.pacing import SharedPacer, WorkspacePacer
from bot.preflight import Check, CheckResult, check_model_key, run_checks, schema_line
from bot.qwen.client import QwenClient, RetryPolicy
from bot.qwen.keys import check_key
from bot.research import ResearchConfig, ResearchService
from bot.secrets_box import SecretBox
from bot.services import Services
from bot.supervisor import LeaseConfig, Supervisor
from bot.usage_report import UsageReporter
from bot.workspace_settings import WorkspaceSettingsService
from bot.workspaces import Lifecycle, ModelKeys
from handlers.answer_sinks import thread_answer_sinks
from handlers.app import (
    AUTH_ATTEMPT_SECONDS,
    SlackRefused,
    SocketModeTransport,
    build_app,
    check_bot_token,
    http_app,
    slack_client,
)
from handlers.events import EventIntake, abandoner, recorded_handler, replayer
from handlers.files import SlackFiles
from handlers.i18n import UserLanguages
from handlers.i18n import preload as preload_languages
from handlers.installations import INSTALL_PATH, TeamTokens, oauth_settings, team_clients
from handlers.installations import register as register_installations
from handlers.ops import add_ops_routes, check_app_token, check_slack, ops_app
from handlers.slack_sink import slack_sinks
from storage import Storage
from storage.database import Database, StorageError
from storage.installations import installation_store, oauth_state_store

logger = logging.getLogger(__name__)

EVENTS_PATH: Final = "/slack/events"
SHUTDOWN_GRACE_SECONDS: Final = 20.0
MODEL_CONNECTIONS: Final = 1000
READY_DATABASE_SECONDS: Final = 2.0
SLACK_RECHECK_SECONDS: Final = 30.0


PURGE_EVERY_SECONDS: Final = 3600.0


async def _purge_hourly(lifecycle: Lifecycle) -> None:
    while True:
        try:
            await lifecycle.purge_due()
        except Exception:
            logger.exception("deleting the content of uninstalled workspaces failed")
        await asyncio.sleep(PURGE_EVERY_SECONDS)


async def workspaces_report(database_url: str, *, as_json: bool) -> str:
    """`python -m bot workspaces`: the installations and their usage, as text or JSON."""
    try:
        storage = await Storage.open(database_url)
    except StorageError as exc:
        raise StartupError(f"{exc}\nCheck DATABASE_URL (see README.md, Storage).") from exc
    try:
        lines = await workspace_lines(
            storage.workspaces,
            await storage.workspaces.billed(),
            storage.workspace_keys,
            storage.ledger,
        )
    finally:
        await storage.close()
    return operator_view.as_json(lines) if as_json else operator_view.as_table(lines)


GIL_SWITCH_SECONDS: Final = 0.001
GC_THRESHOLDS: Final = (700, 10, 1000)


def _load_ahead() -> None:
    context.preload()
    preload_languages()


class BotRuntime:
    """Everything the running bot holds, opened in start() and closed in stop().

    The composition root: the only module that imports the domain, the Slack glue and the
    storage implementations together."""

    def __init__(
        self,
        settings: Settings,
        *,
        model_retry: RetryPolicy | None = None,
        front: FrontThread | None = None,
    ) -> None:
        self.settings = settings
        self._model_retry = model_retry
        self._stack = AsyncExitStack()
        self._socket: SocketModeTransport | None = None
        # Slack's requests are read and acknowledged on a thread and loop of their own
        # (bot/front.py); research streams are read on the main loop. `python -m bot` hands
        # over its front with the port already open; the runtime stops it with the rest.
        self._front = front or FrontThread()
        self.services: Services | None = None
        self._supervisor: Supervisor | None = None
        self.http_port: int | None = None
        self._purging: asyncio.Task[None] | None = None
        # Multi-workspace mode: installs and uninstalls, and slack_sdk's installation store.
        self.lifecycle: Lifecycle | None = None
        self.installations: AsyncInstallationStore | None = None
        self.ops_port: int | None = None  # METRICS_PORT's listener in Socket Mode, once up
        self._database: Database | None = None
        self._slack_ok = False  # auth.test succeeded (at start, or retried after)
        self._draining = False
        self._background: set[asyncio.Task[None]] = set()
        self._tracing = False  # this runtime started the process's tracing
        # Set when Slack refuses a token after the start (Socket Mode reconnecting with a
        # revoked app token): the process must stop; `failure` says which setting to fix.
        self.failed = asyncio.Event()
        self.failure: str | None = None
        self._preload: asyncio.Task[None] | None = None

    async def start(self) -> None:
        settings = self.settings
        if settings.otel_endpoint and not tracing.enabled():
            # Before any HTTP session exists: only sessions made afterwards are traced.
            tracing.setup(settings.otel_endpoint)
            self._tracing = True
        try:
            await self._open_door()
            client = slack_client(settings)
            try:
                # Multi-workspace mode has no token of its own: each installation brings one.
                identity = None if settings.multi_workspace else await check_bot_token(client)
            except SlackRefused as exc:
                raise StartupError(str(exc)) from None
            if identity is not None:
                self._slack_ok = True
                logger.info(
                    "Slack accepted SLACK_BOT_TOKEN: bot user %s in workspace %s",
                    identity.get("user_id"),
                    identity.get("team_id"),
                )
            else:
                spawn(self._background, self._confirm_slack(client), "auth.test after start")
            try:
                storage = await Storage.open(settings.database_url)
            except StorageError as exc:
                raise StartupError(f"{exc}\nCheck DATABASE_URL (see README.md, Storage).") from exc
            self._stack.push_async_callback(storage.close)
            self._database = storage.database
            # aiohttp's default pool of 100 connections would hold the 101st research stream
            # (each lasts minutes) until another ends.
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MODEL_CONNECTIONS, limit_per_host=0)
            )
            self._stack.push_async_callback(session.close)
            model = metrics.MeteredModel(
                QwenClient(
                    api_key=settings.dashscope_api_key,
                    base_url=settings.dashscope_base_url,
                    session=session,
                    retry=self._model_retry,
                )
            )
            box = SecretBox(settings.secret_key) if settings.secret_key else None
            keys = ModelKeys(
                storage.workspace_keys,
                box,
                fallback=settings.dashscope_api_key,
                required=settings.require_workspace_key,
                check=lambda key: check_key(session, settings.dashscope_base_url, key),
            )
            budget = BudgetGuard(
                storage.ledger, settings.workspace_monthly_token_budget, gate=keys.refusal
            )
            oauth: AsyncOAuthSettings | None = None
            client_for: Callable[[str], AsyncWebClient] = lambda _team: client  # noqa: E731
            if settings.multi_workspace:
                installations = installation_store(storage.database, settings.slack_client_id or "")
                tokens = TeamTokens(
                    installations,
                    storage.workspaces,
                    AsyncTokenRotator(
                        client_id=settings.slack_client_id or "",
                        client_secret=settings.slack_client_secret or "",
                        client=client,
                    ),
                )
                client_for = team_clients(client, tokens)
            languages = UserLanguages(client_for, storage.conversations)
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
                thread_sinks=thread_answer_sinks(client_for, languages),
                start_round=lambda *args: research.research_again(*args),
                keyed=keys.keyed,
            )
            workspace_settings = WorkspaceSettingsService(
                storage.settings,
                default_model=settings.research_model,
                box=box,
            )
            research = ResearchService(
                conversations=storage.conversations,
                ledger=storage.ledger,
                kept=storage.kept,
                meter=meter,
                model=model,
                sinks=slack_sinks(client_for, languages),
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
                keyed=keys.keyed,
            )
            lifecycle = Lifecycle(
                storage.workspaces,
                storage.workspace_keys,
                storage.conversations,
                stop=research.stop,
                retention_days=settings.data_retention_days,
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
                model_keys=keys,
                feedback=storage.feedback,
                languages=languages,
            )
            self.lifecycle = lifecycle
            if settings.multi_workspace:
                self.installations = installations
                oauth = oauth_settings(
                    settings, installations, oauth_state_store(storage.database), lifecycle
                )
            app = build_app(settings, self.services, client, oauth=oauth)
            if settings.multi_workspace:
                register_installations(app, lifecycle, installations, tokens, storage.inbox)
                # Content of workspaces uninstalled DATA_RETENTION_DAYS ago, now and hourly.
                self._purging = asyncio.create_task(_purge_hourly(lifecycle), name="purge")
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
                replay=replayer(app, self.services),
                give_up=abandoner(research),
                adopt_run=research.adopt,
                deliver=research.deliver_owed,
                watch_runs=research.watch_runs,
            )
            # Takes over what a stopped or dead process left: events, runs, usage.
            await self._supervisor.start()
            await research.answer_kept()
            spawn(
                self._background,
                metrics.sample(lambda: storage.conversations.count_in_state(State.QUEUED)),
                "metrics sampling",
            )
            main = Loop(asyncio.get_running_loop())
            intake = EventIntake(
                storage.inbox, process_id, main, recorded_handler(app, self.services)
            )

            async def not_ready() -> dict[str, str]:
                return await main.run(self.not_ready())

            door = self._front.door
            if settings.http_mode:
                assert door is not None  # opened above
                web_app = http_app(
                    app, settings.slack_signing_secret or "", EVENTS_PATH, intake=intake, main=main
                )
                add_ops_routes(web_app, not_ready)
                await self._front.run(door.serve(web_app))
                logger.info(
                    "listening for Slack on http://%s:%s%s", settings.host, door.port, EVENTS_PATH
                )
                if settings.multi_workspace:
                    logger.info(
                        "many workspaces: they install the bot from http://%s:%s%s (behind "
                        "your HTTPS host)",
                        settings.host,
                        self.http_port,
                        INSTALL_PATH,
                    )
            else:
                if door is not None:
                    await self._front.run(door.serve(ops_app(not_ready)))
                    logger.info(
                        "health and metrics on http://%s:%s/healthz, /readyz, /metrics",
                        settings.host,
                        door.port,
                    )

                def refused(sentence: str) -> None:
                    main.loop.call_soon_threadsafe(self._slack_refused, sentence)

                async def connect() -> None:
                    # Retries with backoff while Slack is unreachable; a refused app token
                    # ends it.
                    self._socket = SocketModeTransport(
                        app,
                        settings.slack_app_token or "",
                        web_client=slack_client(settings),
                        intake=intake,
                        main=main,
                        on_refused=refused,
                    )
                    await self._socket.connect_async()

                # A refusal reported from the front was queued on this loop before the
                # answer of `connect()`: it has landed by now.
                await self._front.run(connect())
                if self.failure is not None:
                    raise StartupError(self.failure)
                logger.info("connected to Slack in Socket Mode")
            # What start built lives as long as the process: taken out of the garbage
            # collector's way, a full collection (a pause of the event loop) walks only what
            # came since, not every module, table and client again (issue 13).
            gc.freeze()
            # Full collections only after 1,000 young ones (Python's default is 10, and it
            # also waits for the old generation to grow by a quarter): at 400 streams each
            # full pass stopped the loop, and the acks with it, for 100-300 ms, several
            # times a minute (issue 13). What they collect is little (the runs' objects die
            # young, by reference counting); young collections are unchanged.
            gc.set_threshold(*GC_THRESHOLDS)
            # Loaded off the event loop once Slack can reach the bot, rather than before it is
            # ready or on the loop at first use: the tokenizer that fits follow-ups into a
            # context window (the dashscope package, 0.5 s of imports), the catalogs and
            # Babel's locale data (a first report in a language took 40 ms of the loop).
            self._preload = asyncio.create_task(asyncio.to_thread(_load_ahead))
            # The database's thread (aiosqlite) needs the GIL for each of the ~7 steps of a
            # write while the loop thread is busy reading streams; Python's default 5 ms
            # hand-over made the write an ack waits for last 50+ ms (bench/ack_latency.py).
            sys.setswitchinterval(GIL_SWITCH_SECONDS)
        except BaseException:
            # A failed start, or one cut short (SIGTERM while Slack is unreachable): undo
            # what it began, within seconds.
            await self._abandon_start()
            raise

    async def not_ready(self) -> dict[str, str]:
        """What keeps this process from taking Slack's traffic (for GET /readyz)."""
        reasons: dict[str, str] = {}
        if self._draining:
            reasons["draining"] = "stopping: running research is finishing or being handed over"
        if not self._slack_ok:
            reasons["slack"] = "auth.test with SLACK_BOT_TOKEN has not succeeded yet"
        if self._database is None:
            reasons["database"] = "not open yet"
        else:
            try:
                async with asyncio.timeout(READY_DATABASE_SECONDS):
                    await self._database.ping()
            except Exception as exc:
                logger.warning("readiness: the database did not answer (%s)", type(exc).__name__)
                reasons["database"] = "does not answer"
        return reasons

    async def _confirm_slack(self, client: AsyncWebClient) -> None:
        """Slack did not answer auth.test at start: keep asking, so readiness follows."""
        while not self._slack_ok:
            await asyncio.sleep(SLACK_RECHECK_SECONDS)
            try:
                identity = await check_bot_token(client, patience=AUTH_ATTEMPT_SECONDS)
            except SlackRefused as exc:
                self._slack_refused(str(exc))
                return
            self._slack_ok = identity is not None

    async def _open_door(self) -> None:
        """The front, and the HTTP listener on it, unless `python -m bot` opened them already:
        answering "starting" until start() is done (bot/front.py)."""
        settings = self.settings
        await self._front.open(settings.host, settings.listen_port)  # raises CannotListen
        door = self._front.door
        if door is not None:
            if settings.http_mode:
                self.http_port = door.port
            else:
                self.ops_port = door.port

    async def _stop_tracing(self) -> None:
        if self._tracing:
            self._tracing = False
            await asyncio.to_thread(tracing.shutdown)  # sends the last batch: blocking

    async def _stop_background(self) -> None:
        for task in self._background:
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=5)

    def _slack_refused(self, sentence: str) -> None:
        self.failure = sentence
        self.failed.set()

    async def _stop_purging(self) -> None:
        if self._purging is not None:
            self._purging.cancel()
            await asyncio.gather(self._purging, return_exceptions=True)
            self._purging = None

    async def _abandon_start(self) -> None:
        await self._stop_purging()
        await self._stop_background()
        with contextlib.suppress(Exception):
            if self.services is not None:
                await self.services.research.shutdown(drain=0, timeout=5)
        with contextlib.suppress(Exception):
            if self._supervisor is not None:
                await self._supervisor.stop()
        await self._stop_front()
        await self._stack.aclose()
        await self._stop_tracing()

    async def _stop_front(self) -> None:
        """Close the transports and the inbox's connections on the front's loop (where they
        were opened), then stop its thread."""
        if not self._front.started:
            return
        socket, self._socket = self._socket, None
        database = self._database
        closers: list[Callable[[], Coroutine[Any, Any, None]]] = []
        if socket is not None:
            closers.append(socket.close_async)
        if self._front.door is not None:
            closers.append(self._front.door.close)  # before the inbox's connections it uses
        if database is not None:
            closers.append(database.close_urgent)
        for close in closers:
            try:
                await self._front.run(close())
            except Exception:
                logger.warning("closing the Slack front failed", exc_info=True)
        await self._front.stop()

    async def stop(self) -> None:
        """Stop taking work, let running research go on for DRAIN_SECONDS, record where the
        rest stood, hand this process's work over, close everything."""
        await self._stop_purging()
        self._draining = True  # /readyz answers 503 from now on
        if self._preload is not None:
            await asyncio.gather(self._preload, return_exceptions=True)
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
            await self._stop_background()
            await self._stop_front()
            await self._stack.aclose()
            await self._stop_tracing()


async def _installs_bring_tokens() -> CheckResult:
    return CheckResult(
        "Slack",
        True,
        "many workspaces (SLACK_CLIENT_ID): each installation brings its own bot token; "
        f"workspaces install from {INSTALL_PATH}",
    )


async def check(*, force_http: bool = False, out: TextIO | None = None) -> int:
    """`python -m bot check`: the settings, then Slack, Model Studio and the database, each
    reached once, one line each; 1 if any failed (the later checks still run), else 0."""
    out = out or sys.stdout
    try:
        settings = load_settings(force_http=force_http)
    except ConfigError as exc:
        print(CheckResult("settings", False, str(exc)).line(), file=out)
        return 1
    mode = "HTTP" if settings.http_mode else "Socket Mode"
    print(CheckResult("settings", True, f"complete ({mode})").line(), file=out)
    # Only the checks' own lines: a library's warning would read like a verdict.
    logging.getLogger().setLevel(logging.CRITICAL)
    client = slack_client(settings)
    async with aiohttp.ClientSession() as session:
        model = QwenClient(
            api_key=settings.dashscope_api_key,
            base_url=settings.dashscope_base_url,
            session=session,
            retry=RetryPolicy(attempts=1),
        )
        checks: list[tuple[str, Check]] = []
        if settings.multi_workspace:
            # No token of its own: each workspace's is checked by Slack when it installs.
            checks.append(("Slack", _installs_bring_tokens))
        else:
            checks.append(("Slack bot token", lambda: check_slack(client)))
        if settings.slack_app_token and not settings.http_mode:
            token = settings.slack_app_token
            checks.append(("Slack app token", lambda: check_app_token(client, token)))
        if settings.dashscope_api_key or not settings.multi_workspace:
            checks.append(
                ("DashScope API key", lambda: check_model_key(model, settings.thinking_model))
            )
        checks.append(("database", lambda: _check_database(settings.database_url)))
        passed = await run_checks(checks, out)
    return 0 if passed else 1


async def _check_database(url: str) -> CheckResult:
    name = "database"
    parsed = make_url(url)
    where = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if not await asyncio.to_thread(path.exists):
            return CheckResult(name, True, f"{path} does not exist yet; the first start makes it")
    database = await Database.open(url, migrate=False)  # connects only when asked to
    try:
        status = await database.schema()
    except Exception as exc:
        reason = getattr(exc, "orig", None) or exc
        return CheckResult(name, False, f"cannot open {where}: {reason}; check DATABASE_URL")
    finally:
        await database.close(grace=0)
    ok, detail = schema_line(status.current, status.head, status.pending, unknown=status.unknown)
    return CheckResult(name, ok, f"{where} {detail}")
