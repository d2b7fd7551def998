"""Research conversations: the thread state machine and the research run."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from bot import metrics
from bot.background import spawn
from bot.conversation import (
    QUESTION,
    REPORT,
    Conversation,
    ConversationKey,
    Owed,
    StaleConversation,
    State,
)
from bot.i18n import N_, Ordinal, Sentence, Span, Text, say
from bot.images import Image, user_content
from bot.live_progress import LiveProgress
from bot.logs import bind
from bot.metering import MeteredCall, UsageMeter
from bot.pacing import WorkspacePacer
from bot.ports import Conversations, KeptQuestions, UsageLedger
from bot.progress import ProgressView, Stage
from bot.qwen.client import ModelCall, ModelClient, research_call
from bot.qwen.errors import user_sentence
from bot.qwen.events import (
    ANSWER,
    Finished,
    Reference,
    References,
    StreamError,
    TextDelta,
    Usage,
)
from bot.records import UsageRecord
from bot.report import Report, RunStats
from bot.research_options import (
    OptionError,
    ResearchOptions,
    WorkspaceResearch,
    parse_research_options,
    supports_research_tools,
)
from bot.sink import MESSAGE, DeliveryFailed, SinkFactory, ThreadSink
from bot.tracing import traced
from bot.usage import Pricing
from bot.workspaces import KeyedCall, same_call

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS: Final = 8000

HOW_TO: Final = N_(
    "Mention me with a topic to start a research conversation, for example: "
    "`@Qwen Deep Research the use of AI in education`. I'll ask one clarifying question "
    "in the thread, then research and post a report."
)
TOO_LONG: Final = say(
    N_("That message is too long for me: please keep it under {limit} characters."),
    limit=MAX_MESSAGE_CHARS,
)
STILL_RUNNING: Final = N_(
    "Research is still running in this thread. Please wait for the report, or press Stop on "
    "the progress message to end it."
)
KEPT_FOR_LATER: Final = N_(
    "Research is still running in this thread. I'll answer this once the report is in."
)
NOT_FINISHED: Final = N_("The last run in this thread did not finish. Press Retry to run it again.")
NOT_FINISHED_KEPT: Final = N_(
    "The last run in this thread did not finish. Press Retry to run it again; I'll answer "
    "your question once its report is in."
)
STREAM_CUT: Final = StreamError(code="ConnectionError", message="stream ended before finishing")


FollowUpHandler = Callable[[Conversation, str, str], Awaitable[None]]
"""Answers a question asked in a thread whose report is done: (conversation, user_id, text)."""


BudgetCheck = Callable[[str], Awaitable[Text | None]]
"""A sentence refusing new work for a workspace over its budget, or None: (team_id)."""


WorkspaceSettingsLookup = Callable[[str], Awaitable[WorkspaceResearch]]
"""A workspace's research settings, looked up when a conversation starts and for each call."""


class StopReason(StrEnum):
    USER = "user"  # Stop pressed in this process
    SHUTDOWN = "shutdown"  # this process is stopping
    ELSEWHERE = "elsewhere"  # stopped, or taken over, through another process
    TOO_LONG = "too_long"  # RUN_MAX_SECONDS passed
    SILENT = "silent"  # no frame for STREAM_IDLE_SECONDS


# How each kind of stop counts in the metrics.
_STOP_OUTCOMES: Final = {
    StopReason.USER: "stopped",
    StopReason.SHUTDOWN: "interrupted",
    StopReason.ELSEWHERE: "handed_over",
    StopReason.TOO_LONG: "failed",
    StopReason.SILENT: "failed",
}


@dataclass(frozen=True, slots=True)
class ResearchConfig:
    model: str
    progress_interval: float
    process_id: str = "local"  # owns the runs this process streams
    auto_resume: bool = True  # a run cut by a shutdown or crash restarts once by itself
    run_max_seconds: float = 45 * 60
    stream_idle_seconds: float = 10 * 60
    user_max_running: int = 2  # research runs at once per person, fleet wide
    workspace_max_running: int = 10  # and per workspace; more wait in the queue


@dataclass(slots=True)
class _CallResult:
    references: tuple[Reference, ...] = ()
    usage: Usage | None = None
    error: StreamError | None = None
    finished: bool = False
    streamed: bool = False  # anything came before an error (so it is not a mere refusal)
    # The answer's pieces, joined once when read: a report is thousands of pieces.
    parts: list[str] = field(default_factory=list)

    def apply(self, event: object) -> None:
        # Called for every event of a stream: exact type checks, the most frequent first.
        if type(event) is StreamError:
            self.error = event
            return
        self.streamed = True
        if type(event) is TextDelta:
            if event.phase == ANSWER:
                self.parts.append(event.text)
        elif type(event) is Usage:
            self.usage = event
        elif type(event) is References:
            self.references = event.items  # the last non-empty list wins
        elif type(event) is Finished:
            self.finished = True

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    @property
    def outcome(self) -> StreamError | None:
        if self.error is not None:
            return self.error
        return None if self.finished else STREAM_CUT


class Deferred(Exception):
    """The process is stopping: a recorded request is left in the inbox, untouched, for the
    process that takes over (rather than telling its user to try again)."""


class ResearchService:
    def __init__(
        self,
        *,
        conversations: Conversations,
        ledger: UsageLedger,
        kept: KeptQuestions,
        meter: UsageMeter,
        model: ModelClient,
        sinks: SinkFactory,
        pricing: Pricing,
        config: ResearchConfig,
        clock: Callable[[], float] = time.monotonic,
        follow_up: FollowUpHandler | None = None,
        pacer: WorkspacePacer | None = None,
        budget: BudgetCheck | None = None,
        budget_held: Callable[[str], Awaitable[Text]] | None = None,
        workspace_settings: WorkspaceSettingsLookup | None = None,
        keyed: KeyedCall | None = None,
    ) -> None:
        self._keyed = keyed or same_call
        self._budget = budget
        self._budget_held = budget_held
        self._workspace_settings = workspace_settings
        self._follow_up = follow_up
        self._pacer = pacer or WorkspacePacer()
        self._store = conversations
        self._ledger = ledger
        self._kept = kept
        self._meter = meter
        self._model = model
        self._sinks = sinks
        self._pricing = pricing
        self._config = config
        self._clock = clock
        self._locks: weakref.WeakValueDictionary[ConversationKey, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._runs: dict[ConversationKey, asyncio.Task[None]] = {}
        self._stop_reasons: dict[ConversationKey, StopReason] = {}
        # When each local run started, and when its stream last said anything (monotonic).
        self._started: dict[ConversationKey, float] = {}
        self._throttled: dict[ConversationKey, int] = {}  # Throttling answers in a row
        self._streaming: set[ConversationKey] = set()  # runs between their start and end
        self._last_frame: dict[ConversationKey, float] = {}
        # Clarifying steps run inside Slack's listener tasks; shutdown must reach them too.
        self._steps: set[asyncio.Task[Any]] = set()
        # Last edits of progress messages, waiting for room in their workspace.
        self._closing: set[asyncio.Task[None]] = set()
        # Kept questions this process took on (ids are never reused; a few bytes each).
        self._answering: set[int] = set()
        self._accepting = True

    # --- entry points from Slack ---------------------------------------------------------

    async def mention(
        self,
        key: ConversationKey,
        user_id: str,
        text: str,
        *,
        ts: str = "",
        images: Sequence[Image] = (),
        refusals: Sequence[Text] = (),
        options: ResearchOptions | None = None,
    ) -> None:
        """The bot was mentioned in message `ts`: start a conversation, or continue the
        thread's one.

        `refusals` are sentences about attachments left out; the request goes ahead only if
        something is left to research. `options`: chosen elsewhere (a form), so `text` is
        the topic as written, with no options in it to read."""
        sink = self._sinks(key)
        async with self._lock(key):
            existing = await self._store.get(key)
        if existing is not None:
            if not existing.handled(ts) and ts != key.thread_ts:
                await self.reply(key, user_id, text, ts=ts, images=images, refusals=refusals)
            return
        for sentence in refusals:
            await sink.post_notice(sentence)
        if options is None:
            try:
                options, text = parse_research_options(text)
            except OptionError as exc:
                await sink.post_notice(exc.sentence)
                return
        if not text.strip() and not images:
            if not refusals:
                await sink.post_notice(HOW_TO)
            return
        if len(text) > MAX_MESSAGE_CHARS:
            await sink.post_notice(TOO_LONG)
            return
        if not await self._may_start(key, sink, recorded=True):
            return
        workspace = await self._workspace(key.team_id)
        options = options.over(workspace.defaults)
        async with self._lock(key):
            if await self._store.get(key) is not None:
                return
            conversation = Conversation(
                key=key,
                user_id=user_id,
                state=State.AWAITING_CLARIFICATION,
                model=options.model or self._config.model,
                history=({"role": "user", "content": user_content(text, images)},),
                options=options,
                applied=(ts,) if ts else (),
            )
            if options.asks_first:
                await self._clarify(conversation, sink, exists=False)
            else:
                created = await self._store.create(
                    conversation.to(State.QUEUED, queued_at=time.time())
                )
                if created is not None:
                    await self._after_queued(created)

    async def reply(
        self,
        key: ConversationKey,
        user_id: str,
        text: str,
        *,
        ts: str = "",
        images: Sequence[Image] = (),
        refusals: Sequence[Text] = (),
    ) -> None:
        """A human replied in a thread (message `ts`); only threads with a conversation get
        here. A message applied before (an event handled again after a crash) is ignored."""
        try:
            await self._reply(key, user_id, text, ts, images, refusals)
        except StaleConversation:
            # Another process changed the thread meanwhile (a second reply won the race):
            # act on what it is now, once.
            await self._reply(key, user_id, text, ts, images, ())

    async def _reply(
        self,
        key: ConversationKey,
        user_id: str,
        text: str,
        ts: str,
        images: Sequence[Image],
        refusals: Sequence[Text],
    ) -> None:
        async with self._lock(key):
            conversation = await self._store.get(key)
            if conversation is None or conversation.handled(ts):
                return
            sink = self._sinks(key)
            for sentence in refusals:
                await sink.post_notice(sentence)
            if conversation.state is State.AWAITING_CLARIFICATION:
                if not text.strip() and not images:
                    return
                if len(text) > MAX_MESSAGE_CHARS:
                    await sink.post_notice(TOO_LONG)
                    return
                if not await self._may_start(key, sink, recorded=True):
                    return
                answer = {"role": "user", "content": user_content(text, images)}
                await self._begin_research(
                    replace(
                        conversation,
                        history=(*conversation.history, answer),
                        applied=conversation.applying(ts),
                    )
                )
            elif conversation.state in (State.RESEARCHING, State.QUEUED):
                if self._follow_up is not None and text.strip():
                    # Kept in the database: whichever process finishes the run answers it.
                    if await self._kept.keep(key, user_id, text, ts):
                        await sink.post_notice(KEPT_FOR_LATER)
                else:
                    await sink.post_notice(STILL_RUNNING)
            elif conversation.state in (State.FAILED, State.CANCELLED, State.INTERRUPTED):
                if self._follow_up is not None and text.strip():
                    # A question about a run that did not finish: answered after the report
                    # of the run Retry starts (kept like one asked during a run).
                    if await self._kept.keep(key, user_id, text, ts):
                        await sink.post_notice(NOT_FINISHED_KEPT, retry=True)
                else:
                    await sink.post_notice(NOT_FINISHED, retry=True)
        if conversation.state is State.DONE and self._follow_up is not None and text.strip():
            if ts and await self._kept.was_kept(key, ts):
                return  # asked during the run (this is its event again): answered as kept
            # Outside the lock: a follow-up answer must not hold up the thread's state changes.
            await self._follow_up(conversation, user_id, text)

    async def _may_start(
        self, key: ConversationKey, sink: ThreadSink, *, recorded: bool = False
    ) -> bool:
        """New model work is refused while shutting down or over the workspace's budget.
        A `recorded` request (an inbox event) is left for the process that takes over."""
        if not self._accepting:
            if recorded:
                raise Deferred
            await sink.post_notice(_RESTARTING)
            return False
        if self._budget is not None:
            refusal = await self._budget(key.team_id)
            if refusal:
                await sink.post_notice(refusal)
                return False
        return True

    async def retry(self, key: ConversationKey) -> None:
        """Re-run the step that did not finish, with the same history."""
        try:
            await self._retry(key)
        except StaleConversation:
            logger.info("retry in %s lost to a change made elsewhere", key)  # a second press

    async def _retry(self, key: ConversationKey) -> None:
        async with self._lock(key):
            conversation = await self._store.get(key)
            if conversation is None or conversation.state not in (
                State.FAILED,
                State.CANCELLED,
                State.INTERRUPTED,
            ):
                return  # a second press, or nothing to retry
            sink = self._sinks(key)
            if not await self._may_start(key, sink):
                return
            if len(conversation.history) <= 1 and conversation.options.asks_first:
                await self._clarify(conversation, sink, exists=True)
            else:
                await self._begin_research(conversation)

    async def research_again(
        self,
        key: ConversationKey,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        request: str,
    ) -> bool:
        """Another research round in a finished thread, with everything said since the report
        (`messages`) and `request` as the new question. False if the thread is not done."""
        try:
            return await self._research_again(key, user_id, messages, request)
        except StaleConversation:
            return False  # a round started elsewhere meanwhile

    async def _research_again(
        self,
        key: ConversationKey,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        request: str,
    ) -> bool:
        async with self._lock(key):
            conversation = await self._store.get(key)
            if conversation is None or conversation.state is not State.DONE:
                return False  # a second press, or a round already running
            if not await self._may_start(key, self._sinks(key)):
                return True
            history = (
                *conversation.history,
                *(dict(m) for m in messages),
                {"role": "user", "content": request},
            )
            await self._begin_research(
                replace(
                    conversation,
                    user_id=user_id,  # the round is billed to whoever asked for it
                    history=history,
                    options=replace(conversation.options, clarify=False),
                )
            )
        return True

    async def stop(self, key: ConversationKey) -> bool:
        """Stop the thread's run at once, wherever it streams; False if nothing was running."""
        task = self._runs.get(key)
        if task is not None and not task.done():
            self._stop_reasons[key] = StopReason.USER
            task.cancel()
            await asyncio.wait({task}, timeout=10)
            return True
        # Streamed by another process: record the stop; that process sees it within a tick
        # (watch_runs), ends its stream and records the usage.
        async with self._lock(key):
            conversation = await self._store.get(key)
            if conversation is None or conversation.state not in (
                State.RESEARCHING,
                State.QUEUED,
            ):
                return False
            try:
                await self._store.save(conversation.to(State.CANCELLED, owner=None))
            except StaleConversation:
                return False  # it changed meanwhile: finished, or stopped by someone else
        await self._sinks(key).post_notice(_STOPPED, retry=True)
        return True

    @property
    def accepting(self) -> bool:
        """False once shutting down: new events are recorded and left for the next process."""
        return self._accepting

    def is_running(self, key: ConversationKey) -> bool:
        task = self._runs.get(key)
        return task is not None and not task.done()

    async def give_up(self, key: ConversationKey) -> None:
        """A request in `key` was cut by a stopping process too many times to try again."""
        await self._sinks(key).post_notice(_GAVE_UP)

    async def adopt(self, conversation: Conversation) -> None:
        """A run whose process stopped or died, now owned by this one: run it again once, or
        mark it interrupted and offer Retry."""
        key = conversation.key
        sink = self._sinks(key)
        if conversation.progress_ts:
            # Its progress message would show a live run with a Stop button forever.
            try:
                await sink.show_progress(
                    ProgressView(Stage.INTERRUPTED, 0, 0, "", 0, 0), conversation.progress_ts
                )
            except Exception:
                logger.warning("could not retire the progress message of %s", key, exc_info=True)
        async with self._lock(key):
            if self._config.auto_resume and self._accepting and conversation.resumes < 1:
                resumed = await self._store.save(
                    replace(conversation, resumes=conversation.resumes + 1, progress_ts=None)
                )
                await sink.post_notice(_RESUMING)
                self._start_run(resumed)
                return
            await self._store.save(conversation.to(State.INTERRUPTED, owner=None))
        await sink.post_notice(_INTERRUPTED, retry=True)

    async def watch_runs(self) -> None:
        """End local runs stopped or taken over elsewhere, too long, or silent too long;
        start queued research whose slot freed elsewhere or whose wait ended."""
        await self._admit()
        running = [(k, t) for k, t in self._runs.items() if not t.done() and k in self._streaming]
        if not running:
            return
        mine = await self._store.owned_runs(self._config.process_id)
        now = self._clock()
        for key, task in running:
            reason: StopReason | None = None
            if now - self._started.get(key, now) > self._config.run_max_seconds:
                reason = StopReason.TOO_LONG
            elif now - self._last_frame.get(key, now) > self._config.stream_idle_seconds:
                reason = StopReason.SILENT
            elif key not in mine and not task.done():
                reason = StopReason.ELSEWHERE  # stopped through another process, or taken
            if reason is not None:
                self._stop_reasons[key] = reason
                task.cancel()

    async def answer_kept(self) -> None:
        """Questions kept during runs that finished while no process could answer them."""
        for key in await self._kept.threads():
            conversation = await self._store.get(key)
            if conversation is not None and conversation.state is State.DONE:
                await self._answer_waiting(conversation)

    async def shutdown(self, drain: float = 0.0, timeout: float = 20.0) -> None:
        """Stop taking work; let running work go on for up to `drain` seconds, then stop it
        and record where it stood (for another process, or the next start, to resume)."""
        self._accepting = False
        running = [t for t in (*self._runs.values(), *self._steps) if not t.done()]
        if running and drain > 0:
            logger.info("draining: %d run(s) may finish within %.0f s", len(running), drain)
            await asyncio.wait(running, timeout=drain)
        tasks = [t for t in (*self._runs.values(), *self._steps) if not t.done()]
        for key, task in list(self._runs.items()):
            if not task.done():
                self._stop_reasons[key] = StopReason.SHUTDOWN
                task.cancel()
        for task in self._steps:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for task in self._closing:
            task.cancel()  # a progress message left as it was loses nothing
        if self._closing:
            await asyncio.wait(self._closing, timeout=1)

    # --- steps -------------------------------------------------------------------------------

    @traced("research.clarify")
    async def _clarify(self, conversation: Conversation, sink: ThreadSink, *, exists: bool) -> None:
        """Step 1: ask the model for its clarifying question and relay it."""
        await sink.set_status(Stage.CLARIFYING)
        result = _CallResult()
        call = await self._metered(conversation, "clarify")
        if call is None:
            await sink.post_notice(await self._held(conversation.key.team_id))
            return
        task = asyncio.current_task()
        if task is not None:
            self._steps.add(task)
        try:
            first = research_call(conversation.model, conversation.history)
            await call.sending(first.messages)
            async for event in self._model.stream(
                await self._keyed(conversation.key.team_id, first)
            ):
                result.apply(event)
                if isinstance(event, Usage):
                    call.see(event)
        except asyncio.CancelledError:
            try:
                if not exists and self._config.auto_resume:
                    # Shutting down mid-question: the event stays in the inbox and the next
                    # process asks again; the tokens spent so far are recorded now.
                    await self._ledger.record(call.records())
                else:
                    # Keep the topic so Retry can ask again.
                    interrupted = conversation.to(State.INTERRUPTED)
                    await self._record_step(interrupted, call.records(), exists=exists)
                    await sink.post_notice(_INTERRUPTED, retry=True)
            except Exception:
                logger.exception("could not record the interruption of %s", conversation.key)
            raise
        finally:
            call.close()
            if task is not None:
                self._steps.discard(task)
        usage = call.records()
        error = result.outcome
        if error is None and result.text.strip():
            # Recorded as owed before it is posted: a crash in between posts it once, later.
            conversation = conversation.to(
                State.AWAITING_CLARIFICATION,
                history=(
                    *conversation.history,
                    {"role": "assistant", "content": result.text},
                ),
                owner=self._config.process_id,
                owed=Owed(QUESTION, _marker(conversation.key, result.text)),
            )
        else:
            conversation = conversation.to(State.FAILED)
        stored = await self._record_step(conversation, usage, exists=exists)
        if stored is not None and stored.owed is not None:
            await self._deliver(stored)
        elif conversation.state is State.FAILED:
            _log_model_error(conversation.key, error or STREAM_CUT)
            await sink.post_notice(user_sentence(error or STREAM_CUT), retry=True)

    async def _record_step(
        self, conversation: Conversation, usage: list[UsageRecord], *, exists: bool
    ) -> Conversation | None:
        """The first step of a thread creates its conversation; a retried one updates it."""
        if exists:
            return await self._store.save(conversation, usage)
        return await self._store.create(conversation, usage)

    async def _begin_research(self, conversation: Conversation) -> None:
        """Research joins the queue and starts at once if its user and workspace have a free
        slot (fleet wide); else the thread is told its place in the queue."""
        queued = await self._store.save(
            conversation.to(
                State.QUEUED,
                progress_ts=None,
                owner=None,
                resumes=0,
                queued_at=time.time(),
                not_before=0.0,
            )
        )
        await self._after_queued(queued)

    async def _after_queued(self, queued: Conversation) -> None:
        if queued.key in await self._admit():
            return
        current = await self._store.get(queued.key)
        if current is None or current.state is not State.QUEUED:
            return  # admitted meanwhile by another path (a supervisor tick, another process)
        position = await self._store.queue_position(current)
        await self._sinks(queued.key).post_notice(say(_QUEUED, position=Ordinal(position)))

    async def _admit(self) -> set[ConversationKey]:
        """Start the queued research that fits under the caps now; the keys started here."""
        if not self._accepting:
            return set()
        admitted = await self._store.admit(
            self._config.process_id,
            user_cap=self._config.user_max_running,
            workspace_cap=self._config.workspace_max_running,
            now=time.time(),
        )
        for conversation in admitted:
            self._start_run(conversation)
        return {c.key for c in admitted}

    def _admit_later(self) -> None:
        """A slot freed: let the queue move, without holding up the run that ended."""
        if self._accepting:
            spawn(self._closing, self._admit_all(), "admitting queued research")

    async def _admit_all(self) -> None:
        await self._admit()

    def _start_run(self, conversation: Conversation) -> None:
        key = conversation.key
        self._stop_reasons.pop(key, None)
        self._started[key] = self._last_frame[key] = self._clock()
        task = asyncio.create_task(self._research(conversation), name=f"research {key}")
        metrics.run_started()
        self._runs[key] = task
        task.add_done_callback(lambda t: self._forget(key, t))
        task.add_done_callback(lambda _: metrics.run_left())

    def _forget(self, key: ConversationKey, task: asyncio.Task[None]) -> None:
        if self._runs.get(key) is task:
            del self._runs[key]
            self._started.pop(key, None)
            self._last_frame.pop(key, None)
            self._admit_later()

    @traced("research.run")
    async def _research(self, conversation: Conversation) -> None:
        """A run ends with a notice however it ends: never left researching by a crash."""
        key = conversation.key
        # This task's log lines name the run, so it can be followed through the log.
        bind(
            team=key.team_id,
            conversation=key.label,
            run_id=uuid.uuid4().hex[:12],
            request_id=None,  # it may have been started while handling another thread's event
        )
        logger.info("research run started (model %s)", conversation.model)
        try:
            await self._run(conversation)
        except StaleConversation:
            metrics.run_ended("handed_over", "changed_elsewhere")
            logger.info("research run %s was stopped or taken over elsewhere", conversation.key)
        except Exception:
            metrics.run_ended("failed", "crash")
            logger.exception("research run %s crashed", conversation.key)
            await self._end_crashed(conversation.key)

    async def _end_crashed(self, key: ConversationKey) -> None:
        try:
            async with self._lock(key):
                stored = await self._store.get(key)
                if (
                    stored is None
                    or stored.state is not State.RESEARCHING
                    or stored.owner != self._config.process_id
                ):
                    return
                await self._store.save(stored.to(State.FAILED, owner=None))
            sink = self._sinks(key)
            await sink.set_status(Stage.FAILED)  # ends the run's agent session
            await sink.post_notice(_CRASHED, retry=True)
        except Exception:
            logger.exception("could not record the end of the crashed run %s", key)

    async def _run(self, conversation: Conversation) -> None:
        """Step 2: stream the research, keep the progress message live, deliver the report."""
        key = conversation.key
        sink = self._sinks(key)
        started = self._clock()
        progress = LiveProgress(
            sink,
            self._config.progress_interval,
            self._clock,
            started,
            pace=lambda wait, idle: self._pacer.acquire(key.team_id, max_wait=wait, idle=idle),
        )
        result = _CallResult()
        metered = await self._metered(conversation, "research")
        if metered is None:
            await self._store.save(conversation.to(State.FAILED, owner=None))
            metrics.run_ended("failed", "budget")
            await sink.post_notice(await self._held(key.team_id), retry=True)
            return
        call = metered
        try:
            ts = await progress.start()
            conversation = await self._store.save(replace(conversation, progress_ts=ts))
            pacing = asyncio.create_task(progress.keep_live())
            self._streaming.add(key)
            try:
                step = await self._keyed(key.team_id, await self._research_step(conversation))
                await call.sending(step.messages)
                async for event in self._model.stream(step):
                    self._last_frame[key] = self._clock()
                    progress.tracker.apply(event)
                    result.apply(event)
                    if isinstance(event, Usage):
                        call.see(event)
            finally:
                self._streaming.discard(key)
                pacing.cancel()
                await asyncio.gather(pacing, return_exceptions=True)
        except asyncio.CancelledError:
            reason = self._stop_reasons.pop(key, StopReason.SHUTDOWN)
            await self._end_stopped(conversation, sink, progress, call, reason)
            call.close()
            raise
        except StaleConversation:
            call.close()
            raise
        except Exception:
            logger.exception("research run %s failed", key)
            result.error = result.error or STREAM_CUT
        call.close()
        duration = self._clock() - started
        usage = call.records()
        error = result.outcome
        if error is not None and error.code.startswith("Throttling") and not result.streamed:
            # Model Studio's account-wide rate limit, before any output: wait in the queue.
            throttled = self._throttled.get(key, 0) + 1
            self._throttled[key] = throttled
            wait = min(THROTTLE_MAX_WAIT, THROTTLE_WAIT * 2 ** (throttled - 1)) * _jitter()
            await self._store.save(
                conversation.to(State.QUEUED, owner=None, not_before=time.time() + wait),
                usage,
            )
            metrics.run_ended("requeued", error.code)
            # Any process's supervisor admits it once the wait is over; this one tries then.
            asyncio.get_running_loop().call_later(wait + 0.05, self._admit_later)
            await sink.post_notice(say(_THROTTLED, seconds=max(1, round(wait))))
            self._finish_later(progress, Stage.STOPPED)
            return
        self._throttled.pop(key, None)
        if error is not None or not result.text.strip():
            await self._store.save(conversation.to(State.FAILED, owner=None), usage)
            metrics.run_ended("failed", error.code if error is not None else "empty_report")
            _log_model_error(key, error or STREAM_CUT)
            await sink.post_notice(user_sentence(error or STREAM_CUT), retry=True)
            self._finish_later(progress, Stage.FAILED)
            return
        stats = {
            "duration_seconds": duration,
            "input_tokens": sum(u.input_tokens for u in usage),
            "output_tokens": sum(u.output_tokens for u in usage),
            "cost_usd": str(cost) if (cost := _total_cost(usage)) is not None else None,
        }
        # Done, and the report owed to the thread until Slack has taken it: a crash before
        # that delivers it later, once.
        conversation = await self._store.save(
            conversation.to(
                State.DONE,
                history=(*conversation.history, {"role": "assistant", "content": result.text}),
                report=result.text,
                references=tuple(
                    {"index": r.index, "title": r.title, "url": r.url} for r in result.references
                ),
                owed=Owed(REPORT, _marker(key, result.text), stats=stats),
            ),
            usage,
        )
        metrics.run_ended("finished", "report")
        logger.info("research run finished in %.0f s", duration)
        delivered = await self._deliver(conversation)
        # The report is out first; the progress message flips to "complete" when the
        # workspace has room for one more edit, and never claims a report that is not there.
        self._finish_later(progress, Stage.DONE if delivered else Stage.UNDELIVERED)
        # The run is over: questions kept during it are answered outside it, so nothing that
        # watches runs mistakes the answers for research still streaming.
        spawn(self._closing, self._answer_waiting(conversation), f"kept questions {key}")

    async def deliver_owed(self, conversation: Conversation) -> None:
        """A delivery a stopped process (or a failed try) left owed: post what is missing."""
        async with self._lock(conversation.key):
            # The process that owed it may have died just after Slack took the post: look.
            await self._deliver(conversation, check=True)
        if conversation.state is State.DONE:
            await self._answer_waiting(conversation)

    @traced("research.deliver")
    async def _deliver(self, conversation: Conversation, *, check: bool = False) -> bool:
        """Post what the conversation owes its thread, skipping what a first try already
        posted; True once Slack has taken all of it."""
        owed = conversation.owed
        if owed is None:
            return True
        key = conversation.key
        sink = self._sinks(key)
        marker = owed.marker

        async def keep_canvas(canvas: str) -> None:
            # Before the summary links it: a retry after a crash links this canvas instead
            # of making a second one. The delivery stays this process's meanwhile.
            nonlocal owed
            assert owed is not None
            owed = replace(owed, canvas=canvas)
            await self._store.settle_owed(key, marker, owed, release=False)

        try:
            looked = check or owed.attempts > 0
            posted = await sink.delivered(owed.marker) if looked else frozenset()
            if owed.kind == QUESTION:
                if MESSAGE not in posted:
                    question = str(conversation.history[-1].get("content", ""))
                    await sink.post_markdown(question, marker=owed.marker)
            else:
                delivery = (await self._workspace(key.team_id)).delivery
                await sink.deliver_report(
                    _report(conversation, owed),
                    skip=posted,
                    delivery=delivery,
                    canvas=owed.canvas,
                    keep_canvas=keep_canvas,
                )
        except Exception as exc:
            lasting = isinstance(exc, DeliveryFailed) and exc.lasting
            part = exc.part if isinstance(exc, DeliveryFailed) else owed.kind
            logger.warning(
                "delivery of %s to %s failed (try %d)",
                part,
                key,
                owed.attempts + 1,
                exc_info=not isinstance(exc, DeliveryFailed),
            )
            again = not lasting and owed.attempts + 1 < MAX_DELIVERY_ATTEMPTS
            await self._store.settle_owed(
                key, owed.marker, replace(owed, attempts=owed.attempts + 1) if again else None
            )
            with contextlib.suppress(Exception):
                await sink.post_notice(_undelivered(owed.kind, part, lasting=lasting, again=again))
            return False
        await self._store.settle_owed(key, owed.marker, None)
        return True

    def _finish_later(self, progress: LiveProgress, stage: Stage) -> None:
        task = asyncio.create_task(progress.finish(stage), name=f"progress {stage}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _answer_waiting(self, conversation: Conversation) -> None:
        if self._follow_up is None:
            return
        for question_id, user_id, text in await self._kept.pending(conversation.key):
            # After a restart two paths reach the same thread (the start's `answer_kept` and
            # an owed delivery), each with the list it read: each question is answered by one.
            if question_id in self._answering:
                continue
            self._answering.add(question_id)
            try:
                await self._follow_up(conversation, user_id, text)
            except Exception:
                logger.exception("could not answer a kept question in %s", conversation.key)
            await self._kept.forget(question_id)

    async def _end_stopped(
        self,
        conversation: Conversation,
        sink: ThreadSink,
        progress: LiveProgress,
        call: MeteredCall,
        reason: StopReason,
    ) -> None:
        """Record where a cut run stood: its usage always, its state as the reason says."""
        metrics.run_ended(_STOP_OUTCOMES[reason], reason.value)
        usage = call.records()
        resume_later = reason is StopReason.SHUTDOWN and self._config.auto_resume
        try:
            if reason is StopReason.ELSEWHERE or resume_later:
                # Its state is another process's business now (or the next start's): only
                # the money spent is recorded here.
                await self._ledger.record(usage)
                await progress.finish(Stage.STOPPED, wait=False)
                return
            state = State.CANCELLED if reason is StopReason.USER else State.INTERRUPTED
            if reason in (StopReason.TOO_LONG, StopReason.SILENT):
                state = State.FAILED
            await self._store.save(conversation.to(state, owner=None), usage)
            await progress.finish(Stage.STOPPED, wait=False)
            await sink.post_notice(say(_STOP_NOTICES[reason], **self._limits()), retry=True)
        except StaleConversation:
            await self._ledger.record(usage)
        except Exception:
            logger.exception("could not record the end of %s", conversation.key)

    def _limits(self) -> dict[str, Span]:
        return {
            "max": Span(self._config.run_max_seconds, words=True),
            "idle": Span(self._config.stream_idle_seconds, words=True),
        }

    # --- helpers -------------------------------------------------------------------------

    async def _research_step(self, conversation: Conversation) -> ModelCall:
        options = conversation.options
        tools: tuple[dict[str, Any], ...] = ()
        if supports_research_tools(conversation.model):
            tools = (await self._workspace(conversation.key.team_id)).research_tools
        return research_call(
            conversation.model,
            conversation.history,
            enable_feedback=None if options.asks_first else False,
            output_format=options.output_format,
            research_tools=tools,
        )

    async def _workspace(self, team_id: str) -> WorkspaceResearch:
        if self._workspace_settings is None:
            return WorkspaceResearch()
        return await self._workspace_settings(team_id)

    async def _held(self, team_id: str) -> Text:
        if self._budget_held is None:
            return _BUDGET_HELD
        return await self._budget_held(team_id)

    async def _metered(self, conversation: Conversation, kind: str) -> MeteredCall | None:
        key = conversation.key
        draft = UsageRecord(
            team_id=key.team_id,
            user_id=conversation.user_id,
            channel_id=key.channel_id,
            thread_ts=key.thread_ts,
            model=conversation.model,
            kind=kind,
            input_tokens=0,
            output_tokens=0,
        )
        model = conversation.model
        return await self._meter.open(
            draft, lambda u: self._pricing.cost(model, u.input_tokens, u.output_tokens)
        )

    def _lock(self, key: ConversationKey) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock


def _total_cost(usage: list[UsageRecord]) -> Decimal | None:
    costs = [u.cost_usd for u in usage]
    if not costs or any(c is None for c in costs):
        return None
    return sum((c for c in costs if c is not None), Decimal(0))


def _log_model_error(key: ConversationKey, error: StreamError) -> None:
    logger.error(
        "model call for %s failed: code=%s status=%s request_id=%s message=%s",
        key,
        error.code,
        error.status,
        error.request_id,
        error.message,
    )


_STOPPED: Final = N_("Research stopped. Nothing more will be spent on this run.")
_GAVE_UP: Final = N_(
    "I tried your message several times, but the bot kept restarting while working on it. "
    "Please send it again."
)
_INTERRUPTED: Final = N_(
    "The research run in this thread was interrupted because the bot restarted. "
    "Press Retry to run it again."
)
_RESTARTING: Final = N_("I'm restarting right now. Please try again in a minute.")
_BUDGET_HELD: Final = N_("This workspace's token budget can't take more work right now.")
_QUEUED: Final = N_(
    "Your research is queued: it is {position} in line for this workspace, behind research "
    "already running. It starts by itself when a slot frees."
)
_THROTTLED: Final = N_(
    "Model Studio is busy right now (its rate limit for this account). Your research is back "
    "in the queue and starts again in about {seconds} seconds."
)
THROTTLE_WAIT: Final = 10.0
THROTTLE_MAX_WAIT: Final = 300.0


MAX_DELIVERY_ATTEMPTS: Final = 3


def _marker(key: ConversationKey, text: str) -> str:
    return hashlib.sha256(f"{key}:{text}".encode()).hexdigest()[:16]


def _report(conversation: Conversation, owed: Owed) -> Report:
    stats = owed.stats
    cost = stats.get("cost_usd")
    return Report(
        topic=conversation.topic,
        text=conversation.report or "",
        references=tuple(
            Reference(
                index=int(r.get("index") or 0),
                title=str(r.get("title") or ""),
                url=str(r.get("url") or ""),
            )
            for r in conversation.references
        ),
        stats=RunStats(
            duration_seconds=float(stats.get("duration_seconds", 0.0)),
            input_tokens=int(stats.get("input_tokens", 0)),
            output_tokens=int(stats.get("output_tokens", 0)),
            cost_usd=Decimal(cost) if cost is not None else None,
        ),
        marker=owed.marker,
        model=conversation.model,
    )


# What a delivery was doing when Slack did not take it.
_DELIVERING: Final = {
    "file": N_("upload the report file"),
    "summary": N_("post the report's summary"),
    QUESTION: N_("post my clarifying question"),
    REPORT: N_("post the report"),
}
_UNDELIVERED_LASTING: Final = N_(
    "The research step finished, but Slack would not let me {what} in this thread. It is "
    "saved; ask the bot's admin to check that the bot is in this channel and has its "
    "permissions (chat:write, files:write)."
)
_UNDELIVERED_AGAIN: Final = N_(
    "Slack had a problem when I tried to {what}. I'll try again in a moment."
)
_UNDELIVERED_GAVE_UP: Final = N_(
    "Slack kept failing when I tried to {what}, so I stopped trying. It is saved; ask the "
    "bot's admin to look at the bot's logs."
)


def _undelivered(kind: str, part: str, *, lasting: bool, again: bool) -> Sentence:
    what = say(_DELIVERING.get(part) or _DELIVERING[QUESTION if kind == QUESTION else REPORT])
    if lasting:
        return say(_UNDELIVERED_LASTING, what=what)
    if again:
        return say(_UNDELIVERED_AGAIN, what=what)
    return say(_UNDELIVERED_GAVE_UP, what=what)


def _jitter() -> float:
    return random.uniform(0.8, 1.2)


_RESUMING: Final = N_(
    "The bot restarted while this research was running, so I'm running it again from the "
    "start. (This happens once by itself; if it is cut again, you'll get a Retry button.)"
)
_CRASHED: Final = N_(
    "Something went wrong on my side during this research. Nothing more is being spent on "
    "it; press Retry to run it again."
)
_STOP_NOTICES: Final = {
    StopReason.USER: _STOPPED,
    StopReason.SHUTDOWN: _INTERRUPTED,
    StopReason.TOO_LONG: N_(
        "This research ran for longer than {max} without finishing, so I ended it. "
        "Press Retry to run it again."
    ),
    StopReason.SILENT: N_(
        "Model Studio sent nothing for {idle}, so I ended this research. "
        "Press Retry to run it again."
    ),
}
