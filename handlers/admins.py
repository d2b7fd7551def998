"""Who may change a workspace's settings: its admins and owners, as `users.info` says."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

logger = logging.getLogger(__name__)

# Short enough to leave room for views.open (a trigger lasts 3 s) or a view_submission's ack.
ADMIN_CHECK_SECONDS: Final = 2.0


async def is_workspace_admin(
    client: AsyncWebClient, user_id: str, *, timeout: float = ADMIN_CHECK_SECONDS
) -> bool | None:
    """True for a workspace admin or owner, False for anyone else, None if Slack did not say."""
    if not user_id:
        return False
    try:
        async with asyncio.timeout(timeout):
            response = await client.users_info(user=user_id)
    except TimeoutError:
        logger.warning("users.info for %s took longer than %.1fs", user_id, timeout)
        return None
    except SlackApiError as exc:
        logger.warning("users.info for %s failed: %s", user_id, exc.response.get("error"))
        return None
    except Exception:
        logger.exception("users.info for %s failed", user_id)
        return None
    user = response.get("user") or {}
    if not isinstance(user, dict) or user.get("deleted"):
        return False
    return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
