from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from bot.logs import (
    REDACTED,
    TEXT_FORMAT,
    RedactingFormatter,
    bind,
    configure_logging,
    log_context,
)


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


# --- JSON lines and their context ---------------------------------------------------------


def _json_capture(secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(TEXT_FORMAT, secrets, json=True))
    logger = logging.getLogger(f"test-json-{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.handlers[:] = [handler]
    return logger, stream


def test_json_lines_parse_and_carry_the_context_they_were_written_in() -> None:
    logger, stream = _json_capture([])
    logger.info("before")
    with log_context(request_id="r1", team="T1", conversation="T1/C1/1.2"):
        logger.warning("inside %s", "the block")
    logger.info("after")
    before, inside, after = (json.loads(line) for line in stream.getvalue().splitlines())
    assert before["message"] == "before" and "conversation" not in before
    assert inside["message"] == "inside the block" and inside["level"] == "WARNING"
    assert inside["request_id"] == "r1" and inside["team"] == "T1"
    assert inside["conversation"] == "T1/C1/1.2"
    assert "conversation" not in after
    assert inside["time"].endswith("+00:00")


async def test_a_task_bound_to_a_run_keeps_its_fields_and_its_starter_does_not() -> None:
    logger, stream = _json_capture([])

    async def run() -> None:
        bind(conversation="T1/C1/9.9", run_id="abc123", request_id=None)
        logger.info("in the run")

    with log_context(request_id="r2"):
        await asyncio.create_task(run())
        logger.info("in the request")
    in_run, in_request = (json.loads(line) for line in stream.getvalue().splitlines())
    assert in_run["run_id"] == "abc123" and "request_id" not in in_run
    assert in_request["request_id"] == "r2" and "run_id" not in in_request


def test_json_lines_redact_secrets_and_keep_tracebacks() -> None:
    logger, stream = _json_capture(['my"secret-value'])
    try:
        raise RuntimeError('failed with my"secret-value and xoxb-1234-5678-abcdefghij')
    except RuntimeError:
        logger.exception("call failed")
    out = stream.getvalue()
    entry = json.loads(out)
    assert "secret-value" not in out and "xoxb-1234" not in out
    assert "RuntimeError" in entry["exception"] and REDACTED in entry["exception"]


def test_text_lines_end_with_their_context() -> None:
    logger, stream = _capture([])
    with log_context(conversation="T1/C1/1.2", run_id="r9"):
        logger.info("working")
    assert stream.getvalue().strip() == "INFO working [conversation=T1/C1/1.2 run_id=r9]"


def test_unknown_context_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="user"), log_context(user="U1"):
        pass


@pytest.mark.parametrize(("level", "access"), [("INFO", False), ("DEBUG", True)])
def test_the_access_log_is_on_only_at_debug(level: str, access: bool) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging([], level, "json")
        assert logging.getLogger("aiohttp.access").isEnabledFor(logging.INFO) is access
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)
