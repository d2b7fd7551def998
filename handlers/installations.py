"""Multi-workspace mode: Bolt's OAuth flow ("Add to Slack"), each workspace's bot token for
work that runs outside a Slack request (research streaming, redeliveries), and uninstalls.

Requests from Slack are authorised by Bolt itself (`authorize` over slack_sdk's installation
store, rotating bot tokens that expire); an event from a workspace with no installation is
acknowledged and goes no further. Work started by a request but running past it (research,
follow-ups) asks `TeamTokens` for the workspace's current token at each Web API call, so a
rotated token is picked up and an uninstalled workspace's token is never used again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.config import Settings
from bot.logs import remember_secret
from bot.ports import Inbox, Workspaces
from bot.records import WorkspaceRecord
from bot.workspaces import Lifecycle
from handlers.scopes import BOT_SCOPES

logger = logging.getLogger(__name__)

INSTALL_PATH: Final = "/slack/install"
REDIRECT_PATH: Final = "/slack/oauth_redirect"
# Rotate a bot token this long before it expires (Slack's tokens with rotation live 12 h).
ROTATE_MINUTES: Final = 120
# A looked-up token is reused this long; an uninstall forgets it in this process at once.
TOKEN_CACHE_SECONDS: Final = 30.0


def authorize_url(api_url: str) -> str:
    """Slack's consent page on the same host as the Web API (slack.com, slack-gov.com, a
    test server)."""
    parts = urlsplit(api_url)
    return urlunsplit((parts.scheme, parts.netloc, "/oauth/v2/authorize", "", ""))


def oauth_settings(
    settings: Settings,
    installations: AsyncInstallationStore,
    states: AsyncOAuthStateStore,
    lifecycle: Lifecycle,
) -> AsyncOAuthSettings:
    async def installed(args: AsyncSuccessArgs) -> BoltResponse:
        installation = args.installation
        team_id = installation.team_id or installation.enterprise_id or ""
        name = installation.team_name or installation.enterprise_name or ""
        await lifecycle.installed(
            WorkspaceRecord(
                team_id,
                enterprise_id=installation.enterprise_id,
                enterprise_install=bool(installation.is_enterprise_install),
                name=name,
            )
        )
        logger.info(
            "installed in %s%s",
            team_id,
            " (org-wide)" if installation.is_enterprise_install else "",
        )
        return await args.default.success(args)

    return AsyncOAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret,
        scopes=list(BOT_SCOPES),
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        authorization_url=authorize_url(settings.slack_api_url),
        installation_store=installations,
        installation_store_bot_only=True,
        token_rotation_expiration_minutes=ROTATE_MINUTES,
        state_store=states,
        callback_options=AsyncCallbackOptions(success=installed, failure=_default_failure),
    )


async def _default_failure(args: Any) -> BoltResponse:
    logger.warning("an installation failed: %s", args.reason)
    return await args.default.failure(args)


def _workspace_of(body: Mapping[str, Any]) -> str | None:
    event = body.get("event")
    user = body.get("user")
    for value in (
        body.get("team_id"),
        event.get("team") if isinstance(event, Mapping) else None,
        user.get("team_id") if isinstance(user, Mapping) else None,
    ):
        if isinstance(value, str) and value:
            return value
    return None


class TeamTokens:
    """Each workspace's current bot token, for work running outside a Slack request."""

    def __init__(
        self,
        installations: AsyncInstallationStore,
        workspaces: Workspaces,
        rotator: AsyncTokenRotator,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._installations = installations
        self._workspaces = workspaces
        self._rotator = rotator
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def bot_token(self, team_id: str) -> str | None:
        cached = self._cache.get(team_id)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        async with self._locks.setdefault(team_id, asyncio.Lock()):
            token = await self._look_up(team_id)
        if token is None:
            self._cache.pop(team_id, None)
        else:
            self._cache[team_id] = (token, self._clock() + TOKEN_CACHE_SECONDS)
        return token

    def forget(self, team_id: str) -> None:
        self._cache.pop(team_id, None)

    async def _look_up(self, team_id: str) -> str | None:
        workspace = await self._workspaces.get(team_id)
        enterprise_id = workspace.enterprise_id if workspace is not None else None
        org_wide = workspace is not None and workspace.enterprise_install
        if workspace is not None and workspace.uninstalled_at is not None:
            return None
        bot = await self._installations.async_find_bot(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=org_wide
        )
        if bot is None:
            return None
        if bot.bot_refresh_token:
            rotated = await self._rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=ROTATE_MINUTES
            )
            if rotated is not None:
                await self._installations.async_save_bot(rotated)
                bot = rotated
        remember_secret(bot.bot_token)
        remember_secret(bot.bot_refresh_token)
        return bot.bot_token


class TeamClient(AsyncWebClient):
    """A Web API client for one workspace: each call carries the workspace's current token."""

    def __init__(self, team_id: str, tokens: TeamTokens, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._team_id = team_id
        self._tokens = tokens

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        self.token = await self._tokens.bot_token(self._team_id)
        return await super().api_call(api_method, **kwargs)


def team_clients(base: AsyncWebClient, tokens: TeamTokens) -> Callable[[str], AsyncWebClient]:
    def client_for(team_id: str) -> AsyncWebClient:
        return TeamClient(
            team_id,
            tokens,
            base_url=base.base_url,
            timeout=base.timeout,
            retry_handlers=base.retry_handlers,
        )

    return client_for


def register(
    app: AsyncApp,
    lifecycle: Lifecycle,
    installations: AsyncInstallationStore,
    tokens: TeamTokens,
    inbox: Inbox,
) -> None:
    """Uninstalls, and the workspaces of an org-wide install as they are first seen.

    An uninstall event is in the inbox before it is acknowledged (handlers/events.py) and
    done only once handled, so a process dying in between leaves it to the next one."""

    @app.middleware
    async def remember_workspace(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        context = req.context
        # An org-wide install's events name no team in their authorization: the workspace is
        # the event's own team, as the listeners key conversations.
        team = context.team_id or _workspace_of(req.body)
        if team and context.authorize_result is not None:
            await lifecycle.seen(team, context.enterprise_id, bool(context.is_enterprise_install))
        await next()
        return None

    async def uninstall(context: AsyncBoltContext, body: Mapping[str, Any]) -> None:
        enterprise_id = context.enterprise_id
        org_wide = bool(context.is_enterprise_install)
        team_id = None if org_wide else context.team_id
        teams = await lifecycle.teams(team_id, enterprise_id)
        # The tokens first: from here on nothing can act for the workspace.
        await installations.async_delete_all(enterprise_id=enterprise_id, team_id=team_id)
        for team in teams:
            tokens.forget(team)
        await lifecycle.uninstalled(teams)

    async def done(body: Mapping[str, Any]) -> None:
        event_id = body.get("event_id")
        if event_id:
            await inbox.done(_workspace_of(body) or "", str(event_id))

    @app.event("app_uninstalled")
    async def on_uninstalled(context: AsyncBoltContext, body: dict[str, Any]) -> None:
        await uninstall(context, body)
        await done(body)

    @app.event("tokens_revoked")
    async def on_tokens_revoked(
        event: dict[str, Any], context: AsyncBoltContext, body: dict[str, Any]
    ) -> None:
        # The bot asks for no user tokens: a revoked bot token is the end of the install.
        if (event.get("tokens") or {}).get("bot"):
            await uninstall(context, body)
        await done(body)
