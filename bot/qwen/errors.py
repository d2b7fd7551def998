"""What each DashScope error code means for a retry and for the person in Slack."""

from __future__ import annotations

from typing import Final

from bot.i18n import N_
from bot.qwen.events import StreamError

_TRANSIENT_CODES: Final = frozenset(
    {
        "Throttling",
        "Throttling.RateQuota",
        "Throttling.AllocationQuota",
        "InternalError",
        "InternalError.Algo",
        "ServiceUnavailable",
        "ConnectionError",
        "UnknownError",
    }
)
_TRANSIENT_STATUSES: Final = frozenset({429, 500, 502, 503, 504})

_SENTENCES: Final[dict[str, str]] = {
    "InvalidApiKey": N_(
        "The bot's Model Studio API key was rejected. An admin needs to set a valid "
        "DASHSCOPE_API_KEY (Beijing region) and restart the bot."
    ),
    "AccessDenied": N_(
        "The bot's Model Studio account may not use this model. An admin needs to enable it "
        "in the Model Studio console."
    ),
    "ModelNotFound": N_(
        "The configured model does not exist in Model Studio. An admin needs to check the "
        "model name in the bot's settings."
    ),
    "Arrearage": N_(
        "The bot's Model Studio account has an overdue payment. An admin needs to top it up "
        "in the Alibaba Cloud console, then you can retry."
    ),
    "DataInspectionFailed": N_(
        "The model refused this request because its content was flagged by content "
        "moderation. Please rephrase it and try again."
    ),
    "InvalidParameter": N_(
        "The model rejected the request as invalid. Try a shorter or simpler message; if it "
        "keeps happening, tell the bot's admin."
    ),
    "Throttling": N_("The model service is busy right now. Please retry in a minute."),
    "InternalError": N_("The model service had an internal error. Please retry."),
    "ServiceUnavailable": N_("The model service is unavailable right now. Please retry shortly."),
    "ConnectionError": N_("The bot lost its connection to the model service. Please retry."),
}


def is_transient(error: StreamError) -> bool:
    if error.code in _TRANSIENT_CODES or error.code.startswith("Throttling"):
        return True
    return error.code.startswith("HTTP") and error.status in _TRANSIENT_STATUSES


def user_sentence(error: StreamError) -> str:
    """A plain sentence with the next step; never the service's own message. (Marked for
    the message catalogs: shown in the reader's language.)"""
    code = error.code
    if code in _SENTENCES:
        return _SENTENCES[code]
    if code.startswith("Throttling"):
        return _SENTENCES["Throttling"]
    if code.startswith("InternalError"):
        return _SENTENCES["InternalError"]
    return N_("The model service returned an unexpected error. Please retry.")
