"""The App Home tab: how to use the bot, and the workspace's usage."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.services import Services
from bot.usage_report import WorkspaceUsage
from handlers.help import help_blocks
from handlers.usage_render import usage_blocks

logger = logging.getLogger(__name__)


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
        usage: WorkspaceUsage | None = None
        try:
            usage = await services.usage.workspace(team)
        except Exception:  # the how-to is still worth showing
            logger.exception("usage figures for the Home tab of %s failed", team)
        await client.views_publish(user_id=event["user"], view=home_view(usage))


def home_view(usage: WorkspaceUsage | None = None) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = help_blocks()
    blocks.append({"type": "divider"})
    if usage is not None:
        blocks += usage_blocks(usage)
    else:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "Usage figures are not available right now."},
            }
        )
    return {"type": "home", "blocks": blocks}
