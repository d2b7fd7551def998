"""Presses of Slack's feedback buttons on report summaries and answers."""

from __future__ import annotations

import logging
from typing import Any, Final

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.feedback import REPORT, Feedback, FeedbackShare
from bot.records import ASK, FOLLOW_UP
from bot.services import Services
from handlers.actions import pressed_on, team_of
from handlers.render import FEEDBACK_ACTION, SECTION_LIMIT, clip, escaped, parse_feedback

logger = logging.getLogger(__name__)

MAX_LISTED: Final = 20
_KINDS: Final = {REPORT: "reports", ASK: "quick answers", FOLLOW_UP: "follow-up answers"}


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


def feedback_blocks(shares: list[FeedbackShare]) -> list[dict[str, Any]]:
    """The Home tab's share of 👍 per model and kind this month (shown to admins)."""
    lines = ["*Feedback this month* (only admins see this)"]
    if not shares:
        lines.append("No ratings yet.")
    for share in shares[:MAX_LISTED]:
        kind = _KINDS.get(share.kind, escaped(share.kind, 20))
        ratings = "rating" if share.total == 1 else "ratings"
        lines.append(
            f"• `{escaped(share.model, 100)}` · {kind}: :+1: {share.percent_positive}% of "
            f"{share.total:,} {ratings}"
        )
    if len(shares) > MAX_LISTED:
        lines.append(f"…and {len(shares) - MAX_LISTED} more.")
    return [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip("\n".join(lines), SECTION_LIMIT)},
        }
    ]
