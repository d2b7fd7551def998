"""Presses of Slack's feedback buttons on report summaries and answers."""

from __future__ import annotations

import logging
from typing import Any, Final

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.feedback import REPORT, Feedback, FeedbackShare
from bot.i18n import N_, say, say_n
from bot.records import ASK, FOLLOW_UP
from bot.services import Services
from handlers.actions import pressed_on, team_of
from handlers.i18n import ENGLISH_TEXT, Translations, show
from handlers.render import FEEDBACK_ACTION, SECTION_LIMIT, clip, escaped, parse_feedback

logger = logging.getLogger(__name__)

MAX_LISTED: Final = 20
_KINDS: Final = {
    REPORT: N_("reports"),
    ASK: N_("quick answers"),
    FOLLOW_UP: N_("follow-up answers"),
}
HEADING: Final = N_("*Feedback this month* (only admins see this)")
NO_RATINGS: Final = N_("No ratings yet.")
MORE: Final = N_("…and {count} more.")


def register(app: AsyncApp, services: Services) -> None:
    @app.action(FEEDBACK_ACTION)
    async def on_feedback(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        parsed = parse_feedback(str(action.get("value") or ""))
        channel, message_ts = pressed_on(body)
        user = str((body.get("user") or {}).get("id") or "")
        if parsed is None or not (channel and message_ts and user):
            logger.info("ignored a feedback press that names no message or rating")
            return
        positive, model, kind = parsed
        # Once per person and message: pressing the other button changes the rating.
        await services.feedback.record(
            Feedback(team_of(body), channel, message_ts, user, positive, model, kind)
        )
        logger.info("feedback on a %s by %s: %s", kind, user, "good" if positive else "bad")


def feedback_blocks(
    shares: list[FeedbackShare], t: Translations = ENGLISH_TEXT
) -> list[dict[str, Any]]:
    """The Home tab's share of 👍 per model and kind this month (shown to admins)."""
    lines = [t.gettext(HEADING)]
    if not shares:
        lines.append(t.gettext(NO_RATINGS))
    for share in shares[:MAX_LISTED]:
        kind = t.gettext(_KINDS[share.kind]) if share.kind in _KINDS else escaped(share.kind, 20)
        rated = say_n(
            ":+1: {percent}% of {count} rating",
            ":+1: {percent}% of {count} ratings",
            share.total,
            percent=share.percent_positive,
        )
        lines.append(f"• `{escaped(share.model, 100)}` · {kind}: {show(t, rated)}")
    if len(shares) > MAX_LISTED:
        lines.append(show(t, say(MORE, count=len(shares) - MAX_LISTED)))
    return [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip("\n".join(lines), SECTION_LIMIT)},
        }
    ]
