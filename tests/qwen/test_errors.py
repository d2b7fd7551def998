from __future__ import annotations

import pytest

from bot.qwen.errors import is_transient, user_sentence
from bot.qwen.events import StreamError

DOCUMENTED = {
    "InvalidParameter": False,
    "DataInspectionFailed": False,
    "Arrearage": False,
    "InvalidApiKey": False,
    "AccessDenied": False,
    "ModelNotFound": False,
    "Throttling": True,
    "Throttling.RateQuota": True,
    "Throttling.AllocationQuota": True,
    "InternalError": True,
    "ServiceUnavailable": True,
}
GENERIC = user_sentence(StreamError("SomethingNew", "x"))


@pytest.mark.parametrize(("code", "transient"), DOCUMENTED.items())
def test_every_documented_code_has_its_own_sentence_and_retry_rule(
    code: str, transient: bool
) -> None:
    error = StreamError(code, "the service's own words", request_id="r", status=400)
    sentence = user_sentence(error)
    assert sentence != GENERIC
    assert "the service's own words" not in sentence and code not in sentence.split()
    assert is_transient(error) is transient


def test_the_sentences_say_what_to_do() -> None:
    assert "DASHSCOPE_API_KEY" in user_sentence(StreamError("InvalidApiKey", ""))
    assert "payment" in user_sentence(StreamError("Arrearage", ""))
    assert "content moderation" in user_sentence(StreamError("DataInspectionFailed", ""))


def test_unknown_codes_retry_only_on_transient_http_statuses() -> None:
    assert is_transient(StreamError("HTTP502", "", status=502))
    assert not is_transient(StreamError("HTTP404", "", status=404))
    assert not is_transient(StreamError("SomethingNew", "", status=400))
