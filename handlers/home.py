"""The App Home tab: how to use the bot, the workspace's research settings and its usage."""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.budget import month_start
from bot.i18n import N_
from bot.services import Services
from bot.usage_report import WorkspaceUsage
from bot.workspace_settings import WorkspaceSettings
from handlers.admins import is_workspace_admin
from handlers.feedback import feedback_blocks
from handlers.help import help_blocks
from handlers.i18n import ENGLISH_TEXT, Translations, translations
from handlers.model_key_render import key_home_block
from handlers.settings_render import home_blocks
from handlers.usage_render import usage_blocks

logger = logging.getLogger(__name__)

PARTS_UNAVAILABLE: Final = N_(
    "The research settings and usage figures can't be shown here right now. "
    "`/research usage` shows the usage."
)
NO_USAGE: Final = N_("Usage figures are not available right now.")


def register(app: AsyncApp, services: Services) -> None:
    @app.event("app_home_opened")
    async def on_home_opened(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        if event.get("tab") != "home":
            return
        team = context.team_id or body.get("team_id") or ""
        await publish_home(client, services, team, event["user"])


async def publish_home(client: AsyncWebClient, services: Services, team: str, user: str) -> None:
    """Build and publish the user's Home tab, in their language; each part that fails says
    so and the rest shows."""
    t = translations(await services.languages.language(user, team))
    usage: WorkspaceUsage | None = None
    try:
        usage = await services.usage.workspace(team)
    except Exception:  # the how-to is still worth showing
        logger.exception("usage figures for the Home tab of %s failed", team)
    settings: WorkspaceSettings | None = None
    try:
        settings = await services.settings.current(team)
    except Exception:
        logger.exception("research settings for the Home tab of %s failed", team)
    admin = await is_workspace_admin(client, user) is True
    settings_part = home_blocks(
        settings, default_model=services.settings.default_model, can_change=admin, t=t
    )
    if admin:  # how people rate the bot is for those who run it
        try:
            shares = await services.feedback.shares(
                team, since=month_start(time.time()).timestamp()
            )
            settings_part = [*settings_part, {"type": "divider"}, *feedback_blocks(shares, t)]
        except Exception:
            logger.exception("feedback figures for the Home tab of %s failed", team)
    try:
        settings_part.append(key_home_block(await services.model_keys.status(team), t))
    except Exception:
        logger.exception("the model key status for the Home tab of %s failed", team)
    try:
        await client.views_publish(user_id=user, view=home_view(usage, settings_part, t=t))
    except SlackApiError as exc:
        if exc.response.get("error") not in ("invalid_arguments", "invalid_blocks"):
            raise
        # Slack refused the page: the how-to and a sentence still show, not a blank tab.
        logger.exception("Slack refused the Home tab of %s in %s", user, team)
        await client.views_publish(user_id=user, view=home_view(unavailable=True, t=t))


def home_view(
    usage: WorkspaceUsage | None = None,
    settings: list[dict[str, Any]] | None = None,
    *,
    unavailable: bool = False,
    t: Translations = ENGLISH_TEXT,
) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = help_blocks(t)
    if unavailable:
        blocks.append({"type": "divider"})
        text = t.gettext(PARTS_UNAVAILABLE)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        return {"type": "home", "blocks": blocks}
    if settings:
        blocks.append({"type": "divider"})
        blocks += settings
    blocks.append({"type": "divider"})
    if usage is not None:
        blocks += usage_blocks(usage, t)
    else:
        text = t.gettext(NO_USAGE)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return {"type": "home", "blocks": blocks}
