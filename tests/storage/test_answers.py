"""storage/answers.py: stored answers, found again after a restart, only by their workspace."""

from __future__ import annotations

from bot.conversation import ConversationKey
from bot.records import ASK, FOLLOW_UP, StoredAnswer
from storage import Storage

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


async def test_answers_survive_a_reopen_and_stay_in_their_workspace(
    storage: Storage, url: str
) -> None:
    saved = await storage.answers.add(answer("a1", ASK, at=0.0, reasoning="Hmm. 教育 & <b>"))
    assert saved.created_at > 0
    assert await storage.answers.get("T1", "a1") == saved
    await storage.close()

    reopened = await Storage.open(url)  # migrating again keeps what is there
    try:
        assert await reopened.answers.get("T1", "a1") == saved
        assert await reopened.answers.get("T2", "a1") is None
        assert await reopened.answers.get("T1", "missing") is None
    finally:
        await reopened.close()


async def test_an_answer_keeps_the_time_it_was_given(storage: Storage) -> None:
    saved = await storage.answers.add(answer("a1", ASK, at=1234.5))
    assert saved.created_at == 1234.5
    assert await storage.answers.get("T1", "a1") == saved


async def test_follow_ups_of_a_thread_since_a_time_oldest_first(storage: Storage) -> None:
    answers = storage.answers
    await answers.add(answer("old", at=100.0))
    await answers.add(answer("second", at=300.0))
    await answers.add(answer("first", at=200.0))
    await answers.add(answer("ask", ASK, at=250.0))
    await answers.add(answer("elsewhere", at=250.0, thread_ts="2.000002"))
    await answers.add(answer("other-team", at=250.0, team_id="T2"))
    found = await answers.follow_ups(KEY, since=150.0)
    assert [a.id for a in found] == ["first", "second"]
    assert [a.id for a in await answers.follow_ups(KEY)] == ["old", "first", "second"]
    assert await answers.follow_ups(KEY, since=300.0) == []
