"""Message catalogs: every sentence marked in the source has a translation in each catalog,
and a translation keeps the Slack markup (emoji, code) of its sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from handlers.i18n import LOCALES, language_of, translations

REPO = Path(__file__).resolve().parent.parent
LANGUAGES = ["ja", "zh"]
_EMOJI = re.compile(r":[a-z_]+:")
_CODE = re.compile(r"`[^`]+`")


def marked() -> set[str]:
    """Every sentence marked with N_ in bot/ and handlers/, as `pybabel extract -k N_` sees."""
    found: set[str] = set()
    for folder in ("bot", "handlers"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            REPO / folder, keywords={"N_": None}, comment_tags=()
        ):
            assert isinstance(message, str)
            found.add(message)
    return found


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_marked_sentence_is_translated(language: str) -> None:
    with (LOCALES / language / "LC_MESSAGES" / "bot.po").open("rb") as po:
        catalog = read_po(po)
    sentences = marked()
    assert len(sentences) > 40
    missing = [s[:60] for s in sentences if s not in catalog or not catalog[s].string]
    assert not missing, f"{language} lacks translations of {missing}"
    fuzzy = [m.id[:60] for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"{language} has fuzzy translations: {fuzzy}"
    for sentence in sentences:
        translated = translations(language).gettext(sentence)
        assert translated != sentence or sentence in ("Stop",)
        assert set(_EMOJI.findall(translated)) == set(_EMOJI.findall(sentence)), sentence
        # Commands and options stay as typed (`/research usage`, `--private`…).
        assert commands(sentence) <= commands(translated), sentence


def commands(text: str) -> set[str]:
    """The command or option that starts each `code` span (its placeholders may be
    translated)."""
    words = (c.strip("`").split() for c in _CODE.findall(text))
    return {w[0] for w in words if w and w[0].startswith(("/", "--"))}


def test_the_template_lists_what_the_source_marks() -> None:
    with (LOCALES / "bot.pot").open("rb") as pot:
        template = {m.id for m in read_po(pot) if m.id}
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
