from __future__ import annotations

import io
import logging

from bot.logs import REDACTED, RedactingFormatter


def _capture(secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s", secrets))
    logger = logging.getLogger(f"test-redaction-{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.handlers[:] = [handler]
    return logger, stream


def test_configured_secrets_never_reach_a_log_line() -> None:
    logger, stream = _capture(["my-signing-secret-123"])
    logger.warning("verifying with %s", "my-signing-secret-123")
    assert "my-signing-secret-123" not in stream.getvalue()
    assert REDACTED in stream.getvalue()


def test_token_shapes_are_redacted_in_messages_and_tracebacks() -> None:
    logger, stream = _capture([])
    try:
        raise RuntimeError("auth failed for xoxb-1234-5678-abcdefghij")
    except RuntimeError:
        logger.exception("call with key sk-abcdef0123456789 and xapp-1-A1-2-abcdef failed")
    out = stream.getvalue()
    for secret in ("xoxb-1234-5678-abcdefghij", "sk-abcdef0123456789", "xapp-1-A1-2-abcdef"):
        assert secret not in out
    assert "RuntimeError" in out  # the traceback itself is kept


def test_ordinary_text_is_left_alone() -> None:
    logger, stream = _capture(["xoxb-real-token-value"])
    logger.info("research run for T1/C1 finished in 12s; task-list and sk-8 are fine")
    assert "task-list and sk-8 are fine" in stream.getvalue()
