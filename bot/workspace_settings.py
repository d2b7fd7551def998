"""Per-workspace research settings: the value, its validation (with sentences for the person
filling in the form) and the service that keeps them and hands ResearchService its defaults.

Only workspace admins and owners change them; checking that is the Slack glue's job
(handlers/settings.py), since only Slack knows who is an admin.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from bot.i18n import N_, Text, say
from bot.logs import remember_secret
from bot.ports import WorkspaceSettingsRepository
from bot.records import SettingsRow
from bot.report import Delivery
from bot.research_options import (
    DETAILED,
    SUMMARY,
    ResearchOptions,
    WorkspaceResearch,
    supports_research_tools,
)
from bot.secrets_box import SecretBox, SecretError

logger = logging.getLogger(__name__)

MAINLINE: Final = "qwen-deep-research"
SNAPSHOT: Final = "qwen-deep-research-2025-12-15"
OTHER_MODEL: Final = "other"  # the form's choice for "another model", named in custom_model
OUTPUT_FORMATS: Final = (DETAILED, SUMMARY)
_DELIVERIES: Final = frozenset(d.value for d in Delivery)

MAX_URL_CHARS: Final = 2048
MAX_TOKEN_CHARS: Final = 3000  # the most a Slack plain_text_input takes
MAX_TOOLS: Final = 50

_MODEL_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_LABEL: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TOOL: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_TOOL_SEPARATORS: Final = re.compile(r"[,\s]+")
# A bearer token is one line of visible ASCII (RFC 6750's b64token, and the JWTs and opaque
# keys MCP servers hand out).
_TOKEN: Final = re.compile(r"^[\x21-\x7e]+$")

NO_SECRET_KEY: Final = N_(
    "MCP tokens can't be saved because the bot has no SECRET_KEY setting. Ask whoever runs "
    "the bot to set one; until then MCP servers can only be used without a token."
)


class Field(StrEnum):
    """The form's fields; errors are keyed by them."""

    MODEL = "model"
    CUSTOM_MODEL = "custom_model"
    LENGTH = "length"
    CLARIFY = "clarify"
    MCP_LABEL = "mcp_label"
    MCP_URL = "mcp_url"
    MCP_TOOLS = "mcp_tools"
    MCP_TOKEN = "mcp_token"
    MCP_TOKEN_REMOVE = "mcp_token_remove"
    DELIVERY = "delivery"


class TokenState(StrEnum):
    NONE = "none"
    SAVED = "saved"
    UNREADABLE = "unreadable"  # saved, but this SECRET_KEY cannot decrypt it


@dataclass(frozen=True, slots=True)
class McpServer:
    label: str
    url: str
    allowed_tools: tuple[str, ...] = ()
    token: TokenState = TokenState.NONE


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    """What a workspace chose. None: never chosen, so the bot's or the model's default."""

    model: str | None = None
    output_format: str | None = None
    clarify: bool | None = None
    mcp: McpServer | None = None
    delivery: Delivery | None = None
    updated_by: str = ""
    updated_at: float = 0.0

    @property
    def saved(self) -> bool:
        return self.updated_at > 0


@dataclass(frozen=True, slots=True)
class SettingsForm:
    """What the settings form submitted, as typed. The token is never part of a repr."""

    model: str
    custom_model: str = ""
    output_format: str = DETAILED
    clarify: bool = True
    mcp_label: str = ""
    mcp_url: str = ""
    mcp_tools: str = ""
    mcp_token: str = field(default="", repr=False)
    remove_token: bool = False
    delivery: str = Delivery.CANVAS_AND_FILE.value


class TokenChange(StrEnum):
    KEEP = "keep"
    REPLACE = "replace"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class ValidSettings:
    model: str
    output_format: str
    clarify: bool
    mcp: McpServer | None
    token_change: TokenChange
    new_token: str = field(default="", repr=False)
    delivery: Delivery = Delivery.CANVAS_AND_FILE


class SettingsInvalid(Exception):
    """The form cannot be saved; `errors` holds one sentence per field to fix."""

    def __init__(self, errors: dict[Field, Text]) -> None:
        super().__init__(", ".join(errors))  # field names only: never the values
        self.errors = errors


def validate(form: SettingsForm, *, saved: WorkspaceSettings, can_seal: bool) -> ValidSettings:
    """The settings to store, or SettingsInvalid with a sentence for each field to fix."""
    errors: dict[Field, Text] = {}

    model = _model(form, errors)
    if form.output_format not in OUTPUT_FORMATS:
        errors[Field.LENGTH] = N_("Choose a report length: detailed or summary.")
    if form.delivery not in _DELIVERIES:
        errors[Field.DELIVERY] = N_("Choose how reports arrive: canvas and file, canvas or file.")

    label = form.mcp_label.strip()
    url = form.mcp_url.strip()
    tools_text = form.mcp_tools.strip()
    token = _strip_bearer(form.mcp_token.strip())
    if not (label or url or tools_text or token):
        change = TokenChange.REMOVE
        return _valid_or_raise(model, form, None, change, "", errors)

    if model is not None and not supports_research_tools(model):
        errors[Field.MCP_URL] = say(
            N_(
                "MCP servers work only with the `{snapshot}` model. Choose that model above, "
                "or clear the MCP fields to keep `{model}`."
            ),
            snapshot=SNAPSHOT,
            model=model,
        )
    if not label:
        errors[Field.MCP_LABEL] = N_("Give the MCP server a label, for example `knowledge-base`.")
    elif not _LABEL.match(label):
        errors[Field.MCP_LABEL] = N_(
            "A server label uses letters, digits, - and _ (up to 64 characters), starting with a "
            "letter or digit."
        )
    url_problem = _url_problem(url)
    if url_problem is not None:
        errors.setdefault(Field.MCP_URL, url_problem)
    tools = _tools(tools_text, errors)

    change, new_token = _token_change(form, token, url, saved, can_seal, errors)
    mcp = McpServer(label=label, url=url, allowed_tools=tools)
    return _valid_or_raise(model, form, mcp, change, new_token, errors)


def _valid_or_raise(
    model: str | None,
    form: SettingsForm,
    mcp: McpServer | None,
    change: TokenChange,
    new_token: str,
    errors: dict[Field, Text],
) -> ValidSettings:
    if errors or model is None:
        raise SettingsInvalid(errors or {Field.MODEL: N_("Choose a research model.")})
    return ValidSettings(
        model=model,
        output_format=form.output_format,
        clarify=form.clarify,
        mcp=mcp,
        token_change=change,
        new_token=new_token,
        delivery=Delivery(form.delivery),
    )


def _model(form: SettingsForm, errors: dict[Field, Text]) -> str | None:
    if form.model in (MAINLINE, SNAPSHOT):
        return form.model
    if form.model != OTHER_MODEL:
        errors[Field.MODEL] = N_("Choose a research model.")
        return None
    name = form.custom_model.strip()
    if not name:
        errors[Field.CUSTOM_MODEL] = N_(
            "Type the model's name here, or choose one of the two research models above."
        )
        return None
    if not _MODEL_NAME.match(name):
        errors[Field.CUSTOM_MODEL] = N_(
            "A model name uses letters, digits, dots, dashes and underscores, up to 100 characters."
        )
        return None
    return name


def _url_problem(url: str) -> str | None:
    """A marked sentence on what is wrong with the address, or None."""
    if not url:
        return N_("Give the MCP server's address, starting with https://.")
    if len(url) > MAX_URL_CHARS or any(c.isspace() for c in url):
        return N_(
            "That doesn't look like a URL: it should be one line, like https://mcp.example.com/sse."
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError:
        return N_("That doesn't look like a URL: check it, like https://mcp.example.com/sse.")
    if parts.scheme.lower() != "https":
        return N_("The MCP server's address must start with https:// (the token travels with it).")
    if not parts.hostname:
        return N_("That URL has no host name: it should look like https://mcp.example.com/sse.")
    if parts.username is not None or parts.password is not None:
        return N_("Leave credentials out of the URL: put the token in the token field instead.")
    return None


def _tools(text: str, errors: dict[Field, Text]) -> tuple[str, ...]:
    names = [n for n in _TOOL_SEPARATORS.split(text) if n]
    if not names:
        errors[Field.MCP_TOOLS] = N_(
            "List the tools research may use, separated by commas, for example `search, fetch`."
        )
        return ()
    bad = [n for n in names if not _TOOL.match(n)]
    if bad:
        errors[Field.MCP_TOOLS] = say(
            N_(
                "`{name}` isn't a tool name: separate names with commas, for example "
                "`search, fetch`."
            ),
            name=bad[0][:40],
        )
        return ()
    unique = tuple(dict.fromkeys(names))
    if len(unique) > MAX_TOOLS:
        errors[Field.MCP_TOOLS] = say(N_("At most {limit} tools, please."), limit=MAX_TOOLS)
        return ()
    return unique


def _strip_bearer(token: str) -> str:
    """People paste the whole header value; keep only the token."""
    if token[:7].lower() == "bearer ":
        return token[7:].strip()
    return token


def _token_change(
    form: SettingsForm,
    token: str,
    url: str,
    saved: WorkspaceSettings,
    can_seal: bool,
    errors: dict[Field, Text],
) -> tuple[TokenChange, str]:
    if token:
        if not can_seal:
            errors[Field.MCP_TOKEN] = N_(
                "I can't keep tokens: the bot has no SECRET_KEY setting. Ask whoever runs the "
                "bot to set one, or leave this empty."
            )
        elif len(token) > MAX_TOKEN_CHARS or not _TOKEN.match(token):
            errors[Field.MCP_TOKEN] = say(
                N_("A token is one line without spaces, up to {limit} characters."),
                limit=MAX_TOKEN_CHARS,
            )
        return TokenChange.REPLACE, token
    had_token = saved.mcp is not None and saved.mcp.token is not TokenState.NONE
    if form.remove_token or not had_token:
        return TokenChange.REMOVE, ""
    assert saved.mcp is not None
    if _origin(saved.mcp.url) != _origin(url):
        errors[Field.MCP_TOKEN] = N_(
            "The server's address changed, so I won't send the saved token to it: enter the "
            "token again, or tick “Remove the saved token”."
        )
    return TokenChange.KEEP, ""


def _delivery(value: str | None) -> Delivery | None:
    """A stored choice; one this version does not know reads as never chosen."""
    return Delivery(value) if value in _DELIVERIES else None


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or 443
    except ValueError:
        return None


class WorkspaceSettingsService:
    """Loads and saves a workspace's settings; `research` is ResearchService's lookup."""

    def __init__(
        self, store: WorkspaceSettingsRepository, *, default_model: str, box: SecretBox | None
    ) -> None:
        self._store = store
        self._box = box
        self.default_model = default_model

    @property
    def can_save_tokens(self) -> bool:
        return self._box is not None

    async def current(self, team_id: str) -> WorkspaceSettings:
        row = await self._store.get(team_id)
        if row is None:
            return WorkspaceSettings()
        mcp: McpServer | None = None
        if row.mcp_url:
            token = TokenState.NONE
            if row.mcp_token_sealed:
                readable = self._open(team_id, row.mcp_token_sealed) is not None
                token = TokenState.SAVED if readable else TokenState.UNREADABLE
            mcp = McpServer(row.mcp_label, row.mcp_url, row.mcp_allowed_tools, token)
        return WorkspaceSettings(
            model=row.model,
            output_format=row.output_format,
            clarify=row.clarify,
            mcp=mcp,
            delivery=_delivery(row.report_delivery),
            updated_by=row.updated_by,
            updated_at=row.updated_at,
        )

    async def save(self, team_id: str, user_id: str, form: SettingsForm) -> WorkspaceSettings:
        """Validate and store; raises SettingsInvalid with a sentence per field to fix."""
        if form.mcp_token.strip():  # a secret from now on, saved or not
            remember_secret(form.mcp_token.strip())
            remember_secret(_strip_bearer(form.mcp_token.strip()))
        previous = await self._store.get(team_id)
        saved = await self.current(team_id) if previous is not None else WorkspaceSettings()
        valid = validate(form, saved=saved, can_seal=self._box is not None)
        sealed: str | None = None
        if valid.token_change is TokenChange.REPLACE:
            assert self._box is not None  # validate() refuses a token without a key
            sealed = self._box.encrypt(valid.new_token, context=team_id)
        elif valid.token_change is TokenChange.KEEP and previous is not None:
            sealed = previous.mcp_token_sealed
        mcp = valid.mcp
        await self._store.put(
            SettingsRow(
                team_id=team_id,
                model=valid.model,
                output_format=valid.output_format,
                clarify=valid.clarify,
                mcp_label=mcp.label if mcp else "",
                mcp_url=mcp.url if mcp else "",
                mcp_allowed_tools=mcp.allowed_tools if mcp else (),
                mcp_token_sealed=sealed if mcp else None,
                report_delivery=valid.delivery.value,
                updated_by=user_id,
            )
        )
        logger.info(
            "research settings of %s saved by %s: model=%s output=%s clarify=%s mcp=%s token=%s "
            "delivery=%s",
            team_id,
            user_id,
            valid.model,
            valid.output_format,
            valid.clarify,
            mcp.label if mcp else None,
            valid.token_change.value,
            valid.delivery.value,
        )
        return await self.current(team_id)

    async def research(self, team_id: str) -> WorkspaceResearch:
        """The workspace's research defaults and MCP tools, token decrypted, for one call."""
        row = await self._store.get(team_id)
        if row is None:
            return WorkspaceResearch()
        defaults = ResearchOptions(
            output_format=row.output_format, clarify=row.clarify, model=row.model
        )
        delivery = _delivery(row.report_delivery) or Delivery.CANVAS_AND_FILE
        if not row.mcp_url:
            return WorkspaceResearch(defaults=defaults, delivery=delivery)
        tool: dict[str, Any] = {
            "type": "mcp",
            "server_label": row.mcp_label,
            "server_url": row.mcp_url,
            "allowed_tools": list(row.mcp_allowed_tools),
        }
        if row.mcp_token_sealed:
            token = self._open(team_id, row.mcp_token_sealed)
            if token is None:
                logger.error(
                    "the MCP token of %s cannot be decrypted with this SECRET_KEY; research "
                    "goes ahead without the MCP server %r until an admin enters it again",
                    team_id,
                    row.mcp_label,
                )
                return WorkspaceResearch(defaults=defaults, delivery=delivery)
            tool["authentication"] = {"bearer": token}
        return WorkspaceResearch(defaults=defaults, research_tools=(tool,), delivery=delivery)

    def _open(self, team_id: str, sealed: str) -> str | None:
        if self._box is None:
            return None
        try:
            token = self._box.decrypt(sealed, context=team_id)
        except SecretError:
            return None
        remember_secret(token)  # no log line shows it, even one echoing a request
        return token
