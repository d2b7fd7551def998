"""Marks sentences for the message catalogs (handlers/locales/), where they are translated
when shown. The domain writes English; the Slack glue shows each person their language."""

from __future__ import annotations


def N_(message: str) -> str:
    """A sentence for the catalogs, returned as it is (translated where it is shown)."""
    return message
