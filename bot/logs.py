"""Logging setup: one format, and no secret ever written to a log line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Final

# Token shapes worth hiding even when they are not this bot's own (a user pasting one).
_TOKEN_PATTERN: Final = re.compile(
    r"\b(xox[abprse]-[A-Za-z0-9-]{6,}|xapp-[A-Za-z0-9-]{6,}|sk-[A-Za-z0-9]{8,})"
)
REDACTED: Final = "[redacted]"


class RedactingFormatter(logging.Formatter):
    """Redacts known secrets and token-shaped strings from the whole formatted record,
    traceback included."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
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
