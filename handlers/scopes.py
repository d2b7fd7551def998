"""The bot's OAuth scopes, one list for the install link and the preflight check."""

from __future__ import annotations

from typing import Final

# The bot scopes of manifest.yml (tests keep the two the same): what an install asks for, and
# what `python -m bot check` expects a token to have.
BOT_SCOPES: Final = (
    "app_mentions:read",
    "assistant:write",
    "canvases:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "commands",
    "files:read",
    "files:write",
    "users:read",
)
