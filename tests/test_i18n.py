"""Message catalogs: every sentence marked in the source has a translation in each catalog,
and a translation keeps the Slack markup (emoji, code) of its sentence."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Final

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from bot.budget import BudgetStatus, exhausted
from bot.i18n import N_, Day, Money, Month, Ordinal, Span, Value, say, say_n
from handlers.i18n import LOCALES, figure, language_of, show, translations

REPO = Path(__file__).resolve().parent.parent
LANGUAGES = ["ja", "zh"]
_EMOJI = re.compile(r":[a-z_]+:")
_CODE = re.compile(r"`[^`]+`")
_FIELD = re.compile(r"\{[a-z_]+\}")  # what the code fills in: {count}, {time}…


Sentence = str | tuple[str, str]  # a plural sentence is (singular, plural)
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None, "say_n": (1, 2)}


def marked() -> set[Sentence]:
    """Every sentence marked in bot/ and handlers/ (N_, say_n, and gettext's own names such
    as ngettext), as `pybabel extract -k N_ -k say_n:1,2` sees them."""
    found: set[Sentence] = set()
    for folder in ("bot", "handlers"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            REPO / folder, keywords=KEYWORDS, comment_tags=()
        ):
            found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


def key(sentence: Sentence) -> str:
    return sentence if isinstance(sentence, str) else sentence[0]


def translated(language: str, sentence: Sentence) -> str:
    t = translations(language)
    if isinstance(sentence, str):
        return t.gettext(sentence)
    return t.ngettext(sentence[0], sentence[1], 2)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_marked_sentence_is_translated(language: str) -> None:
    with (LOCALES / language / "LC_MESSAGES" / "bot.po").open("rb") as po:
        catalog = read_po(po)
    sentences = marked()
    assert len(sentences) > 40
    missing = [key(s)[:60] for s in sentences if not catalog.get(key(s)) or not _done(catalog, s)]
    assert not missing, f"{language} lacks translations of {missing}"
    fuzzy = [m.id[:60] for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"{language} has fuzzy translations: {fuzzy}"
    for sentence in sentences:
        english, shown = key(sentence), translated(language, sentence)
        assert shown != english
        assert set(_EMOJI.findall(shown)) == set(_EMOJI.findall(english)), english
        assert set(_FIELD.findall(shown)) == set(_FIELD.findall(english)), english
        # Commands and options stay as typed (`/research usage`, `--private`…).
        assert commands(english) <= commands(shown), english


def _done(catalog: Catalog, sentence: Sentence) -> bool:
    string = catalog.get(key(sentence)).string  # type: ignore[union-attr]
    return all(string) if isinstance(string, tuple) else bool(string)


def commands(text: str) -> set[str]:
    """The command or option that starts each `code` span (its placeholders may be
    translated)."""
    words = (c.strip("`").split() for c in _CODE.findall(text))
    return {w[0] for w in words if w and w[0].startswith(("/", "--"))}


def test_the_template_lists_what_the_source_marks() -> None:
    with (LOCALES / "bot.pot").open("rb") as pot:
        template = {m.id if isinstance(m.id, str) else tuple(m.id) for m in read_po(pot) if m.id}
    assert template == marked(), "run pybabel extract (README, Languages)"


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        ("ja-JP", "ja"),
        ("zh-CN", "zh"),
        ("zh-TW", "zh"),
        ("en-GB", "en"),
        ("fr-FR", "en"),
        (None, "en"),
        ("", "en"),
        ("ja_JP", "ja"),
    ],
)
def test_a_slack_locale_picks_a_language(locale: str | None, language: str) -> None:
    assert language_of(locale) == language


def test_no_sentence_is_marked_where_babel_cannot_see_it() -> None:
    """Babel does not look inside f-strings: a sentence marked there never reaches a catalog."""
    hidden = re.compile(r"""f(["']).*(N_|say_n)\(""")
    for folder in ("bot", "handlers"):
        for path in (REPO / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                assert not hidden.search(line), f"{path.name}:{number}"


# --- figures in sentences ---------------------------------------------------------------------

MAY: Final = datetime(2026, 5, 20, tzinfo=UTC)
JUNE_1: Final = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "en", "ja", "zh"),
    [
        (1234567, "1,234,567", "1,234,567", "1,234,567"),
        (Money(Decimal("1234.56789")), "$1,234.5679", "$1,234.5679", "US$1,234.5679"),
        (Day(JUNE_1), "1 June 2026", "2026年6月1日", "2026年6月1日"),
        (Month(MAY), "May 2026", "2026年5月", "2026年5月"),
        (Span(9), "9s", "9秒", "9秒"),
        (Span(65), "1m 05s", "1分05秒", "1分05秒"),
        (Span(3725), "1h 02m", "1時間02分", "1小时02分"),
        (Span(45 * 60, words=True), "45 minutes", "45 分", "45 分钟"),
        (Span(90, words=True), "90 seconds", "90 秒", "90 秒"),
        (Ordinal(2), "2nd", "2", "2"),
        (Ordinal(12), "12th", "12", "12"),
    ],
)
def test_figures_read_as_each_language_writes_them(value: Value, en: str, ja: str, zh: str) -> None:
    for language, written in (("en", en), ("ja", ja), ("zh", zh)):
        assert figure(translations(language), value) == written


def test_a_sentence_with_figures_and_a_nested_sentence_in_each_language() -> None:
    status = BudgetStatus(limit=1_000_000, used=1_234_567, month=MAY, resets_at=JUNE_1)
    refusal = exhausted(status)
    assert str(refusal).startswith("This workspace has used 1,234,567 of its 1,000,000 tokens ")
    assert "for May 2026," in str(refusal) and "on 1 June 2026 at 00:00 UTC." in str(refusal)
    ja = show(translations("ja"), refusal)
    assert "2026年5月 のトークン予算 1,000,000 のうち 1,234,567 を使用" in ja
    assert "2026年6月1日 00:00 (UTC) まで" in ja
    queued = say(
        N_(
            "Your research is queued: it is {position} in line for this workspace, behind "
            "research already running. It starts by itself when a slot frees."
        ),
        position=Ordinal(3),
    )
    assert "it is 3rd in line" in show(translations("en"), queued)
    assert "第 3 位" in show(translations("zh"), queued)
    files = say_n("{count} unpriced call", "{count} unpriced calls", 1200)
    assert show(translations("en"), files) == "1,200 unpriced calls"
    assert show(translations("ja"), files) == "価格未設定の呼び出し 1,200 回"


def test_after_preload_no_language_loads_anything_when_first_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start loads every catalog and Babel's locale data off the event loop (a first
    report in a language took 40 ms of it); showing a figure afterwards reads nothing."""
    import babel.localedata

    from handlers import i18n

    translations.cache_clear()
    babel.localedata._cache.clear()  # what other tests loaded: start as a new process does
    i18n.preload()

    def loaded(*_: object, **__: object) -> None:
        raise AssertionError("loaded when first shown, not at start")

    monkeypatch.setattr(babel.localedata.pickle, "load", loaded)
    monkeypatch.setattr(i18n, "read_po", loaded)
    moment = datetime(2026, 3, 1, tzinfo=UTC)
    for language in ("en", *LANGUAGES):
        t = translations(language)
        shown = [
            figure(t, value)
            for value in (
                1234567,
                Money(Decimal("1.5")),
                Day(moment),
                Month(moment),
                Span(3700.0),
                Span(900.0, words=True),
                Ordinal(3),
            )
        ]
        assert all(shown)
