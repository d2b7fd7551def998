"""Encryption at rest for secrets the bot keeps in its database (MCP bearer tokens).

Fernet (AES-128-CBC with HMAC-SHA256, from the `cryptography` package) with a key derived from
the `SECRET_KEY` setting by HKDF-SHA256. Each ciphertext is bound to a context (the workspace's
team id) through the HKDF `info`, so a value copied into another workspace's row does not
decrypt there.
"""

from __future__ import annotations

import base64
from typing import Final

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.config import MIN_SECRET_KEY_CHARS

# Fixed, public values: they separate this use of SECRET_KEY from any other.
_SALT: Final = b"qwen-deep-research-slack/secrets-box"
_INFO_PREFIX: Final = b"v1/mcp-token/"


class SecretError(Exception):
    """A ciphertext that this key cannot open: another key, another context, or corrupt data.

    Its message never contains the ciphertext or the plaintext."""


class SecretBox:
    """Encrypts and decrypts short strings. Never put one in a log: its repr hides the key."""

    __slots__ = ("_key",)

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < MIN_SECRET_KEY_CHARS:
            raise ValueError(f"the secret key must be at least {MIN_SECRET_KEY_CHARS} characters")
        self._key = secret_key.encode("utf-8")

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def encrypt(self, plaintext: str, *, context: str) -> str:
        return self._fernet(context).encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str, *, context: str) -> str:
        try:
            data = self._fernet(context).decrypt(ciphertext.encode("ascii"))
            return data.decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise SecretError(
                "the stored secret cannot be decrypted with this SECRET_KEY "
                "(was the key changed, or the row copied from another workspace?)"
            ) from None

    def _fernet(self, context: str) -> Fernet:
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=_SALT,
            info=_INFO_PREFIX + context.encode("utf-8"),
        )
        return Fernet(base64.urlsafe_b64encode(hkdf.derive(self._key)))
