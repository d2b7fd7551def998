"""Quick thinking answers (/ask) and follow-up questions in a finished research thread."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final, Protocol

from bot import thinking
from bot.budget import BudgetGuard
from bot.context import fit
from bot.conversation import Conversation, ConversationKey
from bot.flags import AskOptions
from bot.i18n import N_, Text, say
from bot.metering import MeteredCall, UsageMeter
from bot.ports import Answers, Conversations, UsageLedger
from bot.qwen.client import ModelClient
from bot.qwen.errors import user_sentence
from bot.qwen.events import ANSWER, StreamError, TextDelta, Usage
from bot.records import ASK, FOLLOW_UP, StoredAnswer, UsageRecord
from bot.usage import Pricing
from bot.workspaces import KeyedCall, same_call

logger = logging.getLogger(__name__)

# Leaves room for the "research this deeper" wording within a research message's length limit.
MAX_FOLLOW_UP_CHARS: Final = 7000
MAX_LISTED_SOURCES: Final = 100

FOLLOW_UP_SYSTEM: Final = (
    "You answer follow-up questions in a Slack thread about a research report. The "
    "conversation so far holds the research topic, a clarifying exchange, the report and "
    "earlier follow-ups; older parts may have been trimmed. Base the answer on the report "
    "where you can and cite its numbered sources like [2]; say so when the report does not "
    "cover the question. Answer in the language of the question, concisely, in Markdown."
)
DEEPER_REQUEST: Final = (
    "Please research this further, building on the report and the discussion above: {question}"
)
TOO_LONG: Final = say(
    N_("That question is too long for me: please keep it under {limit} characters."),
    limit=MAX_FOLLOW_UP_CHARS,
)
NOT_NOW: Final = N_(
    "I can start another research round once this thread's current research has finished."
)


class AnswerSink(Protocol):
    """Where one answer goes: a command's response URL, or a research thread."""

    async def thinking(self, question: str, model: str, asker: str = "") -> None:
        """Show that the model is working (for `asker`, who gets the answer); best effort,
        never raises."""
        ...

    async def partial(self, text: str) -> None:
        """More of the answer as the model writes it (a sink may stream it); best effort,
        never raises. `deliver` still gets the whole answer and posts whatever this did not."""
        ...

    async def deliver(self, answer: Answer) -> None:
        """The whole answer, split or uploaded as needed; never silently shortened."""
        ...

    async def notice(self, sentence: Text) -> None:
        """A plain sentence (a refusal or a failure), seen by the asker in their language."""
        ...


AnswerSinkFactory = Callable[[ConversationKey], AnswerSink]

RoundStarter = Callable[[ConversationKey, str, Sequence[Mapping[str, Any]], str], Awaitable[bool]]
"""Starts a deep-research round in a finished thread: (key, user_id, messages to add to the
history, the request). False when the thread is not in a state to start one."""


@dataclass(frozen=True, slots=True)
class AnswerConfig:
    model: str  # the thinking model when /ask names none, and for follow-ups
    thinking_budget: int | None = None


@dataclass(frozen=True, slots=True)
class AskRequest:
    team_id: str
    user_id: str
    channel_id: str
    options: AskOptions


@dataclass(frozen=True, slots=True)
class AnswerStats:
    input_tokens: int
    output_tokens: int  # includes the reasoning tokens
    reasoning_tokens: int
    cost_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class Answer:
    id: str  # names the stored answer in button values
    asker: str
    question: str
    text: str
    model: str
    thinking: bool
    has_reasoning: bool
    stats: AnswerStats
    notes: tuple[Text, ...] = ()
    follow_up: bool = False  # answers in a research thread offer another research round


class AnswerService:
    def __init__(
        self,
        *,
        conversations: Conversations,
        answers: Answers,
        ledger: UsageLedger,
        meter: UsageMeter,
        model: ModelClient,
        pricing: Pricing,
        config: AnswerConfig,
        budget: BudgetGuard,
        thread_sinks: AnswerSinkFactory,
        start_round: RoundStarter,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        keyed: KeyedCall | None = None,
    ) -> None:
        self._keyed = keyed or same_call
        self._conversations = conversations
        self._answers = answers
        self._ledger = ledger
        self._meter = meter
        self._model = model
        self._pricing = pricing
        self._config = config
        self._budget = budget
        self._thread_sinks = thread_sinks
        self._start_round = start_round
        self._new_id = new_id

    async def ask(self, request: AskRequest, sink: AnswerSink) -> None:
        refusal = await self._budget.refusal(request.team_id)
        if refusal is not None:
            await sink.notice(refusal)
            return
        options = request.options
        model = options.model or self._config.model
        plan = thinking.plan(
            model,
            [{"role": "user", "content": options.question}],
            fast=options.fast,
            budget=options.budget,
            default_budget=self._config.thinking_budget,
        )
        await sink.thinking(options.question, model, request.user_id)
        await self._answer(
            StoredAnswer(
                id=self._new_id(),
                team_id=request.team_id,
                user_id=request.user_id,
                channel_id=request.channel_id,
                thread_ts="",
                kind=ASK,
                model=model,
                question=options.question,
                answer="",
            ),
            plan,
            sink,
        )

    async def follow_up(self, conversation: Conversation, user_id: str, text: str) -> None:
        """A question in a thread whose report is done (ResearchService's follow-up hook)."""
        key = conversation.key
        sink = self._thread_sinks(key)
        question = text.strip()
        if not question:
            return
        if len(question) > MAX_FOLLOW_UP_CHARS:
            await sink.notice(TOO_LONG)
            return
        refusal = await self._budget.refusal(key.team_id)
        if refusal is not None:
            await sink.notice(refusal)
            return
        model = self._config.model
        # Follow-ups answered since the last report are not in the conversation's history yet.
        earlier = await self._answers.follow_ups(key, since=conversation.updated_at)
        messages = fit(
            [*conversation.history, *exchanges(earlier)],
            {"role": "user", "content": question},
            thinking.max_input_tokens(model),
            system={"role": "system", "content": follow_up_system(conversation.references)},
        )
        plan = thinking.plan(model, messages, default_budget=self._config.thinking_budget)
        await sink.thinking(question, model, user_id)
        await self._answer(
            StoredAnswer(
                id=self._new_id(),
                team_id=key.team_id,
                user_id=user_id,
                channel_id=key.channel_id,
                thread_ts=key.thread_ts,
                kind=FOLLOW_UP,
                model=model,
                question=question,
                answer="",
            ),
            plan,
            sink,
        )

    async def research_deeper(self, team_id: str, answer_id: str, user_id: str) -> None:
        """The "Research this deeper" button of a follow-up answer."""
        stored = await self._answers.get(team_id, answer_id)
        if stored is None or stored.kind != FOLLOW_UP:
            return
        key = ConversationKey(team_id, stored.channel_id, stored.thread_ts)
        sink = self._thread_sinks(key)
        refusal = await self._budget.refusal(team_id)
        if refusal is not None:
            await sink.notice(refusal)
            return
        conversation = await self._conversations.get(key)
        if conversation is None:
            return
        earlier = await self._answers.follow_ups(key, since=conversation.updated_at)
        request = DEEPER_REQUEST.format(question=stored.question)
        if not await self._start_round(key, user_id, exchanges(earlier), request):
            await sink.notice(NOT_NOW)

    async def stored(self, team_id: str, answer_id: str) -> StoredAnswer | None:
        return await self._answers.get(team_id, answer_id)

    # --- one model call ------------------------------------------------------------------

    async def _answer(self, draft: StoredAnswer, plan: thinking.Plan, sink: AnswerSink) -> None:
        result = thinking.Result()
        opened = await self._meter.open(
            UsageRecord(
                team_id=draft.team_id,
                user_id=draft.user_id,
                channel_id=draft.channel_id,
                thread_ts=draft.thread_ts,
                model=draft.model,
                kind="answer",
                input_tokens=0,
                output_tokens=0,
            ),
            lambda u: self._cost(draft.model, u, thinking=u.reasoning_tokens > 0),
        )
        if opened is None:
            await sink.notice(await self._budget.refusal_held(draft.team_id))
            return
        call = opened
        try:
            await call.sending(plan.call.messages)
            async for event in self._model.stream(await self._keyed(draft.team_id, plan.call)):
                result.apply(event)
                if isinstance(event, Usage):
                    call.see(event)
                elif isinstance(event, TextDelta) and event.phase == ANSWER and event.text:
                    await sink.partial(event.text)
        except asyncio.CancelledError:
            await self._record(draft, result, call)  # the tokens were spent even so
            raise
        except Exception:
            logger.exception("answer %s failed", draft.id)
            result.error = result.error or thinking.STREAM_CUT
        finally:
            call.close()
        stats = await self._record(draft, result, call)
        error = result.outcome
        if error is not None:
            _log_model_error(draft, error)
            await sink.notice(user_sentence(error))
            return
        stored = await self._answers.add(
            replace(draft, answer=result.answer, reasoning=result.reasoning)
        )
        await sink.deliver(
            Answer(
                id=stored.id,
                asker=stored.user_id,
                question=stored.question,
                text=stored.answer,
                model=stored.model,
                thinking=plan.thinking,
                has_reasoning=bool(stored.reasoning),
                stats=stats,
                notes=plan.notes,
                follow_up=stored.kind == FOLLOW_UP,
            )
        )

    def _cost(self, model: str, usage: Usage, *, thinking: bool) -> Decimal | None:
        return self._pricing.cost(model, usage.input_tokens, usage.output_tokens, thinking=thinking)

    async def _record(
        self, draft: StoredAnswer, result: thinking.Result, call: MeteredCall
    ) -> AnswerStats:
        if call.usage is None:
            return AnswerStats(0, 0, 0, None)
        usage = call.usage
        cost = self._cost(
            draft.model, usage, thinking=usage.reasoning_tokens > 0 or bool(result.reasoning)
        )
        try:
            await self._ledger.record([replace(call.record, cost_usd=cost)])
        except Exception:  # the answer still reaches the person; the gap is in the log
            logger.exception("could not record the usage of answer %s", draft.id)
        return AnswerStats(usage.input_tokens, usage.output_tokens, usage.reasoning_tokens, cost)


def exchanges(answers: Sequence[StoredAnswer]) -> list[dict[str, Any]]:
    """Follow-up answers as the user/assistant turns they were."""
    turns: list[dict[str, Any]] = []
    for a in answers:
        turns.append({"role": "user", "content": a.question})
        turns.append({"role": "assistant", "content": a.answer})
    return turns


def follow_up_system(references: Sequence[Mapping[str, Any]]) -> str:
    lines = [FOLLOW_UP_SYSTEM]
    listed = [r for r in references if r.get("url") or r.get("title")][:MAX_LISTED_SOURCES]
    if listed:
        lines += ["", "The report's numbered sources:"]
        for position, ref in enumerate(listed, start=1):
            index = ref.get("index") or position
            lines.append(f"[{index}] {ref.get('title') or ref.get('url')} <{ref.get('url', '')}>")
    return "\n".join(lines)


def _log_model_error(draft: StoredAnswer, error: StreamError) -> None:
    logger.error(
        "answer %s (%s, %s) failed: code=%s status=%s request_id=%s message=%s",
        draft.id,
        draft.kind,
        draft.model,
        error.code,
        error.status,
        error.request_id,
        error.message,
    )
