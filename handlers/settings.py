"""The research settings modal: opened by `/research settings` or the Home tab's button, saved
by its view_submission. Only workspace admins and owners get it, checked with `users.info` both
when it opens and when it is submitted."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.i18n import N_
from bot.services import Services
from bot.workspace_settings import Field, SettingsInvalid
from handlers.admins import is_workspace_admin
from handlers.home import publish_home
from handlers.i18n import Translations, show, translations
from handlers.model_key_render import KEY_BLOCK, key_blocks, key_from_state
from handlers.settings_render import (
    OPEN_SETTINGS_ACTION,
    SETTINGS_CALLBACK,
    form_from_state,
    message_modal,
    saved_modal,
    settings_modal,
    view_errors,
)

logger = logging.getLogger(__name__)

NOT_ADMIN: Final = N_(
    "Only workspace admins and owners can change the research settings. The current ones are "
    "on my Home tab."
)
CHECK_FAILED: Final = N_(
    "I couldn't check your permissions with Slack just now. Please try again in a minute."
)
OPEN_FAILED: Final = N_(
    "I couldn't open the research settings just now. Please try again in a minute."
)
SAVE_FAILED: Final = N_("I couldn't save the settings just now. Please try again in a minute.")


async def admin_and_language(
    client: AsyncWebClient, services: Services, team: str, user: str
) -> tuple[bool | None, Translations]:
    """Whether `user` is an admin or owner (None: Slack did not say) and their language,
    asked at once: a modal's trigger lasts three seconds."""
    allowed, language = await asyncio.gather(
        is_workspace_admin(client, user), services.languages.language(user, team)
    )
    return allowed, translations(language)


async def open_settings(
    client: AsyncWebClient, services: Services, *, team: str, user: str, trigger_id: str
) -> str | None:
    """Open the modal for an admin or owner, in their language; otherwise (or on failure)
    the sentence to show, in it too."""
    allowed, t = await admin_and_language(client, services, team, user)
    if allowed is None:
        return t.gettext(CHECK_FAILED)
    if not allowed:
        logger.info("%s of %s may not change the research settings", user, team)
        return t.gettext(NOT_ADMIN)
    try:
        current = await services.settings.current(team)
        view = settings_modal(
            current,
            default_model=services.settings.default_model,
            can_save_tokens=services.settings.can_save_tokens,
            t=t,
        )
        keys = services.model_keys
        view["blocks"] += key_blocks(await keys.status(team), storable=keys.storable, t=t)
        await client.views_open(trigger_id=trigger_id, view=view)
    except Exception:
        logger.exception("could not open the research settings of %s", team)
        return t.gettext(OPEN_FAILED)
    return None


def register(app: AsyncApp, services: Services) -> None:
    @app.action(OPEN_SETTINGS_ACTION)
    async def on_open(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        trigger_id = body.get("trigger_id", "")
        refusal = await open_settings(
            client, services, team=_team(body), user=_user(body), trigger_id=trigger_id
        )
        if refusal is not None:
            # The Home tab has no thread to answer in: a small modal is the private reply.
            t = translations(await services.languages.language(_user(body), _team(body)))
            try:
                await client.views_open(trigger_id=trigger_id, view=message_modal(refusal, t=t))
            except Exception:
                logger.exception("could not show a settings refusal")

    @app.view(SETTINGS_CALLBACK)
    async def on_submit(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        team, user = _team(body), _user(body)
        allowed, t = await admin_and_language(client, services, team, user)
        if allowed is None:
            errors = view_errors({Field.MODEL: CHECK_FAILED}, view, t)
            await ack(response_action="errors", errors=errors)
            return
        if not allowed:
            logger.warning(
                "%s of %s submitted research settings without being an admin", user, team
            )
            await ack(response_action="update", view=message_modal(NOT_ADMIN, t=t))
            return
        values = (view.get("state") or {}).get("values") or {}
        form = form_from_state(values)
        # The key first: checking it with Model Studio is the slow part (bounded under
        # Slack's 3 seconds), and a key refused leaves everything as it was.
        key, remove_key = key_from_state(values)
        try:
            if key:
                refused = await services.model_keys.save(team, user, key)
                if refused is not None:
                    await ack(response_action="errors", errors={KEY_BLOCK: show(t, refused)})
                    return
            elif remove_key:
                await services.model_keys.remove(team, user)
        except Exception:
            logger.exception("could not save the model key of %s", team)
            await ack(response_action="errors", errors={KEY_BLOCK: t.gettext(SAVE_FAILED)})
            return
        try:
            saved = await services.settings.save(team, user, form)
        except SettingsInvalid as exc:
            await ack(response_action="errors", errors=view_errors(exc.errors, view, t))
            return
        except Exception:
            logger.exception("could not save the research settings of %s", team)
            errors = view_errors({Field.MODEL: SAVE_FAILED}, view, t)
            await ack(response_action="errors", errors=errors)
            return
        await ack(
            response_action="update",
            view=saved_modal(saved, default_model=services.settings.default_model, t=t),
        )
        try:
            await publish_home(client, services, team, user)
        except Exception:
            logger.exception("could not refresh the Home tab of %s after saving settings", user)


def _team(body: dict[str, Any]) -> str:
    team = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id")
    return str(team or (body.get("view") or {}).get("team_id") or "")


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")
