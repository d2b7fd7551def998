"""Whether Model Studio takes an API key, with the cheapest call there is: listing one model
(GET /models, no tokens spent)."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Final

import aiohttp

logger = logging.getLogger(__name__)

# Short: the settings form waits for it, and Slack wants its answer within 3 seconds.
CHECK_SECONDS: Final = 2.0


class KeyCheck(StrEnum):
    VALID = "valid"
    INVALID = "invalid"  # Model Studio refused it (401 InvalidApiKey, 403 AccessDenied)
    UNREACHABLE = "unreachable"  # no answer, or an answer that says nothing about the key


async def check_key(session: aiohttp.ClientSession, base_url: str, api_key: str) -> KeyCheck:
    url = f"{base_url.rstrip('/')}/models"
    try:
        async with session.get(
            url,
            params={"page_no": "1", "page_size": "1"},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=aiohttp.ClientTimeout(total=CHECK_SECONDS),
        ) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("could not check a Model Studio key: %s", type(exc).__name__)
        return KeyCheck.UNREACHABLE
    if status == 200:
        return KeyCheck.VALID
    if status in (401, 403):
        return KeyCheck.INVALID
    logger.warning("checking a Model Studio key: HTTP %s", status)
    return KeyCheck.UNREACHABLE
