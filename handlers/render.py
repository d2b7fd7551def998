"""Block Kit rendering: pure functions from domain values to Slack message payloads."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote, urlsplit

from bot.conversation import ConversationKey
from bot.feedback import REPORT
from bot.i18n import N_, Money, Span, say
from bot.progress import ProgressView, Stage
from bot.report import Report, numbered
from handlers.i18n import ENGLISH_TEXT as ENGLISH
from handlers.i18n import Translations, show

STOP_ACTION: Final = "research_stop"
FEEDBACK_ACTION: Final = "feedback"
POSITIVE: Final = "good"
NEGATIVE: Final = "bad"
RETRY_ACTION: Final = "research_retry"

# Slack's `markdown` block holds 12,000 characters per message; stay clear of it.
MARKDOWN_CHUNK: Final = 11_000
SECTION_LIMIT: Final = 3000
# A message's top-level `text` (notifications, and what a post without blocks shows).
TEXT_LIMIT: Final = 3000
MAX_LISTED_REFERENCES: Final = 15
MAX_LINKED_URL: Final = 1000  # a longer reference URL is shown without a link
# When Slack refuses a post's layout and the message has no plain text of its own.
FALLBACK_SENTENCE: Final = "I couldn't show this message in Slack."

_STAGE_LINES: Final[dict[Stage, str]] = {
    Stage.CLARIFYING: N_(":hourglass_flowing_sand: Reading your request…"),
    Stage.STARTING: N_(":hourglass_flowing_sand: Starting the research…"),
    Stage.PLANNING: N_(":memo: Planning the research…"),
    Stage.SEARCHING: N_(":mag: Searching the web…"),
    Stage.WRITING: N_(":writing_hand: Writing the report…"),
    Stage.DONE: N_(":white_check_mark: Research complete. The report is below."),
    Stage.STOPPED: N_(":black_square_for_stop: Research stopped."),
    Stage.FAILED: N_(":warning: Research did not finish."),
    Stage.UNDELIVERED: N_(":warning: Research complete, but the report is not in this thread yet."),
    Stage.INTERRUPTED: N_(":warning: Research interrupted: the bot restarted."),
}
# Stages after which the run is over: no Stop button. An interrupted run's counts are gone
# with its process, so its message keeps only the headline.
_ENDED: Final = (Stage.DONE, Stage.STOPPED, Stage.FAILED, Stage.UNDELIVERED, Stage.INTERRUPTED)

Message = dict[str, Any]

# (Babel cannot look inside f-strings: sentences used in one are marked here.)
SOURCES: Final = N_("Sources")
READ_THE_REPORT: Final = N_("Read the report")

# The thread's status line while work goes on, and the loading messages Slack rotates under
# it (at most 10), following the stage. Ending stages clear the line.
_STATUS_LINES: Final[dict[Stage, tuple[str, tuple[str, ...]]]] = {
    Stage.CLARIFYING: (
        N_("is reading your request…"),
        (N_("Reading your request…"), N_("Thinking of a question to ask you…")),
    ),
    Stage.STARTING: (N_("is starting the research…"), (N_("Starting the research…"),)),
    Stage.PLANNING: (
        N_("is planning the research…"),
        (N_("Planning the research…"), N_("Working out what to look for…")),
    ),
    Stage.SEARCHING: (
        N_("is searching the web…"),
        (N_("Searching the web…"), N_("Reading sources…"), N_("Comparing what the sources say…")),
    ),
    Stage.WRITING: (
        N_("is writing the report…"),
        (N_("Writing the report…"), N_("Citing the sources…"), N_("Checking the report…")),
    ),
}
RUNNING_STAGES: Final = frozenset(_STATUS_LINES) - {Stage.CLARIFYING}


def thread_status(stage: Stage, t: Translations = ENGLISH) -> tuple[str, list[str]]:
    """(status, loading messages) for `stage`; ("", []) clears the line."""
    status, loading = _STATUS_LINES.get(stage, ("", ()))
    return (t.gettext(status) if status else ""), [t.gettext(m) for m in loading]


# Summaries and progress carry links (sources, the report); Slack would unfurl them into
# previews that bury the message.
NO_UNFURL: Final = {"unfurl_links": False, "unfurl_media": False}


def key_value(key: ConversationKey) -> str:
    """A button's value naming its conversation (the team comes from the click itself)."""
    return json.dumps({"c": key.channel_id, "t": key.thread_ts})


def key_from_value(team_id: str, value: str) -> ConversationKey | None:
    try:
        data = json.loads(value)
        return ConversationKey(team_id, str(data["c"]), str(data["t"]))
    except (ValueError, KeyError, TypeError):
        return None


def progress_message(
    view: ProgressView, key: ConversationKey, *, t: Translations = ENGLISH
) -> Message:
    headline = t.gettext(_STAGE_LINES[view.stage])
    lines = [f"*{headline}*"]
    if view.round and view.stage in (Stage.SEARCHING, Stage.WRITING):
        round_line = t.gettext(N_("Search round {round}")).format(round=view.round)
        if view.goal and view.stage is Stage.SEARCHING:
            round_line += f": {escaped(one_line(view.goal), 480)}"
        lines.append(round_line)
    sources = t.ngettext("{count} source found", "{count} sources found", view.sources)
    facts = [sources.format(count=view.sources)]
    if view.rounds_finished:
        done = t.ngettext("{count} round done", "{count} rounds done", view.rounds_finished)
        facts.append(done.format(count=view.rounds_finished))
    facts.append(show(t, say(N_("elapsed {time}"), time=Span(view.elapsed_seconds))))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
    ]
    if view.stage is Stage.INTERRUPTED:
        return {"text": headline, "blocks": blocks, **NO_UNFURL}
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]})
    if view.stage not in _ENDED:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": STOP_ACTION,
                        "text": {"type": "plain_text", "text": t.gettext(N_("Stop"))},
                        "style": "danger",
                        "value": key_value(key),
                    }
                ],
            }
        )
    return {"text": f"{headline} ({', '.join(facts)})", "blocks": blocks, **NO_UNFURL}


def notice_message(
    sentence: str, key: ConversationKey, *, retry: bool, t: Translations = ENGLISH
) -> Message:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": escaped(sentence, SECTION_LIMIT)}}
    ]
    if retry:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": RETRY_ACTION,
                        "text": {"type": "plain_text", "text": t.gettext(N_("Retry"))},
                        "style": "primary",
                        "value": key_value(key),
                    }
                ],
            }
        )
    return {"text": escaped(sentence, TEXT_LIMIT), "blocks": blocks}


def markdown_messages(text: str) -> list[Message]:
    """Model-written Markdown as one or more messages, split on paragraph boundaries."""
    return [
        {"text": escaped(chunk, TEXT_LIMIT), "blocks": [{"type": "markdown", "text": chunk}]}
        for chunk in split_text(text, MARKDOWN_CHUNK)
    ]


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at paragraph, line or word ends if possible."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        # Prefer a paragraph break, then a line break, then a space, in the window's back half.
        for separator in ("\n\n", "\n", " "):
            cut = window.rfind(separator)
            if cut >= limit // 2:
                break
        else:
            cut = _entity_safe(rest, limit)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces or [""]


def report_summary(
    report: Report, *, canvas_url: str | None = None, t: Translations = ENGLISH
) -> Message:
    stats = report.stats
    facts = [
        show(t, say(N_("Took {time}"), time=Span(stats.duration_seconds))),
        tokens_line(stats.input_tokens, stats.output_tokens, t=t),
    ]
    if stats.cost_usd is not None:
        facts.append(estimate(stats.cost_usd, t))
    footer = " · ".join(facts)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(report.title, 150)}},
    ]
    if report.summary:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": escaped(report.summary, SECTION_LIMIT)},
            }
        )
    canvas = safe_url(canvas_url) if canvas_url else None
    if canvas:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f":page_facing_up: <{canvas}|{t.gettext(READ_THE_REPORT)}>",
                },
            }
        )
    refs = numbered(report.references)
    if refs:
        lines = [f"*{t.gettext(SOURCES)}*"]
        size = len(lines[0])
        for shown, (i, r) in enumerate(refs):
            line = f"{i}. {reference_link(r.url, r.title)}"
            # A section holds 3000 characters; never cut a link in half.
            if shown == MAX_LISTED_REFERENCES or size + len(line) + 60 > SECTION_LIMIT:
                more = t.ngettext(
                    "…and {count} more in the report.",
                    "…and {count} more in the report.",
                    len(refs) - shown,
                )
                lines.append(more.format(count=len(refs) - shown))
                break
            lines.append(line)
            size += len(line) + 1
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    blocks.append(feedback_block(report.model, REPORT, t))
    text = f"{report.title}: {report.summary}" if report.summary else report.title
    return {"text": escaped(text, TEXT_LIMIT), "blocks": blocks, **NO_UNFURL}


def tokens_line(
    input_tokens: int, output_tokens: int, reasoning: int = 0, *, t: Translations = ENGLISH
) -> str:
    """ "48,210 tokens (5,120 in / 43,090 out)", with the reasoning tokens when there are any
    (they are part of the output)."""
    total = input_tokens + output_tokens
    if reasoning:
        sentence = N_("{tokens} tokens ({input} in / {output} out, {reasoning} reasoning)")
    else:
        sentence = N_("{tokens} tokens ({input} in / {output} out)")
    fields = {"tokens": total, "input": input_tokens, "output": output_tokens}
    return show(t, say(sentence, **fields, reasoning=reasoning))


def estimate(cost: Decimal, t: Translations = ENGLISH) -> str:
    """An estimated cost: "est. $1.0465"."""
    return show(t, say(N_("est. {cost}"), cost=Money(cost)))


def feedback_block(model: str, kind: str, t: Translations = ENGLISH) -> dict[str, Any]:
    """Slack's 👍/👎 buttons; each button's value names what is rated (model and kind), so a
    press is recorded without looking the message up."""

    def value(verdict: str) -> str:
        return json.dumps({"v": verdict, "m": model[:100], "k": kind[:20]})

    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_ACTION,
                "positive_button": {
                    "text": {"type": "plain_text", "text": t.gettext(N_("Good response"))},
                    "accessibility_label": t.gettext(N_("Mark this response as good")),
                    "value": value(POSITIVE),
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": t.gettext(N_("Bad response"))},
                    "accessibility_label": t.gettext(N_("Mark this response as bad")),
                    "value": value(NEGATIVE),
                },
            }
        ],
    }


def parse_feedback(value: str) -> tuple[bool, str, str] | None:
    """(positive, model, kind) from a feedback button's value; None for anything else."""
    try:
        data = json.loads(value)
        verdict, model, kind = data["v"], data["m"], data["k"]
    except (ValueError, KeyError, TypeError):
        return None
    if verdict not in (POSITIVE, NEGATIVE) or not isinstance(model, str):
        return None
    if not isinstance(kind, str) or not kind or len(model) > 100 or len(kind) > 20:
        return None
    return verdict == POSITIVE, model, kind


def fallback_message(message: Message) -> Message:
    """What to post when Slack refuses `message`'s blocks: its plain text alone, which every
    renderer here keeps escaped and within TEXT_LIMIT."""
    text = message.get("text")
    unfurl = {k: message[k] for k in NO_UNFURL if k in message}
    text = clip(text, TEXT_LIMIT) if isinstance(text, str) and text else FALLBACK_SENTENCE
    return {"text": text, **unfurl}


# --------------------------------------------------------------------------- text that is safe


def escape(text: str) -> str:
    """Slack's three control characters in mrkdwn: nothing escaped can become a mention, a
    link or a date."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ENTITY: Final = re.compile(r"&(?:[A-Za-z]{2,8}|#[0-9]{1,7});")


def _entity_safe(text: str, cut: int) -> int:
    """`cut`, moved back to before an escape such as `&amp;` that it would split."""
    start = text.rfind("&", max(0, cut - 9), cut)
    if start != -1:
        entity = _ENTITY.match(text, start)
        if entity is not None and entity.end() > cut:
            return start
    return cut


def clip(text: str, limit: int) -> str:
    """At most `limit` characters; a cut ends in "…" and never splits an escape in half."""
    if len(text) <= limit:
        return text
    return text[: _entity_safe(text, limit - 1)] + "…"


def escaped(text: str, limit: int) -> str:
    """`text` escaped, then clipped so that the escaped form fits `limit` (clipping first
    would let every `&` grow fivefold past the limit)."""
    return clip(escape(text), limit)


def one_line(text: str) -> str:
    """Runs of whitespace, line breaks included, as one space: model text stays on its line."""
    return " ".join(text.split())


# Characters a URL keeps as they are; everything else (spaces, quotes, <, >, |, control and
# non-ASCII characters) is percent-encoded, so the URL can't end the link or start another.
_URL_SAFE: Final = "/:?#[]@!$&'()*+,;=%~-._"


def safe_url(url: str) -> str | None:
    """An http(s) URL made safe inside Slack's `<url|label>`, or None when it is not one."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    encoded = escape(quote(url, safe=_URL_SAFE))
    return encoded if len(encoded) <= MAX_LINKED_URL else None


def reference_link(url: str, title: str, *, label_limit: int = 120) -> str:
    """A source as a link whose label is the title; a model or web page chooses both, so
    neither may close the link, add another or mention anyone."""
    label = escaped(one_line(title) or one_line(url), label_limit).replace("|", "¦")
    target = safe_url(url)
    return f"<{target}|{label}>" if target else label
