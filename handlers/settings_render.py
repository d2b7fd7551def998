"""Block Kit for a workspace's research settings: the modal, its submitted state, the summary
on the Home tab. A saved token is never rendered: only whether one is saved."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bot.i18n import N_, Text, say, say_n
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
from handlers.i18n import ENGLISH_TEXT, Translations, show
from handlers.render import SECTION_LIMIT, clip, escaped

SETTINGS_CALLBACK: Final = "workspace_settings"
OPEN_SETTINGS_ACTION: Final = "workspace_settings_open"
INPUT_ACTION: Final = "input"  # every input element's action_id; blocks tell them apart
TITLE: Final = N_("Research settings")  # a modal title: at most 24 characters
KEEP_TOKEN_HINT: Final = N_("A token is saved: leave empty to keep the saved token.")
NEW_TOKEN_HINT: Final = N_(
    "Sent to the server as `Authorization: Bearer …`. Stored encrypted and never shown again."
)
UNREADABLE_TOKEN_HINT: Final = N_(
    "A token is saved but can't be decrypted with the bot's current SECRET_KEY: enter it again."
)
SAVE: Final = N_("Save")
CANCEL: Final = N_("Cancel")
CLOSE: Final = N_("Close")
DONE: Final = N_("Done")
INTRO: Final = N_(
    "These apply to new research conversations in this workspace. Options written in a "
    "request (`--summary`, `--detailed`, `--no-clarify`, `--model`) still win."
)
MCP_INTRO: Final = N_(
    "*MCP research tools* (only with `{snapshot}`)\nResearch can also call the tools of one "
    "MCP server. Clear these fields to remove the server."
)
DELIVERY_HINT: Final = N_(
    "Where Slack can't make a canvas (a free plan's limit, say), the file comes instead."
)
SAVED: Final = N_("Saved. New research conversations in this workspace use these settings.")

_MODEL_LABELS: Final = {
    MAINLINE: say(N_("{model} (mainline)"), model=MAINLINE),
    SNAPSHOT: say(N_("{model} (snapshot, MCP tools)"), model=SNAPSHOT),
    OTHER_MODEL: say(N_("Another model…")),
}
_LENGTH_LABELS: Final = {DETAILED: N_("Detailed report"), SUMMARY: N_("Summary")}
_CLARIFY_VALUE: Final = "ask"
_DELIVERY_LABELS: Final = {
    Delivery.CANVAS_AND_FILE: N_("A canvas and the Markdown file"),
    Delivery.CANVAS: N_("A canvas only"),
    Delivery.FILE: N_("The Markdown file only"),
}
# How the summary (Home tab, saved modal) names each choice.
_DELIVERY_WORDS: Final = {
    Delivery.CANVAS_AND_FILE: N_("a canvas and the Markdown file"),
    Delivery.CANVAS: N_("a canvas only"),
    Delivery.FILE: N_("the Markdown file only"),
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
    current: WorkspaceSettings,
    *,
    default_model: str,
    can_save_tokens: bool,
    t: Translations = ENGLISH_TEXT,
) -> dict[str, Any]:
    model = current.model or default_model
    choice = model if model in (MAINLINE, SNAPSHOT) else OTHER_MODEL
    labels = {value: show(t, label) for value, label in _MODEL_LABELS.items()}
    options = [_option(v, label) for v, label in labels.items()]
    ask_first = t.gettext(N_("Ask one clarifying question before researching"))
    clarify = _option(_CLARIFY_VALUE, ask_first)
    length = current.output_format if current.output_format in _LENGTH_LABELS else DETAILED
    lengths = [_option(v, t.gettext(label)) for v, label in _LENGTH_LABELS.items()]
    mcp = current.mcp or McpServer(label="", url="")
    delivery = current.delivery or Delivery.CANVAS_AND_FILE
    deliveries = {d.value: t.gettext(label) for d, label in _DELIVERY_LABELS.items()}

    checkboxes: dict[str, Any] = {"type": "checkboxes", "options": [clarify]}
    if current.clarify is not False:
        checkboxes["initial_options"] = [clarify]

    other_hint = say(N_("Used only when “{choice}” is chosen above."), choice=labels[OTHER_MODEL])
    blocks: list[dict[str, Any]] = [
        _section(t.gettext(INTRO)),
        _input(
            Field.MODEL,
            t.gettext(N_("Research model")),
            {
                "type": "static_select",
                "options": options,
                "initial_option": _option(choice, labels[choice]),
            },
        ),
        _input(
            Field.CUSTOM_MODEL,
            t.gettext(N_("Other model name")),
            _text_input(
                model if choice == OTHER_MODEL else "",
                placeholder="qwen-deep-research-…",
                max_length=100,
            ),
            optional=True,
            hint=show(t, other_hint),
        ),
        _input(
            Field.LENGTH,
            t.gettext(N_("Report length")),
            {
                "type": "radio_buttons",
                "options": lengths,
                "initial_option": _option(length, t.gettext(_LENGTH_LABELS[length])),
            },
        ),
        _input(Field.CLARIFY, t.gettext(N_("Clarifying question")), checkboxes, optional=True),
        _input(
            Field.DELIVERY,
            t.gettext(N_("Reports arrive as")),
            {
                "type": "radio_buttons",
                "options": [_option(value, label) for value, label in deliveries.items()],
                "initial_option": _option(delivery.value, deliveries[delivery.value]),
            },
            hint=t.gettext(DELIVERY_HINT),
        ),
        {"type": "divider"},
        _section(show(t, say(MCP_INTRO, snapshot=SNAPSHOT))),
        _input(
            Field.MCP_LABEL,
            t.gettext(N_("Server label")),
            _text_input(mcp.label, placeholder="knowledge-base", max_length=64),
            optional=True,
        ),
        _input(
            Field.MCP_URL,
            t.gettext(N_("Server URL")),
            _text_input(
                mcp.url, placeholder="https://mcp.example.com/sse", max_length=MAX_URL_CHARS
            ),
            optional=True,
        ),
        _input(
            Field.MCP_TOOLS,
            t.gettext(N_("Allowed tools")),
            _text_input(tools_value(mcp.allowed_tools), placeholder="search, fetch"),
            optional=True,
            hint=t.gettext(N_("Tool names separated by commas.")),
        ),
    ]
    has_token = mcp.token is not TokenState.NONE
    if can_save_tokens:
        hint = KEEP_TOKEN_HINT if has_token else NEW_TOKEN_HINT
        if mcp.token is TokenState.UNREADABLE:
            hint = UNREADABLE_TOKEN_HINT
        blocks.append(
            _input(
                Field.MCP_TOKEN,
                t.gettext(N_("Bearer token")),
                _text_input(max_length=MAX_TOKEN_CHARS),  # never an initial value
                optional=True,
                hint=t.gettext(hint),
            )
        )
    else:
        note = t.gettext(NO_SECRET_KEY)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    if has_token:
        remove = _option(_REMOVE_VALUE, t.gettext(N_("Remove the saved token")))
        blocks.append(
            _input(
                Field.MCP_TOKEN_REMOVE,
                t.gettext(N_("Saved token")),
                {"type": "checkboxes", "options": [remove]},
                optional=True,
            )
        )
    return {
        "type": "modal",
        "callback_id": SETTINGS_CALLBACK,
        "title": _text(t.gettext(TITLE)),
        "submit": _text(t.gettext(SAVE)),
        "close": _text(t.gettext(CANCEL)),
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


def view_errors(
    errors: Mapping[Field, Text], view: Mapping[str, Any], t: Translations = ENGLISH_TEXT
) -> dict[str, str]:
    """Errors keyed by the view's input block ids, in `t`'s language; one for a block the
    view lacks goes on the model field, so no sentence is lost."""
    present = {b.get("block_id") for b in view.get("blocks") or [] if b.get("type") == "input"}
    result: dict[str, str] = {}
    for field, sentence in errors.items():
        block = field.value if field.value in present else Field.MODEL.value
        result.setdefault(block, show(t, sentence))
    return result


def message_modal(
    text: Text, *, title: str = TITLE, t: Translations = ENGLISH_TEXT
) -> dict[str, Any]:
    """A modal with one sentence and a Close button."""
    return {
        "type": "modal",
        "title": _text(t.gettext(title)),
        "close": _text(t.gettext(CLOSE)),
        "blocks": [_section(show(t, text))],
    }


def saved_modal(
    settings: WorkspaceSettings, *, default_model: str, t: Translations = ENGLISH_TEXT
) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": _text(t.gettext(TITLE)),
        "close": _text(t.gettext(DONE)),
        "blocks": [
            _section(t.gettext(SAVED)),
            *summary_blocks(settings, default_model=default_model, t=t),
        ],
    }


# --- the summary (Home tab, saved modal) ------------------------------------------------------


def summary_blocks(
    settings: WorkspaceSettings, *, default_model: str, t: Translations = ENGLISH_TEXT
) -> list[dict[str, Any]]:
    model = f"`{escaped(settings.model or default_model, 100)}`"
    if not settings.model:
        model = show(t, say(N_("{model} (the bot's default)"), model=model))
    length = {
        DETAILED: N_("detailed report"),
        SUMMARY: N_("summary"),
    }.get(settings.output_format or "", N_("detailed report (the model's default)"))
    clarify = N_("skipped") if settings.clarify is False else N_("asked first")
    reports = _DELIVERY_WORDS[settings.delivery or Delivery.CANVAS_AND_FILE]
    lines = [
        show(t, say(N_("*Model:* {model}"), model=model)),
        show(t, say(N_("*Report length:* {length}"), length=say(length))),
        show(t, say(N_("*Clarifying question:* {clarify}"), clarify=say(clarify))),
        show(t, say(N_("*Reports:* {reports}"), reports=say(reports))),
        show(t, say(N_("*MCP server:* {server}"), server=_mcp_line(settings.mcp, t))),
    ]
    blocks = [_section("\n".join(lines))]
    if settings.saved:
        when = int(settings.updated_at)
        fallback = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")
        # Slack writes the date and time in the reader's own locale and time zone.
        tokens = t.gettext(N_("{date_short_pretty} at {time}"))
        date = f"<!date^{when}^{tokens}|{fallback}>"
        if settings.updated_by:
            changed = say(
                N_("Last changed by {user} {date}."), user=f"<@{settings.updated_by}>", date=date
            )
        else:
            changed = say(N_("Last changed {date}."), date=date)
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": show(t, changed)}]}
        )
    return blocks


def _mcp_line(mcp: McpServer | None, t: Translations) -> str:
    if mcp is None:
        return t.gettext(N_("none"))
    token = {
        TokenState.NONE: N_("no token"),
        TokenState.SAVED: N_("token saved"),
        TokenState.UNREADABLE: N_(
            "token saved but unreadable with the current SECRET_KEY: an admin needs to enter "
            "it again"
        ),
    }[mcp.token]
    line = say(
        N_("`{label}` at {url} · tools: {tools} · {token}"),
        label=escaped(mcp.label, 100),
        url=escaped(mcp.url, SUMMARY_URL_CHARS),
        tools=_tools_line(mcp.allowed_tools, t),
        token=say(token),
    )
    return show(t, line)


def _tools_line(tools: tuple[str, ...], t: Translations) -> str:
    """As many tool names as fit in SUMMARY_TOOLS_CHARS, then how many more there are."""
    shown: list[str] = []
    size = 0
    for name in tools:
        item = f"`{escaped(name, 100)}`"
        if size + len(item) + 2 > SUMMARY_TOOLS_CHARS:
            break
        shown.append(item)
        size += len(item) + 2
    line = ", ".join(shown) or t.gettext(N_("none"))
    left = len(tools) - len(shown)
    if left and shown:
        line += " " + show(t, say_n("and {count} more", "and {count} more", left))
    elif left:
        line = show(t, say_n("{count} tool", "{count} tools", left))
    return line


def home_blocks(
    settings: WorkspaceSettings | None,
    *,
    default_model: str,
    can_change: bool,
    t: Translations = ENGLISH_TEXT,
) -> list[dict[str, Any]]:
    """The Home tab's settings section; the button only for admins and owners."""
    blocks: list[dict[str, Any]] = [
        _section(t.gettext(N_("*Research settings for this workspace*")))
    ]
    if settings is None:
        blocks.append(_section(t.gettext(N_("The research settings are not available right now."))))
    else:
        blocks += summary_blocks(settings, default_model=default_model, t=t)
    if can_change:
        blocks.append(
            {
                "type": "actions",
                "block_id": "workspace_settings",
                "elements": [
                    {
                        "type": "button",
                        "action_id": OPEN_SETTINGS_ACTION,
                        "text": _text(t.gettext(N_("Change settings"))),
                        "value": "open",
                    }
                ],
            }
        )
    else:
        who = t.gettext(
            N_("Workspace admins and owners can change these with `/research settings`.")
        )
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": who}]})
    return blocks
