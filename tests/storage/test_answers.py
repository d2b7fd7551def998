"""Stored answers on a real SQLite file: found again after a restart, only by their workspace."""

from __future__ import annotations

from pathlib import Path

from bot.records import ASK, FOLLOW_UP, StoredAnswer
from bot.conversation import ConversationKey
from storage.sqlite import Store

KEY = ConversationKey("T1", "C1", "1.000001")


def answer(id_: str, kind: str = FOLLOW_UP, *, at: float, **kw: str) -> StoredAnswer:
    values = {
        "team_id": KEY.team_id,
        "user_id": "UUSER",
        "channel_id": KEY.channel_id,
        "thread_ts": KEY.thread_ts if kind == FOLLOW_UP else "",
        "question": f"question {id_}",
        "answer": f"answer {id_}",
        "reasoning": f"reasoning {id_}",
        **kw,
    }
    return StoredAnswer(id=id_, kind=kind, model="qwen-plus", created_at=at, **values)


async def test_answers_survive_a_reopen_and_stay_in_their_workspace(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite3"
    store = await Store.open(path)
    try:
        answers = await AnswerStore.attach(store)
        saved = await answers.add(answer("a1", ASK, at=0.0, reasoning="Hmm. 教育 & <b>"))
        assert saved.created_at > 0
    finally:
        await store.close()

    store = await Store.open(path)
    try:
        answers = await AnswerStore.attach(store)  # attaching again keeps what is there
        assert await answers.get("T1", "a1") == saved
        assert await answers.get("T2", "a1") is None
        assert await answers.get("T1", "missing") is None
    finally:
        await store.close()


async def test_follow_ups_of_a_thread_since_a_time_oldest_first(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "answers.sqlite3")
    try:
        answers = await AnswerStore.attach(store)
        await answers.add(answer("old", at=100.0))
        await answers.add(answer("second", at=300.0))
        await answers.add(answer("first", at=200.0))
        await answers.add(answer("ask", ASK, at=250.0))
        await answers.add(answer("elsewhere", at=250.0, thread_ts="2.000002"))
        found = await answers.follow_ups(KEY, since=150.0)
        assert [a.id for a in found] == ["first", "second"]
        assert [a.id for a in await answers.follow_ups(KEY)] == ["old", "first", "second"]
    finally:
        await store.close()
