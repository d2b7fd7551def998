"""Every Block Kit text fits its field after escaping, and nothing a user, a model or a web page
wrote becomes a mention, a link or layout (issue 10, items 1-3). Pure renderers, checked with the
fake Slack's strict limits (`block_kit_problems`, `view_problems`)."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.answers import Answer, AnswerStats
from bot.conversation import ConversationKey
from bot.flags import FlagError, parse_ask
from bot.progress import ProgressView, Stage
from bot.qwen.events import Reference
from bot.records import Totals
from bot.report import Report, RunStats
from bot.research_options import OptionError, parse_research_options
from bot.usage_report import Period, WorkspaceUsage
from bot.workspace_settings import SNAPSHOT, McpServer, TokenState, WorkspaceSettings
from handlers import answer_render
from handlers.help import help_blocks
from handlers.home import home_view
from handlers.render import (
    FALLBACK_SENTENCE,
    SECTION_LIMIT,
    clip,
    escaped,
    fallback_message,
    markdown_messages,
    notice_message,
    progress_message,
    reference_link,
    report_summary,
    split_text,
)
from handlers.settings_render import home_blocks, saved_modal, settings_modal, tools_value
from handlers.usage_render import usage_blocks, usage_message
from tests.fakes.slack_server import block_kit_problems, view_problems

KEY = ConversationKey("T1", "C1", "1700000000.000100")
# A pasted HTML table: 372 "&" (and about 500 "<" and ">") in its first 1,500 characters.
PASTED_TABLE = "<table><tr>" + "<td>&&&</td>" * 400
ESCAPES = re.compile(r"&(amp|lt|gt);")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def answer(question: str, text: str = "An answer.") -> Answer:
    return Answer(
        id="a1",
        asker="UASKER",
        question=question,
        text=text,
        model="qwen-plus",
        thinking=True,
        has_reasoning=True,
        stats=AnswerStats(10, 20, 5, Decimal("0.01")),
    )


def mentions_and_links(mrkdwn: str) -> list[str]:
    """What Slack would parse as markup in mrkdwn: everything between < and >."""
    return re.findall(r"<([^<>]*)>", mrkdwn)


# --------------------------------------------------------------------------- item 1: /ask


def test_the_pasted_table_is_what_the_issue_describes() -> None:
    assert PASTED_TABLE[:1500].count("&") >= 370


def test_a_question_full_of_escapes_is_quoted_within_the_section_limit() -> None:
    block = answer_render.question_block("UASKER", PASTED_TABLE)
    text = block["text"]["text"]
    assert len(text) <= SECTION_LIMIT
    assert block_kit_problems([block]) == []
    assert "<table>" not in text and "&lt;table&gt;" in text
    # Clipped after escaping: what is shown reads back as the start of the question.
    quoted = text.split("\n", 1)[1].removesuffix("…")
    assert PASTED_TABLE.startswith(unescape(quoted.replace(">", "")))


@pytest.mark.parametrize("quote", [True, False])
def test_every_ask_message_fits_with_that_question(quote: bool) -> None:
    messages = [
        answer_render.status_message("UASKER", PASTED_TABLE, "qwen-plus", quote=True),
        answer_render.notice_message("The model is busy.", asker="U", question=PASTED_TABLE),
        *answer_render.answer_messages(answer(PASTED_TABLE), quote=quote, max_messages=4),
        answer_render.file_message(answer(PASTED_TABLE)),
    ]
    for message in messages:
        assert block_kit_problems(message["blocks"]) == [], message
        assert len(message["text"]) <= 3000 and "<table>" not in message["text"]
    view = answer_render.text_view("reasoning", "why " * 5000, PASTED_TABLE, "a1")
    assert view_problems(view) == []


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(st.sampled_from("&<>a \n"), max_size=9000))
def test_any_question_of_escapes_fits_every_ask_message(question: str) -> None:
    for message in (
        answer_render.status_message("U1", question, "qwen-plus", quote=True),
        *answer_render.answer_messages(answer(question, "ok"), quote=True, max_messages=1),
        answer_render.file_message(answer(question)),
    ):
        assert block_kit_problems(message["blocks"]) == []
        assert len(message["text"]) <= 3000


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(st.sampled_from("&<>ab"), max_size=60), st.integers(min_value=2, max_value=70))
def test_clipping_after_escaping_never_splits_an_escape(text: str, limit: int) -> None:
    shown = escaped(text, limit)
    assert len(shown) <= limit
    body = shown.removesuffix("…") if shown != escaped(text, 10**6) else shown
    assert "&" not in ESCAPES.sub("", body)  # every & left is the start of a whole escape
    assert text.startswith(unescape(body))


def test_clip_leaves_short_text_alone_and_marks_a_cut() -> None:
    assert clip("short", 10) == "short"
    assert clip("a&amp;b", 3) == "a…"  # not "a&…"


def test_the_fallback_of_a_refused_message_is_its_plain_text() -> None:
    message = answer_render.answer_messages(answer("q", "The answer."), quote=True, max_messages=1)
    assert fallback_message(message[0]) == {"text": "The answer."}
    assert fallback_message({"blocks": []}) == {"text": FALLBACK_SENTENCE}


def test_split_text_never_cuts_an_escape_in_half() -> None:
    pieces = split_text("&amp;" * 1000, 3000)
    assert all(len(p) <= 3000 for p in pieces)
    assert all(ESCAPES.sub("", p) == "" for p in pieces)
    assert "".join(pieces) == "&amp;" * 1000


# --------------------------------------------------------------------------- item 2: long text

FIFTY_TOOLS = tuple(f"tool_{i:02d}_" + "x" * 50 for i in range(50))  # 58 characters each


def mcp_settings(tools: tuple[str, ...] = FIFTY_TOOLS) -> WorkspaceSettings:
    return WorkspaceSettings(
        model=SNAPSHOT,
        mcp=McpServer("kb", "https://mcp.example.com/" + "p" * 2000, tools, TokenState.SAVED),
        updated_by="UADMIN",
        updated_at=1_760_000_000.0,
    )


def test_fifty_long_tool_names_fit_the_home_tab_and_the_saved_modal() -> None:
    assert all(len(t) == 58 for t in FIFTY_TOOLS)
    settings_part = home_blocks(mcp_settings(), default_model=SNAPSHOT, can_change=True)
    assert view_problems(home_view(None, settings_part)) == []
    assert view_problems(saved_modal(mcp_settings(), default_model=SNAPSHOT)) == []
    shown = json.dumps(settings_part)
    assert f"`{FIFTY_TOOLS[0]}`" in shown and "more" in shown


def test_the_settings_modal_shows_every_saved_tool_within_the_field() -> None:
    # Typed as 50 names of 59 characters with bare commas: 2,999 characters, which fit the
    # field; with ", " they would not.
    tools = tuple(f"t{i:02d}" + "y" * 56 for i in range(50))
    view = settings_modal(mcp_settings(tools), default_model=SNAPSHOT, can_save_tokens=True)
    assert view_problems(view) == []
    [field] = [b for b in view["blocks"] if b.get("block_id") == "mcp_tools"]
    assert field["element"]["initial_value"].split(",") == list(tools)
    assert tools_value(("search", "fetch")) == "search, fetch"


def test_many_models_in_the_usage_stay_within_the_block_limits() -> None:
    models = tuple(
        Totals(f"qwen-model-{i:03d}-" + "v" * 80, 1, 10, 20, 0, Decimal("0.1"), 0)
        for i in range(200)
    )
    users = tuple(Totals(f"U{i}", 1, 10, 20, 0, None, 1) for i in range(5))
    period = Period("This month", models, users)
    usage = WorkspaceUsage(period, period, None)
    message = usage_message(usage)
    assert block_kit_problems(message["blocks"]) == []
    assert view_problems(home_view(usage, [])) == []
    text = json.dumps(usage_blocks(usage))
    assert f"`{models[0].name}`" in text and f"`{models[10].name}`" not in text
    assert "190 more models: 190 calls" in text


def test_an_unknown_option_of_three_thousand_letters_is_not_repeated_in_full() -> None:
    word = "--" + "a" * 3000
    with pytest.raises(OptionError) as caught:
        parse_research_options(f"{word} the use of AI in education")
    sentence = str(caught.value)
    assert len(sentence) < 400 and "--aaaa" in sentence and "…" in sentence
    assert block_kit_problems(notice_message(sentence, KEY, retry=False)["blocks"]) == []

    with pytest.raises(FlagError) as flag:
        parse_ask(f"{word} why?")
    assert len(str(flag.value)) < 100 and "…" in str(flag.value)


def test_a_notice_of_any_length_fits() -> None:
    message = notice_message("&" * 5000, KEY, retry=True)
    assert block_kit_problems(message["blocks"]) == []
    assert len(message["text"]) <= 3000


def test_the_help_fits_its_section() -> None:
    assert block_kit_problems(help_blocks()) == []


# --------------------------------------------------------------------------- item 3: sources

HOSTILE = Reference(
    1,
    "Great study <!here> | <@U123> & <https://phish.example|click>\n\n*Fake section*",
    "https://evil.example/a> <!channel> |x",
)


def report_with(*refs: Reference, text: str = "# Title\n\nSummary <!channel> & more.") -> Report:
    return Report("topic", text, refs, RunStats(10, 1, 2, None))


def test_a_hostile_reference_becomes_one_plain_link() -> None:
    message = report_with(HOSTILE, Reference(2, "Fine", "https://ok.example/?a=1&b=2"))
    summary = report_summary(message)
    assert block_kit_problems(summary["blocks"]) == []
    sources = summary["blocks"][-3]["text"]["text"]
    markup = mentions_and_links(sources)
    assert len(markup) == 2, markup
    for link in markup:
        url, label = link.split("|")  # one separator: the label holds none
        assert url.startswith("https://") and not re.search(r"\s", url)
        assert "<" not in label and ">" not in label
    assert "https://evil.example/a%3E%20%3C!channel%3E%20%7Cx" in sources
    assert "https://ok.example/?a=1&amp;b=2" in sources
    assert "*Fake section*" in sources and "\n\n*Fake" not in sources  # stays on its line
    everything = json.dumps(summary)
    assert "<!channel" not in everything and "<!here" not in everything
    assert "<@U123" not in everything


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "slack://channel?id=C1", "mailto:x@example.com", "not a url"]
)
def test_a_reference_that_is_not_a_web_address_is_not_linked(url: str) -> None:
    shown = reference_link(url, "Title")
    assert shown == "Title" and "<" not in shown


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.text(st.sampled_from("<>|&!@#:/ \nah"), max_size=40),
    st.text(st.sampled_from("<>|&!@ \nah"), max_size=40),
)
def test_any_reference_is_at_most_one_link_to_the_web(url: str, title: str) -> None:
    shown = reference_link("https://x.example/" + url, title)
    markup = mentions_and_links(shown)
    assert len(markup) <= 1 and shown.count("<") == len(markup)
    for link in markup:
        assert link.startswith("https://x.example/") and link.count("|") == 1
    assert "\n" not in shown


def test_model_text_in_progress_and_fallback_texts_is_escaped() -> None:
    goal = "find <!channel> stats\n>quoted & more"
    view = ProgressView(Stage.SEARCHING, 2, 1, goal, 3, 10)
    progress = progress_message(view, KEY)
    section = progress["blocks"][0]["text"]["text"]
    assert mentions_and_links(section) == [] and section.count("\n") == 1
    assert "<!" not in report_summary(report_with(HOSTILE))["text"]
    [posted] = markdown_messages("Hello <!channel> & <@U1>")
    assert "<!" not in posted["text"] and "<@" not in posted["text"]


def test_a_blocks_message_of_any_content_has_a_plain_text_of_its_own() -> None:
    for message in (
        report_summary(report_with(HOSTILE)),
        notice_message("Research stopped.", KEY, retry=True),
        progress_message(ProgressView(Stage.DONE, 0, 0, "", 0, 5), KEY),
    ):
        assert isinstance(message["text"], str) and 0 < len(message["text"]) <= 3000
