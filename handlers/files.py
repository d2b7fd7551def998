"""Downloads the files attached to a Slack message, only from Slack's own file URLs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from bot.i18n import N_, Sentence, Text, say
from bot.images import MAX_IMAGE_BYTES, MAX_IMAGES, TOO_LARGE, TOO_MANY, Attachment, left_out

logger = logging.getLogger(__name__)

# A message can carry many files; reading a few past the limit is enough to name the rest.
MAX_FILES_READ: Final = MAX_IMAGES + 3
_SLACK_FILE_HOSTS: Final = (".slack.com", ".slack-edge.com", ".slack-gov.com")
A_FILE: Final = N_("a file")  # a file without a name
NOT_IN_SLACK: Final = N_("I could not read *{name}*: it is not stored in Slack.")
NOT_DOWNLOADED: Final = N_("I could not download *{name}* from Slack. Please attach it again.")


class SlackFiles:
    def __init__(self, session: aiohttp.ClientSession, token: str, api_url: str) -> None:
        self._session = session
        self._token = token
        api = urlsplit(api_url)
        # The Web API's own origin serves files too (GovSlack, test servers).
        self._api_origin = (api.scheme, api.netloc)

    def is_slack_url(self, url: str) -> bool:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) == self._api_origin:
            return True
        host = parts.hostname or ""
        return parts.scheme == "https" and host.endswith(_SLACK_FILE_HOSTS)

    async def attachments(
        self, files: Sequence[Mapping[str, Any]], *, token: str | None = None
    ) -> tuple[list[Attachment], list[Text]]:
        """Downloaded attachments and a sentence for each file that could not be read."""
        attachments: list[Attachment] = []
        refusals: list[Text] = []
        for position, file in enumerate(files):
            given = str(file.get("name") or file.get("title") or "")
            name: str | Sentence = given or say(A_FILE)
            if position >= MAX_FILES_READ:
                refusals.append(left_out(TOO_MANY, name))
                continue
            size = file.get("size")
            if isinstance(size, int) and size > MAX_IMAGE_BYTES:
                refusals.append(left_out(TOO_LARGE, name))
                continue
            url = str(file.get("url_private_download") or file.get("url_private") or "")
            if not self.is_slack_url(url):
                refusals.append(say(NOT_IN_SLACK, name=name))
                continue
            data = await self._download(url, token or self._token)
            if data is None:
                refusals.append(say(NOT_DOWNLOADED, name=name))
            else:
                attachments.append(Attachment(given or "file", data))
        return attachments, refusals

    async def _download(self, url: str, token: str) -> bytes | None:
        try:
            async with self._session.get(
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=60),
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    logger.warning("file download answered %s", response.status)
                    return None
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(256 * 1024):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_IMAGE_BYTES:
                        break  # enough to know it is too large
                return b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError):
            logger.warning("file download failed", exc_info=True)
            return None
