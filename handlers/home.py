"""The App Home tab."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.services import Services


def register(app: AsyncApp, services: Services) -> None:
    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") != "home":
            return
        await client.views_publish(user_id=event["user"], view=home_view())


def home_view() -> dict[str, Any]:
    how_to = (
        "*Qwen Deep Research*\n"
        "• Mention me in a channel with a topic: `@Qwen Deep Research the use of AI in "
        "education`.\n"
        "• I ask one clarifying question in the thread; answer it there and the research "
        "starts, with live progress.\n"
        "• The report arrives in the thread as a Markdown file with its sources.\n"
        "• In a direct message, just write the topic."
    )
    return {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": how_to}}],
    }
