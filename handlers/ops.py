"""What an operator's tools talk to: health, readiness and metrics over HTTP, the Slack side
of `python -m bot check`, and the counting of Slack Web API calls.

- `GET /healthz`: 200 while the process serves requests (a liveness probe).
- `GET /readyz`: 200 when the database answers and Slack accepted the bot token; 503 with a
  JSON body naming what is not ready, and 503 while the process drains before it stops (a
  load balancer's readiness check).
- `GET /metrics`: the Prometheus text format (bot/metrics.py says what is counted).

HTTP mode serves them beside /slack/events; Socket Mode on METRICS_PORT, when set.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.front import HEALTH_PATH, READY_PATH, health_answer, readiness_answer
from bot.logs import log_context
from bot.preflight import CheckResult
from handlers.scopes import BOT_SCOPES

logger = logging.getLogger(__name__)

METRICS_PATH: Final = "/metrics"

NotReady = Callable[[], Awaitable[Mapping[str, str]]]
"""What is not ready, each with a few words why; empty when ready."""


def add_ops_routes(web_app: web.Application, not_ready: NotReady) -> None:
    async def health(_: web.Request) -> web.Response:
        return health_answer()

    async def ready(_: web.Request) -> web.Response:
        return readiness_answer(await not_ready())

    async def exposition(_: web.Request) -> web.Response:
        # Rendering is quick (a few hundred series) and needs no lock of the event loop's.
        body = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    web_app.router.add_get(HEALTH_PATH, health)
    web_app.router.add_get(READY_PATH, ready)
    web_app.router.add_get(METRICS_PATH, exposition)


def ops_app(not_ready: NotReady) -> web.Application:
    """The endpoints alone, for METRICS_PORT in Socket Mode."""
    web_app = web.Application()
    add_ops_routes(web_app, not_ready)
    return web_app


# --------------------------------------------------------------------------- Slack requests


def new_request_id() -> str:
    return uuid.uuid4().hex[:12]


def observed(
    transport: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`handler` with a request id on its log lines (and on those of the listeners it
    starts) and its acknowledgement's latency measured."""

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        with log_context(request_id=new_request_id()):
            response = await handler(request)
        metrics.acked(transport, time.monotonic() - started)
        return response

    return handle


# --------------------------------------------------------------------------- Slack calls

_METHOD: Final = re.compile(r"/api/([A-Za-z][A-Za-z0-9.]*)$")


class CountSlackCalls(AsyncRetryHandler):
    """Counts every Web API attempt (retries included), its error and 429s. slack_sdk asks
    each retry handler about every response, so one that never retries sees them all; Bolt
    copies the handlers into its per-request clients, so their calls are counted too."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=0)

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        found = _METHOD.search(request.url.split("?", 1)[0])
        method = found.group(1) if found else "other"
        status = response.status_code if response is not None else None
        problem: str | None = None
        if error is not None:
            problem = type(error).__name__
        elif response is not None:
            body = response.body if isinstance(response.body, dict) else {}
            if body.get("ok") is False or status == 429:
                problem = str(body.get("error") or f"http_{status}")
        metrics.slack_call(method, status=status, error=problem)
        return False


# --------------------------------------------------------------------------- preflight

CHECK_SECONDS: Final = 15.0


async def check_slack(client: AsyncWebClient) -> CheckResult:
    """auth.test once: the bot user, its workspace and the scopes Slack granted."""
    name = "Slack bot token"
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            response = await client.auth_test()
    except SlackApiError as exc:
        from handlers.app import REFUSED_TOKEN  # here: handlers.app imports this module

        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if error not in REFUSED_TOKEN:
            return CheckResult(
                name, False, f"Slack answered auth.test with an error ({error or 'no answer'})"
            )
        return CheckResult(
            name,
            False,
            f"Slack refused SLACK_BOT_TOKEN ({error}): copy the Bot User OAuth Token (xoxb-...) "
            "from your app's OAuth & Permissions page",
        )
    except Exception as exc:
        return CheckResult(name, False, f"Slack did not answer auth.test ({_reason(exc)})")
    data = response.data if isinstance(response.data, dict) else {}
    who = f"bot user {data.get('user_id')} in workspace {data.get('team_id')} ({data.get('team')})"
    header = _header(response.headers, "x-oauth-scopes")
    if header is None:
        return CheckResult(name, True, f"{who}; Slack did not list the granted scopes")
    granted = {s.strip() for s in header.split(",") if s.strip()}
    # A token missing a scope the manifest asks for fails some feature at run time.
    missing = sorted(frozenset(BOT_SCOPES) - granted)
    if missing:
        return CheckResult(
            name,
            False,
            f"{who}, but the token lacks scopes manifest.yml asks for: {', '.join(missing)}. "
            "Add them under OAuth & Permissions > Bot Token Scopes (or update the app from "
            "manifest.yml) and reinstall the app",
        )
    return CheckResult(name, True, f"{who}, every scope manifest.yml asks for")


async def check_app_token(client: AsyncWebClient, app_token: str) -> CheckResult:
    """apps.connections.open once (the URL it hands out expires unused)."""
    name = "Slack app token"
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        return CheckResult(
            name,
            False,
            f"Slack refused SLACK_APP_TOKEN ({error or exc.response.status_code}): generate an "
            "app-level token with connections:write under Basic Information > App-Level Tokens",
        )
    except Exception as exc:
        return CheckResult(name, False, f"Slack did not answer ({_reason(exc)})")
    return CheckResult(name, True, "Socket Mode connections allowed")


def _header(headers: Mapping[str, object], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) and value else value)
    return None


def _reason(exc: BaseException) -> str:
    return "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
