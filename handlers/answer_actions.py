"""Buttons on answers: Show reasoning, Show full answer, page through them, Research deeper."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.answers import AnswerService
from bot.services import Services
from handlers import answer_render as render
from handlers.i18n import Translations, translations

logger = logging.getLogger(__name__)


def register(app: AsyncApp, services: Services) -> None:
    answers = services.answers

    async def view_of(body: dict[str, Any], answer_id: str, part: str, page: int = 0) -> dict:
        # The trigger expires 3 s after the click: the answer and the presser's language
        # are read at once.
        stored, t = await asyncio.gather(
            answers.stored(_team(body), answer_id), _language(services, body)
        )
        if stored is None:
            return render.unavailable_view(t)
        text = stored.reasoning if part == render.REASONING else stored.answer
        return render.text_view(part, text, stored.question, stored.id, page, t)

    async def open_view(
        client: AsyncWebClient, body: dict[str, Any], answer_id: str, part: str
    ) -> None:
        # The trigger expires 3 s after the click: one indexed read, then open.
        view = await view_of(body, answer_id, part)
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action(render.SHOW_REASONING_ACTION)
    async def on_show_reasoning(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        await open_view(client, body, action.get("value", ""), render.REASONING)

    @app.action(render.SHOW_ANSWER_ACTION)
    async def on_show_answer(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        await open_view(client, body, action.get("value", ""), render.FULL_ANSWER)

    pages = re.compile(f"^({render.PREVIOUS_PAGE_ACTION}|{render.NEXT_PAGE_ACTION})$")

    @app.action(pages)
    async def on_page(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        target = render.parse_page_value(action.get("value", ""))
        view_id = (body.get("view") or {}).get("id")
        if target is None or not view_id:
            return
        view = await view_of(body, *target)
        await client.views_update(view_id=view_id, view=view)

    @app.action(render.SHARE_ACTION)
    async def on_share(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        t = await _language(services, body)
        await share(answers, body, str(action.get("value") or ""), respond, t)

    @app.action(render.RESEARCH_DEEPER_ACTION)
    async def on_research_deeper(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        await ack()
        user = (body.get("user") or {}).get("id", "")
        await answers.research_deeper(_team(body), action.get("value", ""), user)


async def share(
    answers: AnswerService,
    body: dict[str, Any],
    answer_id: str,
    respond: AsyncRespond,
    t: Translations,
) -> None:
    """Post a private answer in its channel, for its asker only; then the private copy goes."""
    user = str((body.get("user") or {}).get("id") or "")
    stored = await answers.stored(_team(body), answer_id)
    if stored is None or stored.user_id != user:
        logger.info("ignored a Share by %s: not the asker of answer %s", user, answer_id)
        return
    for message in render.shared_messages(
        stored.user_id, stored.question, stored.answer, stored.model, stored.kind, t
    ):
        await respond(response_type="in_channel", replace_original=False, **message)
    await respond(delete_original=True)


async def _language(services: Services, body: dict[str, Any]) -> Translations:
    """The catalog of the person who pressed the button."""
    user = str((body.get("user") or {}).get("id") or "")
    return translations(await services.languages.language(user, _team(body)))


def _team(body: dict[str, Any]) -> str:
    return str((body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id", ""))
