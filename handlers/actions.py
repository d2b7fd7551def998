"""Button clicks: Stop and Retry on research runs."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.services import Services
from handlers.render import RETRY_ACTION, STOP_ACTION, key_from_value


def register(app: AsyncApp, services: Services) -> None:
    research = services.research

    @app.action(STOP_ACTION)
    async def on_stop(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        key = key_from_value(body.get("team", {}).get("id", ""), action.get("value", ""))
        if key is not None:
            await research.stop(key)

    @app.action(RETRY_ACTION)
    async def on_retry(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        key = key_from_value(body.get("team", {}).get("id", ""), action.get("value", ""))
        if key is not None:
            await research.retry(key)
