"""Sentences for people, in their language. The domain writes English: a fixed sentence is
marked `N_("…")` (its English text is its key in the message catalogs of handlers/locales/),
and one with figures in it is a `Sentence`: the marked text and the values of its `{fields}`.
Where a sentence is shown, the Slack glue picks the reader's catalog; numbers, money, dates
and lengths of time are then written as that language writes them (Babel's locale data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, Protocol

from babel.dates import format_date, format_skeleton
from babel.numbers import format_currency, format_decimal

ENGLISH: Final = "en"


def N_(message: str) -> str:
    """A sentence for the catalogs, returned as it is (translated where it is shown)."""
    return message


class Catalog(Protocol):
    """What gettext's translations offer (handlers/i18n.py's catalogs)."""

    def gettext(self, message: str, /) -> str: ...

    def ngettext(self, singular: str, plural: str, n: int, /) -> str: ...


class _AsWritten:
    """The sentences as written: English."""

    def gettext(self, message: str, /) -> str:
        return message

    def ngettext(self, singular: str, plural: str, n: int, /) -> str:
        return singular if n == 1 else plural


AS_WRITTEN: Final = _AsWritten()


@dataclass(frozen=True, slots=True)
class Money:
    """An estimated cost in US dollars, to four decimal places."""

    usd: Decimal


@dataclass(frozen=True, slots=True)
class Day:
    """A calendar day (the date of `moment`)."""

    moment: datetime


@dataclass(frozen=True, slots=True)
class Month:
    """A calendar month and its year."""

    moment: datetime


@dataclass(frozen=True, slots=True)
class Span:
    """A length of time: short ("3m 05s") or, with `words`, in words ("45 minutes")."""

    seconds: float
    words: bool = False


@dataclass(frozen=True, slots=True)
class Ordinal:
    """A place in a line: "3rd" in English; the other languages' sentences carry the word."""

    n: int


@dataclass(frozen=True, slots=True)
class Sentence:
    """A marked sentence (`text`, or `plural` when `count` is not 1) with the values of its
    fields. Strings are filled in as they are; nested sentences are translated too."""

    text: str
    fields: tuple[tuple[str, Value], ...] = ()
    plural: str = ""
    count: int = 0

    def shown(self, catalog: Catalog = AS_WRITTEN, language: str = ENGLISH) -> str:
        if self.plural:
            pattern = catalog.ngettext(self.text, self.plural, self.count)
        else:
            pattern = catalog.gettext(self.text) if self.text else ""
        if not self.fields:
            return pattern
        values = {name: value_shown(v, catalog, language) for name, v in self.fields}
        return pattern.format(**values)

    def __str__(self) -> str:
        return self.shown()


Value = str | int | Money | Day | Month | Span | Ordinal | Sentence
"""What a field takes. Numbers are grouped as the reader's language groups them."""

Text = str | Sentence
"""What a sink shows a person: a marked sentence (its English text) or a Sentence."""


def say(text: str, /, **fields: Value) -> Sentence:
    """The marked sentence `text` with its fields filled in."""
    return Sentence(text, tuple(fields.items()))


def say_n(singular: str, plural: str, count: int, /, **fields: Value) -> Sentence:
    """The marked sentence in the form `count` asks for; `{count}` is filled in too."""
    return Sentence(singular, (("count", count), *fields.items()), plural, count)


def joined(*texts: Text, separator: str = "\n") -> Sentence:
    """Several sentences shown as one text, each translated."""
    fields = tuple((f"part{i}", say(t) if isinstance(t, str) else t) for i, t in enumerate(texts))
    return Sentence(separator.join("{" + name + "}" for name, _ in fields), fields)


def shown(text: Text, catalog: Catalog = AS_WRITTEN, language: str = ENGLISH) -> str:
    """`text` in the catalog's language."""
    if isinstance(text, Sentence):
        return text.shown(catalog, language)
    return catalog.gettext(text) if text else ""


def value_shown(value: Value, catalog: Catalog = AS_WRITTEN, language: str = ENGLISH) -> str:
    """One field's value as `language` writes it."""
    match value:
        case Sentence():
            return value.shown(catalog, language)
        case str():
            return value
        case bool():
            return str(value)
        case int():
            return format_decimal(value, locale=language)
        case Money(usd=usd):
            return format_currency(
                usd, "USD", format="¤#,##0.0000", locale=language, currency_digits=False
            )
        case Day(moment=moment):
            return format_date(
                moment, "d MMMM y" if language == ENGLISH else "long", locale=language
            )
        case Month(moment=moment):
            if language == ENGLISH:
                return format_date(moment, "MMMM y", locale=language)
            return format_skeleton("yMMMM", moment, locale=language)
        case Span(seconds=seconds, words=True):
            return _span_in_words(seconds, catalog)
        case Span(seconds=seconds):
            return _span(seconds, catalog)
        case Ordinal(n=n):
            return _ordinal(n) if language == ENGLISH else format_decimal(n, locale=language)
    raise TypeError(f"not a sentence field: {type(value).__name__}")


def _span(seconds: float, catalog: Catalog) -> str:
    """Elapsed time, short: 59s, 1m 05s, 1h 02m (each language its own units)."""
    whole = max(0, int(seconds))
    if whole < 60:
        return catalog.gettext(N_("{seconds}s")).format(seconds=whole)
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        pattern = catalog.gettext(N_("{minutes}m {seconds}s"))
        return pattern.format(minutes=minutes, seconds=f"{rest:02d}")
    hours, minutes = divmod(minutes, 60)
    return catalog.gettext(N_("{hours}h {minutes}m")).format(hours=hours, minutes=f"{minutes:02d}")


def _span_in_words(seconds: float, catalog: Catalog) -> str:
    """A limit, in words: "45 minutes" from two minutes up, else "90 seconds"."""
    if seconds >= 120:
        minutes = round(seconds / 60)
        return catalog.ngettext("{count} minute", "{count} minutes", minutes).format(count=minutes)
    whole = round(seconds)
    return catalog.ngettext("{count} second", "{count} seconds", whole).format(count=whole)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
