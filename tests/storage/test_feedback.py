"""Feedback ratings on both engines: one row per person and message, the latest press wins,
shares per model and kind within a period and a workspace."""

from __future__ import annotations

import time

from bot.feedback import Feedback
from storage import Storage
from storage.tables import feedback as table
from tests.storage.conftest import count


def rating(
    user: str, ts: str, positive: bool, *, team: str = "T1", kind: str = "report"
) -> Feedback:
    return Feedback(team, "C1", ts, user, positive, "qwen-deep-research", kind)


async def test_a_second_press_replaces_the_first(storage: Storage) -> None:
    await storage.feedback.record(rating("U1", "1.1", True))
    await storage.feedback.record(rating("U1", "1.1", False))
    assert await count(storage, table) == 1
    [share] = await storage.feedback.shares("T1", since=0)
    assert (share.positive, share.total, share.percent_positive) == (0, 1, 0)


async def test_shares_per_model_and_kind_in_the_period_and_workspace(storage: Storage) -> None:
    for user, ts, positive in (("U1", "1.1", True), ("U2", "1.1", True), ("U1", "1.2", False)):
        await storage.feedback.record(rating(user, ts, positive))
    await storage.feedback.record(rating("U1", "2.1", True, kind="ask"))
    await storage.feedback.record(rating("U1", "3.1", False, team="T2"))
    shares = await storage.feedback.shares("T1", since=0)
    assert [(s.kind, s.positive, s.total, s.percent_positive) for s in shares] == [
        ("ask", 1, 1, 100),
        ("report", 2, 3, 67),
    ]
    assert await storage.feedback.shares("T1", since=time.time() + 60) == []
