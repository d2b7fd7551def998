"""Pure translation of one DashScope stream frame into typed events.

A frame is the JSON object of one SSE `data:` line: `{"output", "usage", "request_id"}` for
results or `{"code", "message", "request_id"}` for errors. Everything awkward about the wire
format is handled here and nowhere else: KeepAlive frames, metadata-only frames, a null
`output`, mainline vs snapshot statuses, statuses nobody documented, and values of the wrong type.

Nothing leaves here that a later write could choke on: text has no lone UTF-16 surrogates
(JSON allows `"\\ud800"`, UTF-8 and so every database refuse it) and every count is a whole
number from 0 to MAX_COUNT, whatever the frame said (2**64, -5, 1e300, "12").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from bot.qwen.events import (
    ANSWER,
    FINISHED,
    KEEPALIVE,
    MAX_COUNT,
    ROUND_FINISHED,
    Event,
    Finished,
    PhaseStatus,
    ReasoningDelta,
    Reference,
    References,
    ResearchGoal,
    RoundFinished,
    SitesFound,
    StreamError,
    TextDelta,
    Usage,
    WebSite,
)

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_MAX_DIGITS: Final = 40  # a longer number is corrupt anyway; int() of 4,300+ digits raises


_EMPTY: Final[Mapping[str, Any]] = {}


def _obj(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:  # what json.loads makes: skips the slower ABC check
        return value
    return value if isinstance(value, Mapping) else _EMPTY


def _str(value: Any) -> str:
    """Text, with any lone surrogate (a pair decodes to one character) as U+FFFD."""
    if not isinstance(value, str):
        return ""
    if value.isascii():  # no surrogate, and most of what the model sends
        return value
    return _SURROGATE.sub("\ufffd", value)


def _int(value: Any) -> int:
    """A count from 0 to MAX_COUNT: negatives are 0, larger figures MAX_COUNT, a fraction is
    rounded up (a count is never recorded lower than it was), and anything else is 0."""
    number: int
    if type(value) is int:  # the usual case first
        number = value
    elif isinstance(value, bool):
        return 0
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if math.isnan(value):
            return 0
        number = MAX_COUNT if math.isinf(value) else math.ceil(value)
    elif isinstance(value, str):
        digits = value.strip()
        if not (digits.isascii() and digits.isdigit()):
            return 0
        number = int(digits) if len(digits) <= _MAX_DIGITS else MAX_COUNT
    else:
        return 0
    return min(max(number, 0), MAX_COUNT)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def interpret(frame: Mapping[str, Any]) -> list[Event]:
    """Events carried by one frame, in the order a reader should apply them."""
    if not isinstance(frame, Mapping):
        return []
    code = _str(frame.get("code"))
    output = frame.get("output")
    if code and not isinstance(output, Mapping):
        return [
            StreamError(
                code=code,
                message=_str(frame.get("message")),
                request_id=_str(frame.get("request_id")),
                status=_int(frame.get("status_code")),
            )
        ]
    out = _obj(output)
    message = _obj(out.get("message"))
    if _str(message.get("phase")) == KEEPALIVE:
        return []

    events: list[Event] = []
    if message:
        events.extend(_research_events(message))
    else:
        events.extend(_thinking_events(out))
    usage = _usage(frame)
    if usage is not None:
        events.append(usage)
    if message and message.get("phase") == ANSWER and message.get("status") == FINISHED:
        events.append(Finished(ANSWER))
    return events


def _research_events(message: Mapping[str, Any]) -> list[Event]:
    phase = _str(message.get("phase"))
    status = _str(message.get("status"))
    events: list[Event] = []
    if phase:
        events.append(PhaseStatus(phase, status))
    content = _str(message.get("content"))
    if content:
        events.append(TextDelta(phase or ANSWER, content))

    deep = _obj(_obj(message.get("extra")).get("deep_research"))
    if not deep:  # most frames: report or plan text only
        return events
    research = _obj(deep.get("research"))
    if research:
        round_id = _int(research.get("id"))
        # Mainline sends goals in streamingQueries and sites in streamingWebResult; the
        # snapshot sends both under streamingThinking. Reading the fields, not the status,
        # covers both and any status added later.
        goal = _str(research.get("researchGoal"))
        if goal:
            events.append(ResearchGoal(round_id, goal))
        sites = tuple(
            WebSite(
                title=_str(s.get("title")) or _str(s.get("url")),
                url=_str(s.get("url")),
                description=_str(s.get("description")),
            )
            for s in map(_obj, _list(research.get("webSites")))
            if _str(s.get("url")) or _str(s.get("title"))
        )
        if sites:
            events.append(SitesFound(round_id, sites))
        if status == ROUND_FINISHED:
            events.append(RoundFinished(round_id))

    listed = _list(deep.get("references"))
    refs = tuple(
        Reference(
            index=_int(r.get("index_number")) or position,
            title=_str(r.get("title")) or _str(r.get("url")),
            url=_str(r.get("url")),
            description=_str(r.get("description")),
        )
        for position, r in enumerate(map(_obj, listed), start=1)
        if _str(r.get("url")) or _str(r.get("title"))
    )
    if refs:
        events.append(References(refs))
    return events


def _thinking_events(output: Mapping[str, Any]) -> list[Event]:
    events: list[Event] = []
    choices = _list(output.get("choices"))
    if not choices:
        text = _str(output.get("text"))  # result_format "text"
        if text:
            events.append(TextDelta(ANSWER, text))
        reason = _str(output.get("finish_reason"))
        if reason and reason != "null":
            events.append(Finished(ANSWER))
        return events
    choice = _obj(choices[0])
    message = _obj(choice.get("message"))
    reasoning = _str(message.get("reasoning_content"))
    if reasoning:
        events.append(ReasoningDelta(reasoning))
    content = message.get("content")
    if isinstance(content, list):  # multimodal models answer with [{"text": ...}]
        content = "".join(_str(_obj(part).get("text")) for part in content)
    text = _str(content)
    if text:
        events.append(TextDelta(ANSWER, text))
    reason = _str(choice.get("finish_reason"))
    if reason and reason != "null":
        events.append(Finished(ANSWER))
    return events


class UsagePeak:
    """The highest cumulative figures one stream has reported so far, field by field.

    Usage frames are cumulative, but a stream may send a lower figure after a higher one (a
    late frame, a reset counter); the ledger must never record less than was reported."""

    def __init__(self) -> None:
        self._peak: Usage | None = None

    def __call__(self, event: Event) -> Event:
        """`event`, or for a Usage the running maximum including it."""
        if not isinstance(event, Usage):
            return event
        peak = self._peak
        if peak is not None:
            event = Usage(
                input_tokens=max(peak.input_tokens, event.input_tokens),
                output_tokens=max(peak.output_tokens, event.output_tokens),
                reasoning_tokens=max(peak.reasoning_tokens, event.reasoning_tokens),
                request_id=event.request_id or peak.request_id,
            )
        self._peak = event
        return event


def _usage(frame: Mapping[str, Any]) -> Usage | None:
    usage = frame.get("usage")
    if not isinstance(usage, Mapping) or not usage:
        return None
    details = _obj(usage.get("output_tokens_details"))
    return Usage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        reasoning_tokens=_int(details.get("reasoning_tokens")),
        request_id=_str(frame.get("request_id")),
    )
