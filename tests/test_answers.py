"""AnswerService with a scripted model and a recording sink (the e2e tests cover Slack)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.answers import (
    TOO_LONG,
    Answer,
    AnswerConfig,
    AnswerService,
    AnswerSink,
    AskRequest,
)
from bot.budget import BudgetGuard
from bot.context import message_tokens
from bot.conversation import Conversation, ConversationKey, State
from bot.flags import AskOptions
from bot.i18n import Text
from bot.metering import UsageMeter
from bot.qwen.client import ModelCall
from bot.qwen.events import Event, Finished, ReasoningDelta, TextDelta, Usage
from bot.thinking import max_input_tokens
from bot.usage import Price, Pricing
from storage import Storage

KEY = ConversationKey("T1", "C1", "1.000001")


class ScriptedModel:
    def __init__(self) -> None:
        self.calls: list[ModelCall] = []
        self.scripts: list[Iterable[Event] | Exception] = []

    async def stream(self, call: ModelCall) -> AsyncIterator[Event]:
        self.calls.append(call)
        script = self.scripts.pop(0)
        if isinstance(script, Exception):
            raise script
        for event in script:
            yield event


@dataclass
class RecordingSink:
    events: list[tuple[str, Any]] = field(default_factory=list)

    async def thinking(self, question: str, model: str, asker: str = "") -> None:
        self.events.append(("thinking", model))

    async def partial(self, text: str) -> None:
        self.events.append(("partial", text))

    async def deliver(self, answer: Answer) -> None:
        self.events.append(("deliver", answer))

    async def notice(self, sentence: Text) -> None:
        self.events.append(("notice", str(sentence)))  # as English reads it


def answered(text: str = "Answer.", reasoning: str = "Hmm.") -> list[Event]:
    return [ReasoningDelta(reasoning), TextDelta("answer", text), Usage(10, 20, 5), Finished("x")]


@dataclass
class World:
    store: Storage
    model: ScriptedModel
    sink: RecordingSink
    service: AnswerService
    rounds: list[tuple[Any, ...]]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}")
    model = ScriptedModel()
    sink = RecordingSink()
    rounds: list[tuple[Any, ...]] = []

    async def start_round(
        key: ConversationKey, user: str, messages: Sequence[Mapping[str, Any]], request: str
    ) -> bool:
        rounds.append((key, user, list(messages), request))
        return True

    def sinks(key: ConversationKey) -> AnswerSink:
        return sink

    service = AnswerService(
        conversations=store.conversations,
        answers=store.answers,
        ledger=store.ledger,
        meter=UsageMeter(),
        model=model,
        pricing=Pricing({"qwq-plus": Price(0.001, 0.002)}),
        config=AnswerConfig(model="qwen-plus", thinking_budget=None),
        budget=BudgetGuard(store.ledger, 1000),
        thread_sinks=sinks,
        start_round=start_round,
    )
    try:
        yield World(store, model, sink, service, rounds)
    finally:
        await store.close()


def ask(question: str = "why?", **kw: Any) -> AskRequest:
    return AskRequest("T1", "UUSER", "C1", AskOptions(question, **kw))


async def test_ask_records_usage_with_cost_and_delivers(world: World) -> None:
    world.model.scripts.append(answered())
    await world.service.ask(ask(model="qwq-plus"), world.sink)
    # The answer is handed over as it is written, then whole.
    assert [e[0] for e in world.sink.events] == ["thinking", "partial", "deliver"]
    assert world.sink.events[1] == ("partial", "Answer.")
    delivered: Answer = world.sink.events[2][1]
    assert (delivered.text, delivered.has_reasoning, delivered.model) == (
        "Answer.",
        True,
        "qwq-plus",
    )
    assert delivered.stats.cost_usd == Decimal("0.00005")  # (10 * 0.001 + 20 * 0.002) / 1000
    [record] = await world.store.ledger.records("T1")
    assert (record.kind, record.reasoning_tokens, record.cost_usd) == (
        "answer",
        5,
        delivered.stats.cost_usd,
    )
    stored = await world.service.stored("T1", delivered.id)
    assert stored is not None and stored.reasoning == "Hmm."


async def test_a_failing_stream_is_a_plain_sentence(world: World) -> None:
    world.model.scripts.append(RuntimeError("socket exploded: secret detail"))
    await world.service.ask(ask(), world.sink)
    kind, sentence = world.sink.events[-1]
    assert kind == "notice" and "secret" not in sentence and "lost its connection" in sentence


async def test_over_budget_no_model_call(world: World) -> None:
    world.model.scripts.append([Usage(600, 600, 0), TextDelta("answer", "ok"), Finished("x")])
    await world.service.ask(ask(), world.sink)
    world.sink.events.clear()
    await world.service.ask(ask(), world.sink)
    [(kind, sentence)] = world.sink.events
    assert kind == "notice" and "1,200 of its 1,000 tokens" in sentence
    assert len(world.model.calls) == 1


async def test_follow_up_context_is_trimmed_to_the_window_never_the_question(
    world: World,
) -> None:
    report = "# Report\n\n" + "Long finding sentence here. " * 40_000  # ~1.1M characters
    conversation = Conversation(
        KEY,
        "UUSER",
        State.DONE,
        "qwen-deep-research",
        (
            {"role": "user", "content": "topic"},
            {"role": "assistant", "content": "which aspect?"},
            {"role": "user", "content": "that one"},
            {"role": "assistant", "content": report},
        ),
        report=report,
        references=({"index": 1, "title": "Source", "url": "https://example.org/s"},),
    )
    world.model.scripts.append(answered())
    await world.service.follow_up(conversation, "UBEN", "  and the costs?  ")
    [call] = world.model.calls
    messages = list(call.messages)
    assert messages[0]["role"] == "system" and "https://example.org/s" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "and the costs?"}
    assert [m["role"] for m in messages] == ["system", "assistant", "user"]
    assert messages[1]["content"].endswith(report[-200:])  # the newest part of the report
    assert sum(message_tokens(m) for m in messages) <= max_input_tokens("qwen-plus")
    delivered: Answer = world.sink.events[-1][1]
    assert delivered.follow_up and delivered.asker == "UBEN"


async def test_follow_up_too_long_or_empty(world: World) -> None:
    conversation = Conversation(KEY, "UUSER", State.DONE, "qwen-deep-research")
    await world.service.follow_up(conversation, "UBEN", "   ")
    await world.service.follow_up(conversation, "UBEN", "x" * 7001)
    assert world.sink.events == [("notice", str(TOO_LONG))]
    assert world.model.calls == []


async def test_research_deeper_passes_the_thread_and_the_question(world: World) -> None:
    conversation = Conversation(KEY, "UUSER", State.DONE, "qwen-deep-research", updated_at=1.0)
    await world.store.conversations.create(conversation)
    world.model.scripts.append(answered("Modest."))
    await world.service.follow_up(conversation, "UBEN", "costs?")
    delivered: Answer = world.sink.events[-1][1]
    await world.service.research_deeper("T2", delivered.id, "UBEN")  # another workspace
    assert world.rounds == []
    await world.service.research_deeper("T1", delivered.id, "UBEN")
    [(key, user, messages, request)] = world.rounds
    assert (key, user) == (KEY, "UBEN")
    assert messages == [
        {"role": "user", "content": "costs?"},
        {"role": "assistant", "content": "Modest."},
    ]
    assert request.endswith("costs?")
