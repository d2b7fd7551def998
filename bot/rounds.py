"""Another deep-research round in a finished thread ("Research this deeper").

A stopgap built only on ResearchService's public entry points, until it offers a call of its own
for this (asked for in the issue notes): the thread's history is extended with the follow-up
exchanges, the conversation is put back to the state where the next human message starts
research, and the request is passed in as that message. ResearchService then runs the round
exactly like a first one (progress, Stop, report, ledger).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bot.research import ResearchService
from storage.models import ConversationKey, State
from storage.sqlite import Store


class ReplyRounds:
    def __init__(self, store: Store, research: Callable[[], ResearchService]) -> None:
        self._store = store
        self._research = research  # late-bound: ResearchService is built after the answers
        self._locks: weakref.WeakValueDictionary[ConversationKey, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def __call__(
        self,
        key: ConversationKey,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        request: str,
    ) -> bool:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:  # two presses of the button start one round
            conversation = await self._store.get(key)
            if conversation is None or conversation.state is not State.DONE:
                return False
            extended = (*conversation.history, *(dict(m) for m in messages))
            await self._store.save(
                replace(conversation, state=State.AWAITING_CLARIFICATION, history=extended)
            )
            await self._research().reply(key, user_id, request)
            # Refused (a restart, the budget): the thread has said why. Back to done, or the
            # next follow-up question would start research instead of being answered. The
            # follow-ups stay in the history: they are no longer counted as newer than it.
            after = await self._store.get(key)
            if (
                after is not None
                and after.state is State.AWAITING_CLARIFICATION
                and after.history == extended
            ):
                await self._store.save(replace(after, state=State.DONE))
        return True
