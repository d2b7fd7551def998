"""storage/durable.py SqlKeptQuestions: questions asked during a run wait for its report; an
answered one stays known (without its text) so a replay of its event is not answered again."""

from __future__ import annotations

from bot.conversation import ConversationKey
from storage import Storage

KEY = ConversationKey("T1", "C1", "1700000000.000100")
OTHER = ConversationKey("T1", "C1", "1700000000.000200")


async def test_kept_questions_wait_in_order_and_once_per_message(storage: Storage) -> None:
    kept = storage.kept
    assert await kept.keep(KEY, "U1", "Which source is newest?", "1.1") is True
    assert await kept.keep(KEY, "U2", "And the oldest?", "1.2") is True
    assert await kept.keep(KEY, "U1", "Which source is newest?", "1.1") is False  # replayed
    pending = await kept.pending(KEY)
    assert [(u, t) for _, u, t in pending] == [
        ("U1", "Which source is newest?"),
        ("U2", "And the oldest?"),
    ]
    assert await kept.threads() == [KEY]
    assert await kept.pending(OTHER) == []


async def test_an_answered_question_is_no_longer_pending_but_still_known(storage: Storage) -> None:
    kept = storage.kept
    await kept.keep(KEY, "U1", "Which source is newest?", "1.1")
    [(question_id, _, _)] = await kept.pending(KEY)
    await kept.forget(question_id)
    assert await kept.pending(KEY) == []
    assert await kept.threads() == []
    assert await kept.was_kept(KEY, "1.1") is True
    assert await kept.was_kept(KEY, "1.9") is False
    assert await kept.was_kept(OTHER, "1.1") is False
    # Its event handled again: not kept a second time.
    assert await kept.keep(KEY, "U1", "Which source is newest?", "1.1") is False
