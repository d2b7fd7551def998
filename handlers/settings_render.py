"""Block Kit for a workspace's research settings: the modal, its submitted state, the summary
on the Home tab. A saved token is never rendered: only whether one is saved."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bot.report import Delivery
from bot.research_options import DETAILED, SUMMARY
from bot.workspace_settings import (
    MAINLINE,
    MAX_TOKEN_CHARS,
    MAX_URL_CHARS,
    NO_SECRET_KEY,
    OTHER_MODEL,
    SNAPSHOT,
    Field,
    McpServer,
    SettingsForm,
    TokenState,
    WorkspaceSettings,
)
from handlers.render import SECTION_LIMIT, clip, escaped

SETTINGS_CALLBACK: Final = "workspace_settings"
OPEN_SETTINGS_ACTION: Final = "workspace_settings_open"
INPUT_ACTION: Final = "input"  # every input element's action_id; blocks tell them apart
TITLE: Final = "Research settings"
KEEP_TOKEN_HINT: Final = "A token is saved: leave empty to keep the saved token."
NEW_TOKEN_HINT: Final = (
    "Sent to the server as `Authorization: Bearer …`. Stored encrypted and never shown again."
)

_MODEL_LABELS: Final = {
    MAINLINE: f"{MAINLINE} (mainline)",
    SNAPSHOT: f"{SNAPSHOT} (snapshot, MCP tools)",
    OTHER_MODEL: "Another model…",
}
_LENGTH_LABELS: Final = {DETAILED: "Detailed report", SUMMARY: "Summary"}
_CLARIFY_VALUE: Final = "ask"
_DELIVERY_LABELS: Final = {
    Delivery.CANVAS_AND_FILE: "A canvas and the Markdown file",
    Delivery.CANVAS: "A canvas only",
    Delivery.FILE: "The Markdown file only",
}
_REMOVE_VALUE: Final = "remove"
# A plain_text_input holds at most this many characters, its initial value included.
INPUT_LIMIT: Final = 3000
# How much of the MCP server's tool list and address the summary repeats; the modal has all.
SUMMARY_TOOLS_CHARS: Final = 600
SUMMARY_URL_CHARS: Final = 300


def _text(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _option(value: str, label: str) -> dict[str, Any]:
    return {"text": _text(label), "value": value}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}}


def _input(
    field: Field,
    label: str,
    element: dict[str, Any],
    *,
    optional: bool = False,
    hint: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": field.value,
        "label": _text(label),
        "element": {**element, "action_id": INPUT_ACTION},
        "optional": optional,
    }
    if hint:
        block["hint"] = _text(hint)
    return block


def _text_input(
    initial: str = "",
    *,
    placeholder: str = "",
    max_length: int = INPUT_LIMIT,
    multiline: bool = False,
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "max_length": max_length,
        "multiline": multiline,
    }
    if initial:
        element["initial_value"] = initial
    if placeholder:
        element["placeholder"] = _text(placeholder)
    return element


# --- the modal ------------------------------------------------------------------------------


def settings_modal(
    current: WorkspaceSettings, *, default_model: str, can_save_tokens: bool
) -> dict[str, Any]:
    model = current.model or default_model
    choice = model if model in (MAINLINE, SNAPSHOT) else OTHER_MODEL
    options = [_option(v, label) for v, label in _MODEL_LABELS.items()]
    clarify = _option(_CLARIFY_VALUE, "Ask one clarifying question before researching")
    length = current.output_format if current.output_format in _LENGTH_LABELS else DETAILED
    lengths = [_option(v, label) for v, label in _LENGTH_LABELS.items()]
    mcp = current.mcp or McpServer(label="", url="")
    delivery = current.delivery or Delivery.CANVAS_AND_FILE

    checkboxes: dict[str, Any] = {"type": "checkboxes", "options": [clarify]}
    if current.clarify is not False:
        checkboxes["initial_options"] = [clarify]

    blocks: list[dict[str, Any]] = [
        _section(
            "These apply to new research conversations in this workspace. Options written in a "
            "request (`--summary`, `--detailed`, `--no-clarify`, `--model`) still win."
        ),
        _input(
            Field.MODEL,
            "Research model",
            {
                "type": "static_select",
                "options": options,
                "initial_option": _option(choice, _MODEL_LABELS[choice]),
            },
        ),
        _input(
            Field.CUSTOM_MODEL,
            "Other model name",
            _text_input(
                model if choice == OTHER_MODEL else "",
                placeholder="qwen-deep-research-…",
                max_length=100,
            ),
            optional=True,
            hint="Used only when “Another model…” is chosen above.",
        ),
        _input(
            Field.LENGTH,
            "Report length",
            {
                "type": "radio_buttons",
                "options": lengths,
                "initial_option": _option(length, _LENGTH_LABELS[length]),
            },
        ),
        _input(Field.CLARIFY, "Clarifying question", checkboxes, optional=True),
        _input(
            Field.DELIVERY,
            "Reports arrive as",
            {
                "type": "radio_buttons",
                "options": [_option(d.value, label) for d, label in _DELIVERY_LABELS.items()],
                "initial_option": _option(delivery.value, _DELIVERY_LABELS[delivery]),
            },
            hint="Where Slack can't make a canvas (a free plan's limit, say), the file comes "
            "instead.",
        ),
        {"type": "divider"},
        _section(
            f"*MCP research tools* (only with `{SNAPSHOT}`)\nResearch can also call the tools "
            "of one MCP server. Clear these fields to remove the server."
        ),
        _input(
            Field.MCP_LABEL,
            "Server label",
            _text_input(mcp.label, placeholder="knowledge-base", max_length=64),
            optional=True,
        ),
        _input(
            Field.MCP_URL,
            "Server URL",
            _text_input(
                mcp.url, placeholder="https://mcp.example.com/sse", max_length=MAX_URL_CHARS
            ),
            optional=True,
        ),
        _input(
            Field.MCP_TOOLS,
            "Allowed tools",
            _text_input(tools_value(mcp.allowed_tools), placeholder="search, fetch"),
            optional=True,
            hint="Tool names separated by commas.",
        ),
    ]
    has_token = mcp.token is not TokenState.NONE
    if can_save_tokens:
        hint = KEEP_TOKEN_HINT if has_token else NEW_TOKEN_HINT
        if mcp.token is TokenState.UNREADABLE:
            hint = (
                "A token is saved but can't be decrypted with the bot's current SECRET_KEY: "
                "enter it again."
            )
        blocks.append(
            _input(
                Field.MCP_TOKEN,
                "Bearer token",
                _text_input(max_length=MAX_TOKEN_CHARS),  # never an initial value
                optional=True,
                hint=hint,
            )
        )
    else:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": NO_SECRET_KEY}]})
    if has_token:
        remove = _option(_REMOVE_VALUE, "Remove the saved token")
        blocks.append(
            _input(
                Field.MCP_TOKEN_REMOVE,
                "Saved token",
                {"type": "checkboxes", "options": [remove]},
                optional=True,
            )
        )
    return {
        "type": "modal",
        "callback_id": SETTINGS_CALLBACK,
        "title": _text(TITLE),
        "submit": _text("Save"),
        "close": _text("Cancel"),
        "blocks": blocks,
    }


def tools_value(tools: tuple[str, ...]) -> str:
    """The saved tool names as the tools field shows them: with a space after each comma when
    that fits the field, else without. (They were typed into the same field, with at least one
    separator each, so the compact form always fits.)"""
    spaced = ", ".join(tools)
    return spaced if len(spaced) <= INPUT_LIMIT else ",".join(tools)


def form_from_state(values: Mapping[str, Any]) -> SettingsForm:
    """The submitted form, from a view_submission's `view.state.values`."""

    def element(field: Field) -> Mapping[str, Any]:
        block = values.get(field.value)
        value = block.get(INPUT_ACTION) if isinstance(block, Mapping) else None
        return value if isinstance(value, Mapping) else {}

    def text(field: Field) -> str:
        value = element(field).get("value")
        return value if isinstance(value, str) else ""

    def selected(field: Field) -> str:
        option = element(field).get("selected_option")
        value = option.get("value") if isinstance(option, Mapping) else None
        return value if isinstance(value, str) else ""

    def ticked(field: Field, value: str) -> bool:
        options = element(field).get("selected_options") or []
        return any(isinstance(o, Mapping) and o.get("value") == value for o in options)

    return SettingsForm(
        model=selected(Field.MODEL),
        custom_model=text(Field.CUSTOM_MODEL),
        output_format=selected(Field.LENGTH),
        clarify=ticked(Field.CLARIFY, _CLARIFY_VALUE),
        mcp_label=text(Field.MCP_LABEL),
        mcp_url=text(Field.MCP_URL),
        mcp_tools=text(Field.MCP_TOOLS),
        mcp_token=text(Field.MCP_TOKEN),
        remove_token=ticked(Field.MCP_TOKEN_REMOVE, _REMOVE_VALUE),
        # A form from before the field existed keeps the default.
        delivery=selected(Field.DELIVERY) or Delivery.CANVAS_AND_FILE.value,
    )


def view_errors(errors: Mapping[Field, str], view: Mapping[str, Any]) -> dict[str, str]:
    """Errors keyed by the view's input block ids; one for a block the view lacks goes on
    the model field, so no sentence is lost."""
    present = {b.get("block_id") for b in view.get("blocks") or [] if b.get("type") == "input"}
    result: dict[str, str] = {}
    for field, sentence in errors.items():
        block = field.value if field.value in present else Field.MODEL.value
        result.setdefault(block, sentence)
    return result


def message_modal(text: str, *, title: str = TITLE) -> dict[str, Any]:
    """A modal with one sentence and a Close button."""
    return {
        "type": "modal",
        "title": _text(title),
        "close": _text("Close"),
        "blocks": [_section(text)],
    }


def saved_modal(settings: WorkspaceSettings, *, default_model: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": _text(TITLE),
        "close": _text("Done"),
        "blocks": [
            _section("Saved. New research conversations in this workspace use these settings."),
            *summary_blocks(settings, default_model=default_model),
        ],
    }


# --- the summary (Home tab, saved modal) ------------------------------------------------------


def summary_blocks(settings: WorkspaceSettings, *, default_model: str) -> list[dict[str, Any]]:
    model = f"`{escaped(settings.model or default_model, 100)}`"
    if not settings.model:
        model += " (the bot's default)"
    length = {
        DETAILED: "detailed report",
        SUMMARY: "summary",
    }.get(settings.output_format or "", "detailed report (the model's default)")
    clarify = "skipped" if settings.clarify is False else "asked first"
    lines = [
        f"*Model:* {model}",
        f"*Report length:* {length}",
        f"*Clarifying question:* {clarify}",
        f"*Reports:* {_DELIVERY_LABELS[settings.delivery or Delivery.CANVAS_AND_FILE].lower()}",
        f"*MCP server:* {_mcp_line(settings.mcp)}",
    ]
    blocks = [_section("\n".join(lines))]
    if settings.saved:
        when = int(settings.updated_at)
        fallback = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")
        by = f" by <@{settings.updated_by}>" if settings.updated_by else ""
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Last changed{by} <!date^{when}^{{date_short_pretty}} at "
                        f"{{time}}|{fallback}>.",
                    }
                ],
            }
        )
    return blocks


def _mcp_line(mcp: McpServer | None) -> str:
    if mcp is None:
        return "none"
    token = {
        TokenState.NONE: "no token",
        TokenState.SAVED: "token saved",
        TokenState.UNREADABLE: "token saved but unreadable with the current SECRET_KEY: "
        "an admin needs to enter it again",
    }[mcp.token]
    url = escaped(mcp.url, SUMMARY_URL_CHARS)
    tools = _tools_line(mcp.allowed_tools)
    return f"`{escaped(mcp.label, 100)}` at {url} · tools: {tools} · {token}"


def _tools_line(tools: tuple[str, ...]) -> str:
    """As many tool names as fit in SUMMARY_TOOLS_CHARS, then how many more there are."""
    shown: list[str] = []
    size = 0
    for name in tools:
        item = f"`{escaped(name, 100)}`"
        if size + len(item) + 2 > SUMMARY_TOOLS_CHARS:
            break
        shown.append(item)
        size += len(item) + 2
    line = ", ".join(shown) or "none"
    left = len(tools) - len(shown)
    if left:
        line += f" and {left} more" if shown else f"{left} tools"
    return line


def home_blocks(
    settings: WorkspaceSettings | None, *, default_model: str, can_change: bool
) -> list[dict[str, Any]]:
    """The Home tab's settings section; the button only for admins and owners."""
    blocks: list[dict[str, Any]] = [_section("*Research settings for this workspace*")]
    if settings is None:
        blocks.append(_section("The research settings are not available right now."))
    else:
        blocks += summary_blocks(settings, default_model=default_model)
    if can_change:
        blocks.append(
            {
                "type": "actions",
                "block_id": "workspace_settings",
                "elements": [
                    {
                        "type": "button",
                        "action_id": OPEN_SETTINGS_ACTION,
                        "text": _text("Change settings"),
                        "value": "open",
                    }
                ],
            }
        )
    else:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "Workspace admins and owners can change these with "
                        "`/research settings`.",
                    }
                ],
            }
        )
    return blocks
