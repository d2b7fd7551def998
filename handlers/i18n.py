"""The person's language: English, Simplified Chinese or Japanese, from their Slack locale
(`users.info` with `include_locale`, cached), English when Slack does not say. Sentences come
from gettext catalogs in handlers/locales/ (Babel extracts and compiles them; see README)."""

from __future__ import annotations

import asyncio
import gettext
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import ConversationKey
from bot.i18n import Day, Money, Month, Ordinal, Span, Text, Value, shown, value_shown
from bot.ports import Conversations

logger = logging.getLogger(__name__)

LOCALES: Final = Path(__file__).parent / "locales"
DOMAIN: Final = "bot"
ENGLISH: Final = "en"
LANGUAGES: Final = ("en", "zh", "ja")
LOCALE_CACHE_SECONDS: Final = 3600.0
LOCALE_CACHE_SIZE: Final = 10_000
LOOKUP_SECONDS: Final = 2.0

Translations = gettext.NullTranslations
ENGLISH_TEXT: Final = gettext.NullTranslations()  # the sentences as written


@cache
def translations(language: str) -> Translations:
    """The catalog of `language`, compiled from its .po file once per process; English (the
    sentences as written) for any other."""
    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == ENGLISH or not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def preload() -> None:
    """Compile every language's catalog and load Babel's locale data for each kind of figure
    now (blocking: call it in a thread). Loaded on first use, they cost the first report in
    a language 40 ms of the event loop, which stalled every stream (bench/ack_latency.py)."""
    moment = datetime(2026, 1, 31, tzinfo=UTC)
    samples: tuple[Value, ...] = (
        1234,
        Money(Decimal("0.1234")),
        Day(moment),
        Month(moment),
        Span(75.0),
        Span(600.0, words=True),
        Ordinal(2),
    )
    for language in LANGUAGES:
        t = translations(language)
        for value in samples:
            figure(t, value)


def language_in(t: Translations) -> str:
    """The language of a catalog from translations() ("en" for the sentences as written)."""
    return language_of(t.info().get("language"))


def show(t: Translations, text: Text) -> str:
    """A domain sentence (a marked one, or a Sentence with its figures) as `t`'s language
    writes it."""
    return shown(text, t, language_in(t))


def figure(t: Translations, value: Value) -> str:
    """A number, an amount, a date or a length of time as `t`'s language writes it."""
    return value_shown(value, t, language_in(t))


def language_of(locale: str | None) -> str:
    """`ja-JP` -> ja, `zh-CN` -> zh (Simplified Chinese, also for other Chinese locales),
    anything else -> en."""
    prefix = (locale or "").replace("_", "-").split("-")[0].lower()
    return prefix if prefix in LANGUAGES else ENGLISH


class UserLanguages:
    """Each person's language, from their Slack locale, kept for an hour; a thread's is the
    language of the person who started its conversation."""

    def __init__(
        self, client_for: Callable[[str], AsyncWebClient], conversations: Conversations
    ) -> None:
        """`client_for(team_id)`: the client holding that workspace's bot token."""
        self._client_for = client_for
        self._conversations = conversations
        self._known: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        # Who started each recent thread, noted as its first message comes in (before the
        # conversation is stored, which is where other processes find it).
        self._starters: OrderedDict[ConversationKey, str] = OrderedDict()

    def note_starter(self, key: ConversationKey, user_id: str) -> None:
        if key not in self._starters and user_id:
            self._starters[key] = user_id
            while len(self._starters) > LOCALE_CACHE_SIZE:
                self._starters.popitem(last=False)

    async def of_thread(self, key: ConversationKey, default_user: str = "") -> str:
        try:
            conversation = await self._conversations.get(key)
        except Exception:
            logger.warning("no conversation for the language of %s", key, exc_info=True)
            conversation = None
        # The stored starter first: a note is only a guess made before the conversation
        # existed (the first message's author).
        user = conversation.user_id if conversation is not None else self._starters.get(key)
        return await self.language(user or default_user, key.team_id)

    async def language(self, user_id: str, team_id: str) -> str:
        """`team_id`: the person's workspace (its token looks them up; with one workspace,
        any)."""
        if not user_id:
            return ENGLISH
        now = time.monotonic()
        known = self._known.get((team_id, user_id))
        if known is not None and now - known[0] < LOCALE_CACHE_SECONDS:
            return known[1]
        language = await self._look_up(user_id, team_id)
        self._known[(team_id, user_id)] = (now, language)
        self._known.move_to_end((team_id, user_id))
        while len(self._known) > LOCALE_CACHE_SIZE:
            self._known.popitem(last=False)
        return language

    async def _look_up(self, user_id: str, team_id: str) -> str:
        try:
            async with asyncio.timeout(LOOKUP_SECONDS):
                client = self._client_for(team_id)
                response = await client.users_info(user=user_id, include_locale=True)
        except SlackApiError as exc:
            logger.info("no locale for %s: %s", user_id, exc.response.get("error"))
            return ENGLISH
        except Exception:
            logger.warning("no locale for %s", user_id, exc_info=True)
            return ENGLISH
        user = response.get("user") or {}
        return language_of(user.get("locale") if isinstance(user, dict) else None)
