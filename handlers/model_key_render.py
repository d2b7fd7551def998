"""The settings form's Model Studio API key: its blocks and its submitted value. A saved key is
never rendered, not even in part: only whether the workspace has one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bot.i18n import N_
from bot.workspaces import KeyStatus
from handlers.i18n import ENGLISH_TEXT, Translations

KEY_BLOCK: Final = "model_key"
REMOVE_BLOCK: Final = "model_key_remove"
ACTION: Final = "input"
_REMOVE: Final = "remove"
MAX_KEY_CHARS: Final = 200


_INTROS: Final = {
    KeyStatus.OWN: N_("This workspace uses its own key. Enter a new one to replace it."),
    KeyStatus.SHARED: N_(
        "This workspace uses the bot's shared key. Enter your own to bill Model Studio "
        "usage to your account."
    ),
    KeyStatus.NONE: N_("This workspace has no key yet: research and answers wait for one."),
}
HEADING: Final = N_("Model Studio API key")
NOT_STORABLE: Final = N_("Keys cannot be saved until the bot's operator sets SECRET_KEY.")
KEY_LABEL: Final = N_("API key")
KEY_HINT: Final = N_(
    "From Model Studio's Beijing region. Checked with Model Studio, stored encrypted and never "
    "shown again; leave empty to keep the current one."
)
REMOVE_KEY: Final = N_("Remove this workspace's key")
SAVED_KEY: Final = N_("Saved key")


def key_blocks(
    status: KeyStatus, *, storable: bool, t: Translations = ENGLISH_TEXT
) -> list[dict[str, Any]]:
    intro = t.gettext(_INTROS[status])
    blocks: list[dict[str, Any]] = [
        {"type": "divider"},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*{t.gettext(HEADING)}*\n{intro}"},
        },
    ]
    if not storable:
        note = t.gettext(NOT_STORABLE)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
        return blocks
    blocks.append(
        {
            "type": "input",
            "block_id": KEY_BLOCK,
            "optional": True,
            "label": {"type": "plain_text", "text": t.gettext(KEY_LABEL)},
            "element": {
                "type": "plain_text_input",
                "action_id": ACTION,
                "max_length": MAX_KEY_CHARS,
                "placeholder": {"type": "plain_text", "text": "sk-…"},
            },  # never an initial value
            "hint": {"type": "plain_text", "text": t.gettext(KEY_HINT)},
        }
    )
    if status is KeyStatus.OWN:
        remove = {"text": {"type": "plain_text", "text": t.gettext(REMOVE_KEY)}}
        blocks.append(
            {
                "type": "input",
                "block_id": REMOVE_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": t.gettext(SAVED_KEY)},
                "element": {
                    "type": "checkboxes",
                    "action_id": ACTION,
                    "options": [{**remove, "value": _REMOVE}],
                },
            }
        )
    return blocks


def key_from_state(values: Mapping[str, Any]) -> tuple[str, bool]:
    """(the key entered, "" for none; whether removing the saved key was ticked)."""

    def element(block_id: str) -> Mapping[str, Any]:
        block = values.get(block_id)
        value = block.get(ACTION) if isinstance(block, Mapping) else None
        return value if isinstance(value, Mapping) else {}

    entered = element(KEY_BLOCK).get("value")
    options = element(REMOVE_BLOCK).get("selected_options") or []
    remove = any(isinstance(o, Mapping) and o.get("value") == _REMOVE for o in options)
    return (entered.strip() if isinstance(entered, str) else ""), remove


_HOME_LINES: Final = {
    KeyStatus.OWN: N_("*Model Studio key*: this workspace's own."),
    KeyStatus.SHARED: N_("*Model Studio key*: the bot's shared key."),
    KeyStatus.NONE: N_(
        "*Model Studio key*: none yet, so research and answers wait for one. A workspace "
        "admin can add it in the research settings."
    ),
}


def key_home_block(status: KeyStatus, t: Translations = ENGLISH_TEXT) -> dict[str, Any]:
    """The Home tab's line on the workspace's key: whose it is, never any of it."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": t.gettext(_HOME_LINES[status])}}
