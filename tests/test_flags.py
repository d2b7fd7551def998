"""`/ask` flag parsing."""

from __future__ import annotations

import pytest

from bot.flags import ASK_USAGE, AskOptions, FlagError, parse_ask


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("what is 2+2?", AskOptions("what is 2+2?")),
        ("  padded question  ", AskOptions("padded question")),
        ("--fast why", AskOptions("why", fast=True)),
        ("--private --fast why", AskOptions("why", fast=True, private=True)),
        ("--model qwq-plus why", AskOptions("why", model="qwq-plus")),
        ("--model=QwQ-Plus why", AskOptions("why", model="qwq-plus")),
        ("--budget 500 why", AskOptions("why", budget=500)),
        ("--budget=1,000 why", AskOptions("why", budget=1000)),
        ("--FAST why", AskOptions("why", fast=True)),
        # Slack clients may turn "--" into a dash.
        ("\u2014private why", AskOptions("why", private=True)),
        ("\u2013fast why", AskOptions("why", fast=True)),
        # Flags only lead; later dashes belong to the question.
        ("why is --fast a flag?", AskOptions("why is --fast a flag?")),
        ("--private -- --fast is my question", AskOptions("--fast is my question", private=True)),
        ("-1 times -1?", AskOptions("-1 times -1?")),
        ("--private\nline one\nline two", AskOptions("line one\nline two", private=True)),
    ],
)
def test_parses(text: str, expected: AskOptions) -> None:
    assert parse_ask(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "Please add a question"),
        ("   ", "Please add a question"),
        ("--fast", "Please add a question"),
        ("--private --", "Please add a question"),
        ("--verbose why", "I don't know the option `--verbose`"),
        ("--fast=yes why", "I don't know the option `--fast=yes`"),
        ("--model", "`--model` needs a value"),
        ("--model= why", "`--model` needs a value"),
        ("--budget lots why", "`--budget` needs a whole number"),
        ("--budget 0 why", "`--budget` needs a whole number"),
        ("--budget -5 why", "`--budget` needs a whole number"),
        ("--budget 99999999 why", "`--budget` needs a whole number"),
        ("--model bad/name why", "`--model` needs a model name"),
        ("--model qwen-deep-research why", "/research"),
        ("--fast --budget 100 why", "`--fast` turns thinking off"),
        ("x" * 8001, "under 8,000 characters"),
    ],
)
def test_rejects_with_a_short_sentence_and_the_usage(text: str, says: str) -> None:
    with pytest.raises(FlagError) as caught:
        parse_ask(text)
    assert says in str(caught.value)
    usage = str(caught.value.usage)
    assert usage.startswith(str(caught.value)) and usage.endswith(ASK_USAGE)
    assert "Traceback" not in usage
