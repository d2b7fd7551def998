"""Logging setup: text or JSON lines, with what a line is about, and no secret ever written.

A line carries the context of the work that wrote it (`log_context`, `bind`): the Slack
request, the workspace, the conversation (its thread) and the research run, so one run can be
followed through the log by its run id. Text lines end with them in brackets; JSON lines
have them as fields.

Secrets come from two places: the settings (given to `configure_logging`) and those the process
learns while it runs, such as a workspace's MCP bearer token once it is decrypted or typed into
the settings form (`remember_secret`). Both are redacted wherever they appear in a line, its
traceback included, also as JSON or URL escaping would write them; token-shaped strings (a user
pasting a Slack or Model Studio key) are redacted too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final
from urllib.parse import quote

# Token shapes worth hiding even when they are not this bot's own (a user pasting one).
_TOKEN_PATTERN: Final = re.compile(
    r"\b(xox[abprse]-[A-Za-z0-9-]{6,}|xapp-[A-Za-z0-9-]{6,}|sk-[A-Za-z0-9]{8,})"
)
REDACTED: Final = "[redacted]"
# Shorter values would redact ordinary words; a real secret is longer.
MIN_SECRET_CHARS: Final = 6


def _forms(secret: str) -> set[str]:
    """The secret as a log line may hold it: as is, JSON-escaped, repr-escaped, URL-encoded."""
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], quote(secret, safe="")}
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


class SecretRegistry:
    """The secrets a process knows; thread-safe, and it only grows (a replaced token is still
    a secret)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *secrets: str | None) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= _forms(secret)
        with self._lock:
            if forms <= self._secrets:
                return
            self._secrets |= forms
            self._pattern = None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None:
            with self._lock:
                if self._pattern is None and self._secrets:
                    # Longest first, so a secret containing another is hidden whole.
                    ordered = sorted(self._secrets, key=len, reverse=True)
                    self._pattern = re.compile("|".join(map(re.escape, ordered)))
                pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None else text


# The process's own registry: settings at start, workspace tokens as they are seen.
_KNOWN: Final = SecretRegistry()


def remember_secret(secret: str | None) -> None:
    """From now on, redact `secret` from every log line (a workspace's MCP token, say)."""
    _KNOWN.add(secret)


# --------------------------------------------------------------------------- context

# The fields a line may carry, in the order text lines show them.
CONTEXT_FIELDS: Final = ("request_id", "team", "conversation", "run_id")
_CONTEXT: ContextVar[MappingProxyType[str, str]] = ContextVar(
    "log_context", default=MappingProxyType({})
)


def _with(fields: dict[str, str | None]) -> MappingProxyType[str, str]:
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s): {sorted(unknown)}")
    merged = dict(_CONTEXT.get())
    for name, value in fields.items():
        if value:
            merged[name] = str(value)
        else:  # None or "": the field no longer applies
            merged.pop(name, None)
    return MappingProxyType(merged)


def bind(**fields: str | None) -> None:
    """Add fields to the context of the current task from here on (and of the tasks it
    starts after this). For a task of its own, such as a research run."""
    _CONTEXT.set(_with(fields))


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add fields to the context for the lines written inside the block."""
    token = _CONTEXT.set(_with(fields))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> MappingProxyType[str, str]:
    return _CONTEXT.get()


class _AddContext(logging.Filter):
    """Copies the context onto the record where it is made, on the task that made it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.log_context = _CONTEXT.get()
        return True


# --------------------------------------------------------------------------- formatting


class RedactingFormatter(logging.Formatter):
    """Redacts known secrets and token-shaped strings from the whole formatted record,
    traceback included. `json=True` writes one JSON object per line."""

    def __init__(
        self,
        fmt: str,
        secrets: Iterable[str],
        *,
        known: SecretRegistry | None = None,
        json: bool = False,
    ) -> None:
        super().__init__(fmt)
        self._own = SecretRegistry()
        self._own.add(*secrets)
        self._known = _KNOWN if known is None else known
        self._json = json

    def format(self, record: logging.LogRecord) -> str:
        context = getattr(record, "log_context", None) or _CONTEXT.get()
        if self._json:
            return self.redact(self._json_line(record, context))
        line = super().format(record)
        if context:
            fields = " ".join(f"{k}={context[k]}" for k in CONTEXT_FIELDS if k in context)
            first, newline, rest = line.partition("\n")
            line = f"{first} [{fields}]{newline}{rest}"
        return self.redact(line)

    def _json_line(self, record: logging.LogRecord, context: Mapping[str, str]) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{k: context[k] for k in CONTEXT_FIELDS if k in context},
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def redact(self, text: str) -> str:
        text = self._known.redact(self._own.redact(text))
        return _TOKEN_PATTERN.sub(REDACTED, text)


class _DropSdkDuplicates(logging.Filter):
    """The dashscope SDK logs every transport failure with a traceback before raising it; the
    bot logs the failure itself, once, where it knows what was being done."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Request failed"


TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    secrets: Iterable[str], level: int | str = logging.INFO, fmt: str = "text"
) -> None:
    """Every line to stderr, as text or JSON (`fmt`), from `level` up (LOG_LEVEL)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(TEXT_FORMAT, secrets, json=fmt == "json"))
    handler.addFilter(_AddContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("dashscope").addFilter(_DropSdkDuplicates())
    # One line per HTTP request (health checks and scrapes included) is noise at INFO.
    verbose = root.getEffectiveLevel() <= logging.DEBUG
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if verbose else logging.WARNING)
