"""The app factory: one Bolt app for Socket Mode and HTTP alike."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.services import Services
from handlers import register_all

logger = logging.getLogger(__name__)


def slack_client(settings: Settings) -> AsyncWebClient:
    """The Web API client; Bolt's per-request clients inherit its retry handlers."""
    return AsyncWebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),  # honours Retry-After
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def build_app(settings: Settings, services: Services, client: AsyncWebClient) -> AsyncApp:
    app = AsyncApp(
        client=client,
        signing_secret=settings.slack_signing_secret or "",
        # In Socket Mode nothing is signed; HTTP mode always verifies.
        request_verification_enabled=settings.http_mode,
        process_before_response=False,
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
