"""bot/secrets_box.py: Fernet with a key derived from SECRET_KEY, bound to a context."""

from __future__ import annotations

import pytest

from bot.secrets_box import SecretBox, SecretError

KEY = "k" * 16 + "0123456789abcdefghij"
OTHER_KEY = "o" * 16 + "0123456789abcdefghij"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.payload.signature"


def test_round_trip() -> None:
    box = SecretBox(KEY)
    sealed = box.encrypt(TOKEN, context="T1")
    assert TOKEN not in sealed
    assert box.decrypt(sealed, context="T1") == TOKEN
    # A fresh box from the same key (after a restart) opens it too.
    assert SecretBox(KEY).decrypt(sealed, context="T1") == TOKEN


def test_each_encryption_differs() -> None:
    box = SecretBox(KEY)
    assert box.encrypt(TOKEN, context="T1") != box.encrypt(TOKEN, context="T1")


def test_the_wrong_key_fails_cleanly_without_the_secret_in_the_message() -> None:
    sealed = SecretBox(KEY).encrypt(TOKEN, context="T1")
    with pytest.raises(SecretError) as info:
        SecretBox(OTHER_KEY).decrypt(sealed, context="T1")
    assert TOKEN not in str(info.value) and sealed not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_another_workspace_cannot_open_it() -> None:
    sealed = SecretBox(KEY).encrypt(TOKEN, context="T1")
    with pytest.raises(SecretError):
        SecretBox(KEY).decrypt(sealed, context="T2")


@pytest.mark.parametrize("garbage", ["", "not-a-token", "gAAAAA" + "x" * 80, "é"])
def test_corrupt_ciphertext_fails_cleanly(garbage: str) -> None:
    with pytest.raises(SecretError):
        SecretBox(KEY).decrypt(garbage, context="T1")


def test_short_keys_are_refused_and_the_key_never_shows() -> None:
    with pytest.raises(ValueError):
        SecretBox("short")
    assert KEY not in repr(SecretBox(KEY))
