"""The app factory: one Bolt app for Socket Mode and HTTP alike, and the Slack transports.

Requests are checked before any work: over HTTP the signature is verified before the body is
parsed, and a request whose shape no listener can use (Slack never sends one) is refused with
a 4xx and one log line, without a traceback. The bot token is checked with `auth.test` at
start; Socket Mode tells a token Slack refuses (the process must stop and say which setting to
fix) from Slack being unreachable (retried with backoff)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import (
    run_async_bolt_app,
    send_async_response,
)
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.config import Settings
from bot.front import Loop
from bot.logs import bind
from bot.services import Services
from handlers import register_all
from handlers.events import HUMAN_SUBTYPES, EventIntake
from handlers.ops import CountSlackCalls, new_request_id, observed

logger = logging.getLogger(__name__)

NOT_INSTALLED: Final = (
    "This workspace has not installed the bot (or has removed it). A workspace admin can add it "
    "again from the bot's install link."
)

# Slack's answers that no retry will change: the token is wrong, revoked, of the wrong kind
# or lacks its scope. Everything else (network, 5xx, rate limits) is worth retrying.
REFUSED_TOKEN: Final = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "not_allowed_token_type",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "invalid_token",
    }
)
# How long start-up waits for Slack to answer auth.test before starting anyway.
AUTH_CHECK_SECONDS: Final = 10.0
AUTH_ATTEMPT_SECONDS: Final = 5.0
# Socket Mode reconnects: 1 s, 2 s, 4 s … up to 30 s between attempts, with jitter.
SOCKET_FIRST_RETRY: Final = 1.0
SOCKET_MAX_RETRY: Final = 30.0
SOCKET_CONNECT_SECONDS: Final = 15.0
SOCKET_PING_SECONDS: Final = 10.0


def slack_client(settings: Settings) -> AsyncWebClient:
    """The Web API client; Bolt's per-request clients inherit its retry handlers."""
    return AsyncWebClient(
        token=settings.slack_bot_token or None,
        base_url=settings.slack_api_url,
        retry_handlers=[
            CountSlackCalls(),  # first: it sees every attempt and never retries
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),  # honours Retry-After
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def build_app(
    settings: Settings,
    services: Services,
    client: AsyncWebClient,
    *,
    oauth: AsyncOAuthSettings | None = None,
) -> AsyncApp:
    """`oauth`: multi-workspace mode, Bolt's OAuth flow and `authorize` over its installation
    store; without it, the one workspace of `client`'s token."""
    app = AsyncApp(
        client=client,
        signing_secret=settings.slack_signing_secret or "",
        # In Socket Mode nothing is signed; HTTP mode always verifies.
        request_verification_enabled=settings.http_mode,
        process_before_response=False,
        # Before Bolt's own authorization (an auth.test) and before any listener.
        before_authorize=RefuseMalformed(),
        oauth_settings=oauth,
        # An event from a workspace without an installation is acknowledged and dropped.
        user_facing_authorize_error_message=NOT_INSTALLED,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        logger.error(
            "unhandled error in a Slack listener (type %s)",
            body.get("type") or body.get("command"),
            exc_info=error,
        )

    register_all(app, services)
    return app


# --------------------------------------------------------------------------- malformed input


def malformed(body: Any) -> str | None:
    """Why no listener could use this request (a few words for the log), or None if it is
    shaped like what Slack sends. Never includes the request's text."""
    if not isinstance(body, Mapping):
        return "the body is not an object"
    kind = body.get("type")
    for name in ("team", "user", "channel", "container", "message", "view", "enterprise"):
        if body.get(name) is not None and not isinstance(body[name], dict | str):
            return f"{name} is neither an object nor a string"
    if kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            return "block_actions without a list of actions"
        if not all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions):
            return "block_actions with an action that is not an object with an action_id"
        for name in ("team", "user", "container"):
            if body.get(name) is not None and not isinstance(body[name], dict):
                return f"block_actions whose {name} is not an object"
        if not isinstance(body.get("user"), dict):
            return "block_actions without a user"
    elif kind is None and "command" in body:  # a slash command
        for name in ("command", "text", "user_id", "team_id", "channel_id"):
            if body.get(name) is not None and not isinstance(body[name], str):
                return f"slash command whose {name} is not a string"
    elif kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event_callback without an event object"
        for name in ("event_id", "team_id"):
            if body.get(name) is not None and not isinstance(body[name], str):
                return f"event_callback whose {name} is not a string"
        if event["type"] in ("message", "app_mention"):
            return _malformed_message(event)
    return None


def _malformed_message(event: Mapping[str, Any]) -> str | None:
    kind = event["type"]
    for name in ("user", "channel", "ts", "thread_ts", "channel_type", "subtype", "team"):
        value = event.get(name)
        if value is not None and not isinstance(value, str):
            return f"{kind} event whose {name} is not a string"
    if kind == "message" and (
        event.get("subtype") not in HUMAN_SUBTYPES or event.get("bot_id") or not event.get("user")
    ):
        return None  # not a person's words: dropped before any work, whatever its text
    # A person's message always has its text as a string ("" with only files); `null` or a
    # list is not something a listener can read.
    if "text" in event and not isinstance(event["text"], str):
        return f"{kind} event whose text is not a string"
    if event.get("files") is not None and not isinstance(event["files"], list):
        return f"{kind} event whose files are not a list"
    return None


class RefuseMalformed(AsyncMiddleware):
    """Refuses a request no listener could use, before Bolt's authorization and before any
    listener. A middleware class rather than a function: Bolt prepares every argument a
    function middleware might ask for (the first action, the event…), which is exactly what
    fails on such a request."""

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        reason = malformed(req.body)
        if reason is None:
            return await next()
        logger.warning("refused a malformed Slack request: %s", reason)
        # Over Socket Mode there is no status to give; the envelope is acknowledged so Slack
        # does not deliver it again, and nothing is done with it.
        return BoltResponse(status=400 if req.mode == "http" else 200, body="")


def http_app(
    app: AsyncApp, signing_secret: str, path: str, *, intake: EventIntake, main: Loop
) -> web.Application:
    """Slack's HTTP requests on `path`, served on the front's loop (bot/front.py): the
    signature is checked on the raw bytes before anything parses them; a body that cannot be
    read is refused with 400; an event that causes work is recorded and acknowledged there;
    everything else is answered by Bolt on `main`."""
    verifier = SignatureVerifier(signing_secret)

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        try:
            body = raw.decode("utf-8")
            signed = verifier.is_valid(body, timestamp, signature)
        except ValueError:  # not UTF-8, or a timestamp that is not a number
            signed = False
        if not signed:
            logger.warning(
                "refused a request to %s without a valid Slack signature (from %s)",
                path,
                request.remote,
            )
            return web.Response(status=401, text="invalid signature")
        try:
            bolt_request = AsyncBoltRequest(
                body=body,
                query=request.query_string,
                headers=request.headers,  # type: ignore[arg-type]
            )
        except Exception as exc:  # json, form or shape errors while Bolt reads the body
            logger.warning("refused a malformed Slack request: unreadable body (%s)", _kind(exc))
            return web.Response(status=400, text="malformed request")
        if not isinstance(bolt_request.body, dict):
            logger.warning("refused a malformed Slack request: the body is not an object")
            return web.Response(status=400, text="malformed request")
        # A malformed request goes on to Bolt, whose first middleware refuses it.
        if malformed(bolt_request.body) is None and await intake.take(
            bolt_request.body, retry=request.headers.get("X-Slack-Retry-Num")
        ):
            return web.Response(status=200)
        response = await main.run(app.async_dispatch(bolt_request))
        return await to_aiohttp_response(response)

    web_app = web.Application()
    web_app.router.add_post(path, observed("http", handle))
    flow = app.oauth_flow
    if flow is not None:
        # "Add to Slack" (the install page, which sets the state cookie) and Slack's redirect
        # back with the code: Bolt's OAuth flow answers both; the state is checked there.
        async def install(request: web.Request) -> web.StreamResponse:
            response = await main.run(flow.handle_installation(_oauth_request(request)))
            return await to_aiohttp_response(response)

        async def redirect(request: web.Request) -> web.StreamResponse:
            response = await main.run(flow.handle_callback(_oauth_request(request)))
            return await to_aiohttp_response(response)

        web_app.router.add_get(flow.install_path, install)
        web_app.router.add_get(flow.redirect_uri_path, redirect)
    return web_app


def _oauth_request(request: web.Request) -> AsyncBoltRequest:
    return AsyncBoltRequest(
        body="",
        query=request.query_string,
        headers=request.headers,  # type: ignore[arg-type]
    )


def _kind(exc: BaseException) -> str:
    return type(exc).__name__


# --------------------------------------------------------------------------- tokens


class SlackRefused(Exception):
    """Slack refused one of the bot's tokens; the message names the setting to fix."""


def bot_token_sentence(error: str) -> str:
    return (
        f"Slack refused SLACK_BOT_TOKEN ({error}): it is mistyped, revoked, or the app was "
        "uninstalled. Copy the Bot User OAuth Token (xoxb-...) from your app's OAuth & "
        "Permissions page (install the app again if it is not there) into SLACK_BOT_TOKEN."
    )


def app_token_sentence(error: str) -> str:
    where = (
        "Generate an app-level token under Basic Information > App-Level Tokens with the "
        "connections:write scope and put it in SLACK_APP_TOKEN (or unset SLACK_APP_TOKEN and "
        "use HTTP mode)."
    )
    if error == "not_allowed_token_type":
        return f"Slack refused SLACK_APP_TOKEN ({error}): it is not an app-level token. {where}"
    if error == "missing_scope":
        return f"Slack refused SLACK_APP_TOKEN ({error}): it lacks connections:write. {where}"
    return f"Slack refused SLACK_APP_TOKEN ({error}): it is mistyped or revoked. {where}"


def _failure(exc: Exception) -> tuple[str, bool]:
    """(a few words on what went wrong, whether Slack refused the token for good)."""
    if isinstance(exc, SlackApiError):
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if isinstance(error, str) and error:
            return error, error in REFUSED_TOKEN
        return f"HTTP {exc.response.status_code}", False
    if isinstance(exc, TimeoutError):
        return "no answer in time", False
    return _kind(exc), False


async def check_bot_token(
    client: AsyncWebClient,
    *,
    patience: float = AUTH_CHECK_SECONDS,
    first_retry: float = 1.0,
) -> dict[str, Any] | None:
    """`auth.test` with the bot token: its answer, SlackRefused when Slack refuses the token,
    or None when Slack did not answer within `patience` seconds (the bot starts anyway)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = first_retry
    reason = ""
    while True:
        try:
            async with asyncio.timeout(max(0.5, min(AUTH_ATTEMPT_SECONDS, deadline - loop.time()))):
                response = await client.auth_test()
            return dict(response.data) if isinstance(response.data, dict) else {}
        except Exception as exc:
            failure, refused = _failure(exc)
            if refused:
                raise SlackRefused(bot_token_sentence(failure)) from None
            # An attempt cut by the deadline says less than the failure before it.
            if not (isinstance(exc, TimeoutError) and reason):
                reason = failure
        if loop.time() + delay >= deadline:
            logger.warning(
                "Slack did not answer auth.test within %.0f s (%s): starting anyway, without "
                "having checked SLACK_BOT_TOKEN",
                patience,
                reason,
            )
            return None
        logger.warning("Slack did not answer auth.test (%s); trying again in %.0f s", reason, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 8.0)


# --------------------------------------------------------------------------- Socket Mode


class _OneLine(logging.Filter):
    """slack_sdk logs some connection failures with a traceback every few seconds; one line
    each (the exception's type and message) says as much."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({_kind(record.exc_info[1])})"
            record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


_SDK_LOGGER: Final = logging.getLogger("handlers.socket_mode")
_SDK_LOGGER.addFilter(_OneLine())
# Never DEBUG: at that level slack_sdk logs every envelope whole (message text, form values).
_SDK_LOGGER.setLevel(logging.INFO)


class _SocketModeClient(SocketModeClient):
    """slack_sdk's aiohttp Socket Mode client, with two changes to how it connects.

    - A token Slack refuses ends the connection for good (`on_refused` is told, with the
      sentence for the operator) instead of being retried every few seconds forever.
    - Other failures are retried with backoff (1 s doubling to 30 s, with jitter), each time
      with a new URL from apps.connections.open (the SDK would retry a used one), logged in
      one line each.

    Everything else (the session monitor, message receiving, acks) is the SDK's own."""

    def __init__(self, *, on_refused: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_refused = on_refused

    async def issue_new_wss_url(self) -> str:
        """One apps.connections.open; SlackRefused if Slack refuses the app token."""
        try:
            response = await self.web_client.apps_connections_open(app_token=self.app_token)
        except Exception as exc:
            reason, refused = _failure(exc)
            if not refused:
                raise
            self.closed = True  # ends the SDK's monitor and receive loops
            sentence = app_token_sentence(reason)
            self._on_refused(sentence)
            raise SlackRefused(sentence) from None
        url = response.get("url")
        if not isinstance(url, str) or not url:
            raise ConnectionError("apps.connections.open gave no URL")
        return url

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        # As the SDK does, minus its URL step: connect() asks for a new URL on each attempt.
        acquired = False
        with contextlib.suppress(TimeoutError):
            acquired = await asyncio.wait_for(self.connect_operation_lock.acquire(), timeout=5)
        try:
            if force or (acquired and not await self.is_connected()):
                await self.connect()
        finally:
            if acquired:
                self.connect_operation_lock.release()

    async def connect(self) -> None:
        delay = SOCKET_FIRST_RETRY
        while not self.closed:
            try:
                await self._connect_once()
                return
            except SlackRefused:
                return
            except Exception as exc:
                if self.closed:
                    return
                reason, _ = _failure(exc)
            wait = delay * random.uniform(0.8, 1.2)
            logger.warning(
                "Socket Mode: could not connect to Slack (%s); trying again in %.0f s",
                reason,
                wait,
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, SOCKET_MAX_RETRY)

    async def _connect_once(self) -> None:
        url = await self.issue_new_wss_url()
        if self.aiohttp_client_session.closed:
            self.aiohttp_client_session = aiohttp.ClientSession()
        async with asyncio.timeout(SOCKET_CONNECT_SECONDS):
            session = await self.aiohttp_client_session.ws_connect(
                url,
                autoping=False,
                heartbeat=self.ping_interval,
                proxy=self.proxy,
                ssl=self.web_client.ssl if self.web_client.ssl is not None else True,
            )
        await self._use(session)

    async def _use(self, session: aiohttp.ClientWebSocketResponse) -> None:
        """Swap in a new connection; what the SDK's connect() does once ws_connect worked."""
        old, self.current_session = self.current_session, session
        if old is not None and old is not session:
            with contextlib.suppress(Exception):
                await old.close()
        self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
        self.stale = False
        self.last_ping_pong_time = None
        await session.ping(f"sdk-ping-pong:{time.time()}".encode())
        logger.info("Socket Mode: connected to Slack")
        # Nothing below awaits: when a reconnect runs inside the old monitor or receiver
        # task, cancelling that task takes effect only once this returns.
        if self.current_session_monitor is not None:
            self.current_session_monitor.cancel()
        self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
        if self.message_receiver is not None:
            self.message_receiver.cancel()
        self.message_receiver = asyncio.ensure_future(self.receive_messages())


class SocketModeTransport(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler on the client above, run on the front's loop
    (bot/front.py): an event that causes work is recorded and acknowledged there;
    every other envelope is answered by Bolt on `main`. An envelope Bolt cannot even read is
    acknowledged (nothing is done with it) and logged in one line.

    Made on the front's loop: the client's aiohttp session belongs to the loop it is made on."""

    def __init__(
        self,
        app: AsyncApp,
        app_token: str,
        *,
        web_client: AsyncWebClient,
        intake: EventIntake,
        main: Loop,
        on_refused: Callable[[str], None],
    ) -> None:
        # Not calling super().__init__: it would build a second client with its own session.
        self.app = app
        self.app_token = app_token
        self._intake = intake
        self._main = main
        self.client = _SocketModeClient(
            on_refused=on_refused,
            app_token=app_token,
            logger=_SDK_LOGGER,
            web_client=web_client,
            ping_interval=SOCKET_PING_SECONDS,
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        started = time.time()
        bind(request_id=new_request_id())  # each envelope runs in a task of its own
        body = req.payload
        if (
            req.type == "events_api"
            and isinstance(body, dict)
            and malformed(body) is None  # else Bolt's first middleware refuses it
            and await self._intake.take(body, retry=req.retry_attempt)
        ):
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            metrics.acked("socket", time.time() - started)
            return
        try:
            response = await self._main.run(run_async_bolt_app(self.app, req))
        except Exception as exc:
            logger.warning(
                "refused a malformed Slack request: unreadable %s envelope (%s)",
                req.type,
                _kind(exc),
            )
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        await send_async_response(client, req, response, started)
        metrics.acked("socket", time.time() - started)
