"""Many workspaces: each one's own Model Studio key, and what an uninstall does.

A workspace's model calls use its own key (entered by an admin in the settings form, stored
encrypted, checked with Model Studio before it is saved); without one, DASHSCOPE_API_KEY if
the operator set it, unless REQUIRE_WORKSPACE_KEY asks every workspace to bring its own.

An uninstall removes what would let anyone act for the workspace at once (its model key and
MCP token here; its Slack tokens in the installation store) and stops its research; its
content follows after DATA_RETENTION_DAYS, and its usage stays only as anonymous totals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from enum import StrEnum
from typing import Final

from bot.conversation import ConversationKey, State
from bot.i18n import N_
from bot.logs import remember_secret
from bot.ports import Conversations, WorkspaceKeys, Workspaces
from bot.qwen.client import ModelCall
from bot.qwen.keys import KeyCheck
from bot.records import WorkspaceRecord
from bot.secrets_box import SecretBox, SecretError

logger = logging.getLogger(__name__)

DAY: Final = 86_400.0
NO_KEY: Final = N_(
    "This workspace has no Model Studio API key yet, so I can't call the model. A workspace "
    "admin can add one with `/research settings` (or *Change settings* on my Home tab), under "
    "*Model Studio API key*."
)
KEY_REFUSED: Final = N_(
    "Model Studio did not accept that API key. Copy it whole from the API keys page of Model "
    "Studio's Beijing region (https://bailian.console.aliyun.com/?apiKey=1) and save again."
)
KEY_UNCHECKED: Final = N_(
    "I could not reach Model Studio to check that API key, so it was not saved. Please try "
    "again in a minute."
)
KEY_NOT_STORABLE: Final = N_(
    "API keys cannot be saved here yet: the bot's operator has to set SECRET_KEY first."
)
KEY_SHAPE: Final = N_("That does not look like a Model Studio API key (they start with sk-).")


class KeyStatus(StrEnum):
    OWN = "own"  # the workspace's own key
    SHARED = "shared"  # the bot's DASHSCOPE_API_KEY
    NONE = "none"  # no key it may use: new work is refused


KeyChecker = Callable[[str], Awaitable[KeyCheck]]
# A workspace's model call with the key it uses: (team_id, call) -> the call to make.
KeyedCall = Callable[[str, ModelCall], Awaitable[ModelCall]]


async def same_call(team_id: str, call: ModelCall) -> ModelCall:
    """One key for every workspace: the client's own."""
    return call


class ModelKeys:
    """Which Model Studio key a workspace's calls use."""

    def __init__(
        self,
        keys: WorkspaceKeys,
        box: SecretBox | None,
        *,
        fallback: str,
        required: bool,
        check: KeyChecker,
    ) -> None:
        self._keys = keys
        self._box = box
        self._fallback = fallback
        self._required = required
        self._check = check

    @property
    def storable(self) -> bool:
        return self._box is not None

    async def own(self, team_id: str) -> str | None:
        """The workspace's own key; None when it has none, or it cannot be read (SECRET_KEY
        changed: an admin enters it again)."""
        sealed = await self._keys.get(team_id)
        if sealed is None or self._box is None:
            return None
        try:
            key = self._box.decrypt(sealed, context=_context(team_id))
        except SecretError:
            logger.warning("the model key of workspace %s cannot be decrypted", team_id)
            return None
        remember_secret(key)
        return key

    async def key(self, team_id: str) -> str | None:
        """The key the workspace's calls use; None when it may not call the model."""
        own = await self.own(team_id)
        if own is not None:
            return own
        if self._required:
            return None
        return self._fallback or None

    async def status(self, team_id: str) -> KeyStatus:
        if await self.own(team_id) is not None:
            return KeyStatus.OWN
        return KeyStatus.SHARED if await self.key(team_id) is not None else KeyStatus.NONE

    async def remove(self, team_id: str, user_id: str) -> None:
        """Forget the workspace's own key (its calls fall back to the shared key, if any)."""
        await self._keys.forget_key(team_id)
        logger.info("workspace %s removed its own model key (by %s)", team_id, user_id)

    async def refusal(self, team_id: str) -> str | None:
        """The sentence instead of new work, or None when the workspace has a key to use."""
        return None if await self.key(team_id) is not None else NO_KEY

    async def keyed(self, team_id: str, call: ModelCall) -> ModelCall:
        key = await self.key(team_id)
        return call if key is None else replace(call, api_key=key)

    async def save(self, team_id: str, user_id: str, key: str) -> str | None:
        """Check the key with Model Studio and keep it encrypted; the sentence why not, or
        None once saved."""
        key = key.strip()
        remember_secret(key)  # no log line shows it, valid or not
        if self._box is None:
            return KEY_NOT_STORABLE
        if not key.startswith("sk-") or any(c.isspace() for c in key) or len(key) > 200:
            return KEY_SHAPE
        result = await self._check(key)
        if result is KeyCheck.INVALID:
            return KEY_REFUSED
        if result is not KeyCheck.VALID:
            return KEY_UNCHECKED
        sealed = self._box.encrypt(key, context=_context(team_id))
        await self._keys.put(team_id, sealed, user_id)
        logger.info("workspace %s saved its own model key (by %s)", team_id, user_id)
        return None


def _context(team_id: str) -> str:
    # Bound to the workspace and to this use, apart from the MCP tokens' ciphertexts.
    return f"model-key/{team_id}"


class Lifecycle:
    """Installs and uninstalls of workspaces (multi-workspace mode)."""

    def __init__(
        self,
        workspaces: Workspaces,
        keys: WorkspaceKeys,
        conversations: Conversations,
        *,
        stop: Callable[[ConversationKey], Awaitable[bool]],
        retention_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._workspaces = workspaces
        self._keys = keys
        self._conversations = conversations
        self._stop = stop
        self._retention = retention_days * DAY
        self._clock = clock
        self._known: set[str] = set()  # workspaces this process recorded already

    async def installed(self, record: WorkspaceRecord) -> None:
        await self._workspaces.installed(replace(record, installed_at=self._clock()))
        self._known.add(record.team_id)

    async def seen(self, team_id: str, enterprise_id: str | None, enterprise_install: bool) -> None:
        """A workspace authorised by an installation: recorded once, so a workspace of an
        org-wide install (whose first request comes after the install) is known too."""
        if team_id in self._known:
            return
        if await self._workspaces.get(team_id) is None:
            await self._workspaces.installed(
                WorkspaceRecord(
                    team_id,
                    enterprise_id=enterprise_id,
                    enterprise_install=enterprise_install,
                    installed_at=self._clock(),
                )
            )
        self._known.add(team_id)

    async def teams(self, team_id: str | None, enterprise_id: str | None) -> list[str]:
        """The workspaces an uninstall covers: the one, or every workspace of an org install."""
        if team_id:
            return [team_id]
        if enterprise_id:
            return [w.team_id for w in await self._workspaces.of_enterprise(enterprise_id)]
        return []

    async def uninstalled(self, team_ids: Sequence[str]) -> None:
        """Secrets deleted and research stopped at once; content deleted after the retention
        period (at once when it is 0)."""
        now = self._clock()
        for team_id in team_ids:
            self._known.discard(team_id)
            await self._keys.forget_secrets(team_id)
            await self._workspaces.uninstalled(team_id, at=now, purge_at=now + self._retention)
            logger.info(
                "workspace %s uninstalled: secrets deleted, content kept %d days",
                team_id,
                self._retention // DAY,
            )
            await self._stop_research(team_id)
        if self._retention == 0:
            await self.purge_due()

    async def _stop_research(self, team_id: str) -> None:
        for state in (State.RESEARCHING, State.QUEUED):
            for conversation in await self._conversations.in_state(state):
                if conversation.key.team_id != team_id:
                    continue
                # The thread cannot be told any more (the tokens are gone): stopping is what
                # matters, and a failed notice must not keep the next run going.
                try:
                    await self._stop(conversation.key)
                except Exception:
                    logger.warning(
                        "stopping research of uninstalled workspace %s", team_id, exc_info=True
                    )

    async def purge_due(self, now: float | None = None) -> int:
        """Delete the content of workspaces whose retention period ended (by `now`); how
        many."""
        due = await self._workspaces.due(self._clock() if now is None else now)
        for team_id in due:
            await self._workspaces.purge(team_id)
            logger.info("workspace %s: content deleted after its uninstall", team_id)
        return len(due)
