"""Logging setup: one format, and no secret ever written to a log line.

Secrets come from two places: the settings (given to `configure_logging`) and those the process
learns while it runs, such as a workspace's MCP bearer token once it is decrypted or typed into
the settings form (`remember_secret`). Both are redacted wherever they appear in a line, its
traceback included, also as JSON or URL escaping would write them; token-shaped strings (a user
pasting a Slack or Model Studio key) are redacted too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
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


class RedactingFormatter(logging.Formatter):
    """Redacts known secrets and token-shaped strings from the whole formatted record,
    traceback included."""

    def __init__(
        self, fmt: str, secrets: Iterable[str], *, known: SecretRegistry | None = None
    ) -> None:
        super().__init__(fmt)
        self._own = SecretRegistry()
        self._own.add(*secrets)
        self._known = _KNOWN if known is None else known

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def redact(self, text: str) -> str:
        text = self._known.redact(self._own.redact(text))
        return _TOKEN_PATTERN.sub(REDACTED, text)


class _DropSdkDuplicates(logging.Filter):
    """The dashscope SDK logs every transport failure with a traceback before raising it; the
    bot logs the failure itself, once, where it knows what was being done."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Request failed"


def configure_logging(secrets: Iterable[str], level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("dashscope").addFilter(_DropSdkDuplicates())
