"""Message catalogs: every sentence marked in the source has a translation in each catalog,
and a translation keeps the Slack markup (emoji, code) of its sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from handlers.i18n import LOCALES, language_of, translations

REPO = Path(__file__).resolve().parent.parent
LANGUAGES = ["ja", "zh"]
_EMOJI = re.compile(r":[a-z_]+:")
_CODE = re.compile(r"`[^`]+`")
_FIELD = re.compile(r"\{[a-z_]+\}")  # what the code fills in: {count}, {time}…


Sentence = str | tuple[str, str]  # a plural sentence is (singular, plural)


def marked() -> set[Sentence]:
    """Every sentence marked in bot/ and handlers/ (N_, and gettext's own names such as
    ngettext), as `pybabel extract -k N_` sees them."""
    found: set[Sentence] = set()
    for folder in ("bot", "handlers"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            REPO / folder, keywords={**DEFAULT_KEYWORDS, "N_": None}, comment_tags=()
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
    hidden = re.compile(r"""f(["']).*N_\(""")
    for folder in ("bot", "handlers"):
        for path in (REPO / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                assert not hidden.search(line), f"{path.name}:{number}"
