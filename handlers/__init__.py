"""Slack glue. Each module exposes register(app, services)."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services import Services
from handlers import (
    actions,
    answer_actions,
    assistant,
    commands,
    events,
    feedback,
    home,
    settings,
    shortcuts,
)


def register_all(app: AsyncApp, services: Services) -> None:
    events.register(app, services)
    assistant.register(app, services)
    actions.register(app, services)
    answer_actions.register(app, services)
    feedback.register(app, services)
    commands.register(app, services)
    home.register(app, services)
    settings.register(app, services)
    shortcuts.register(app, services)
