"""Usage of model calls while they stream, so money spent is recorded even when a run is cut.

Each call gets an id and a draft ledger row. The stream's cumulative figures update it in
memory; the supervisor flushes changed ones to the database with its heartbeat. A call that
ends normally is recorded in the ledger with its state change (and its in-flight row dropped in
the same transaction); a call cut by a crash is recorded from its last flushed figures by
whichever process notices its owner died. The call id makes the ledger record each call once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from bot import metrics
from bot.background import spawn
from bot.budget import ESTIMATED_TOKENS, BudgetGuard
from bot.context import prompt_tokens
from bot.ports import InflightUsage
from bot.qwen.events import Usage
from bot.records import UsageRecord

logger = logging.getLogger(__name__)

CostFn = Callable[[Usage], Decimal | None]


class MeteredCall:
    def __init__(self, meter: UsageMeter, draft: UsageRecord, cost: CostFn) -> None:
        self._meter = meter
        self._cost = cost
        self.call_id = uuid.uuid4().hex
        self._draft = replace(draft, call_id=self.call_id, input_tokens=0, output_tokens=0)
        self.usage: Usage | None = None

    async def sending(self, messages: Sequence[Mapping[str, Any]]) -> None:
        """The request (`messages`) is about to go out: until its first figures arrive, its
        in-flight row holds the prompt's own token count, so a process killed between the
        model's first frame and that frame's write still records what the prompt was charged
        (an estimate: its row has no request id)."""
        await self._meter.sending(self, messages)

    def see(self, usage: Usage) -> None:
        """The stream's cumulative figures. Called for every frame, so it only keeps them;
        the ledger row is built when asked for."""
        seen = self.usage
        if seen is not None and (
            usage.input_tokens < seen.input_tokens
            or usage.output_tokens < seen.output_tokens
            or usage.reasoning_tokens < seen.reasoning_tokens
        ):
            usage = Usage(  # never lower than what was reported before
                max(usage.input_tokens, seen.input_tokens),
                max(usage.output_tokens, seen.output_tokens),
                max(usage.reasoning_tokens, seen.reasoning_tokens),
                usage.request_id or seen.request_id,
            )
        first = self.usage is None
        self.usage = usage
        self._meter.changed(self, first=first)

    @property
    def record(self) -> UsageRecord:
        usage = self.usage
        if usage is None:
            return self._draft
        return replace(
            self._draft,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            request_id=usage.request_id,
            cost_usd=self._cost(usage),
        )

    def records(self) -> list[UsageRecord]:
        """The ledger rows for this call so far: none until figures were seen."""
        return [self.record] if self.usage is not None else []

    def close(self) -> None:
        self._meter.closed(self)


class UsageMeter:
    """`budget` and `inflight` make each call hold its estimate of the workspace's monthly
    budget from its start (recorded in the database, so the whole fleet sees it) until its
    real usage is recorded: a burst of calls cannot overshoot the budget by more than one."""

    def __init__(
        self,
        *,
        inflight: InflightUsage | None = None,
        owner: str = "",
        budget: BudgetGuard | None = None,
    ) -> None:
        self._inflight = inflight
        self._owner = owner
        self._budget = budget
        self._open: dict[str, MeteredCall] = {}
        self._changed: set[str] = set()
        self._writing: set[asyncio.Task[None]] = set()
        # Figures written at once (a prompt's estimate as its request goes out, a call's
        # first figures): one write at a time, each holding every call that came while the
        # previous one was being written. 400 runs starting together made 400 transactions,
        # and the inbox write an acknowledgement waits for queued behind them (issue 13).
        self._urgent: dict[str, UsageRecord | None] = {}  # None: the call's figures then
        self._urgent_waiters: list[asyncio.Future[None]] = []
        self._urgent_writer = False

    async def open(self, draft: UsageRecord, cost: CostFn) -> MeteredCall | None:
        """A new call; None if the workspace's budget cannot hold it (nothing started)."""
        call = MeteredCall(self, draft, cost)
        if self._inflight is not None:
            budget = self._budget
            reserved = await self._inflight.reserve(
                self._owner,
                call.record,
                ESTIMATED_TOKENS.get(draft.kind, 0),
                limit=budget.limit if budget is not None else None,
                since=budget.since() if budget is not None else 0.0,
            )
            if not reserved:
                return None
        self._open[call.call_id] = call
        return call

    def changed(self, call: MeteredCall, *, first: bool = False) -> None:
        self._changed.add(call.call_id)
        if first and self._inflight is not None:
            # A call's first figures are written at once, not at the next flush: a crash in
            # the first second of a call must not lose what it was charged.
            self._write_soon(call.call_id, None)

    async def sending(self, call: MeteredCall, messages: Sequence[Mapping[str, Any]]) -> None:
        if self._inflight is None or call.usage is not None:
            return
        # Counted off the event loop: a long prompt (or the tokenizer still loading after a
        # start) must not hold up acks and streams.
        tokens = await asyncio.to_thread(prompt_tokens, messages)
        if tokens and call.usage is None:
            written = asyncio.get_running_loop().create_future()
            self._urgent_waiters.append(written)
            self._write_soon(call.call_id, replace(call.record, input_tokens=tokens))
            await written

    def _write_soon(self, call_id: str, estimate: UsageRecord | None) -> None:
        self._urgent[call_id] = estimate
        if not self._urgent_writer:
            self._urgent_writer = True
            spawn(self._writing, self._write_urgent(), "usage figures written at once")

    async def _write_urgent(self) -> None:
        inflight = self._inflight
        assert inflight is not None
        try:
            while self._urgent:
                pending, waiters = self._urgent, self._urgent_waiters
                self._urgent, self._urgent_waiters = {}, []
                records: list[UsageRecord] = []
                for call_id, estimate in pending.items():
                    call = self._open.get(call_id)
                    if call is None:
                        continue  # ended meanwhile: its end recorded or released it
                    if call.usage is not None:
                        records.append(call.record)
                    elif estimate is not None:
                        records.append(estimate)
                try:
                    if records:
                        await inflight.flush(self._owner, records)
                except Exception as exc:
                    if not waiters:  # first figures: the next flush writes them again
                        logger.warning("writing usage figures failed", exc_info=True)
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._urgent_writer = False

    def closed(self, call: MeteredCall) -> None:
        if self._open.pop(call.call_id, None) is not None:
            record = call.record
            metrics.model_call(
                record.model,
                record.kind,
                record.input_tokens,
                record.output_tokens,
                record.reasoning_tokens,
                record.cost_usd,
            )
        self._changed.discard(call.call_id)
        if call.usage is None and self._inflight is not None:
            # Ended before any figures (refused, throttled, failed before output): nothing was
            # charged, so neither its budget reservation nor its prompt estimate may stay.
            spawn(self._writing, self._inflight.release(call.call_id), "release a call")

    def take_changed(self) -> list[UsageRecord]:
        """Records of open calls whose figures changed since the last take."""
        changed = [self._open[c].record for c in self._changed if c in self._open]
        self._changed.clear()
        return changed
