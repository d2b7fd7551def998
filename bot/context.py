"""Fitting a conversation into a model's context window.

Tokens are estimated, not counted (no tokenizer ships with the bot): ASCII text at three
characters per token and every other character as one token, which over-counts English and
Chinese alike, so a prompt that fits here fits the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

Message = dict[str, Any]

MESSAGE_OVERHEAD: Final = 8  # role markers and separators around each message
# A shortened message smaller than this is more confusing than helpful: drop it instead.
MIN_KEPT_TOKENS: Final = 200
TRIMMED_MARK: Final = "[… earlier part trimmed to fit the model's context window]\n\n"


def estimate_tokens(text: str) -> int:
    ascii_chars = len(text.encode("ascii", "ignore"))
    return -(-ascii_chars // 3) + (len(text) - ascii_chars)


def text_of(content: Any) -> str:
    """Message content as plain text (image parts of multimodal content are left out)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [str(p.get("text", "")) for p in content if isinstance(p, Mapping)]
        return "\n".join(p for p in parts if p)
    return ""


def message_tokens(message: Mapping[str, Any]) -> int:
    return estimate_tokens(text_of(message.get("content"))) + MESSAGE_OVERHEAD


def fit(
    context: Sequence[Mapping[str, Any]],
    question: Message,
    max_tokens: int,
    *,
    system: Message | None = None,
) -> list[Message]:
    """`system`, then as much of `context` as fits, then `question` (always, whole).

    Whole messages are dropped oldest first; the oldest message kept may lose its beginning.
    """
    fixed = [system] if system is not None else []
    room = max_tokens - sum(message_tokens(m) for m in (*fixed, question))
    kept: list[Message] = []
    for message in reversed(context):
        plain = {
            "role": str(message.get("role", "user")),
            "content": text_of(message.get("content")),
        }
        cost = message_tokens(plain)
        if cost <= room:
            kept.append(plain)
            room -= cost
            continue
        shortened = _keep_end(plain["content"], room - MESSAGE_OVERHEAD)
        if shortened is not None:
            kept.append({**plain, "content": shortened})
        break
    return [*fixed, *reversed(kept), question]


def _keep_end(text: str, tokens: int) -> str | None:
    """The longest end of `text` that fits in `tokens` with the trim mark in front."""
    room = tokens - estimate_tokens(TRIMMED_MARK)
    if room < MIN_KEPT_TOKENS:
        return None
    low, high = 0, len(text)  # binary search on how many trailing characters fit
    while low < high:
        mid = (low + high + 1) // 2
        if estimate_tokens(text[-mid:]) <= room:
            low = mid
        else:
            high = mid - 1
    if low == 0:
        return None
    tail = text[-low:]
    # Start at a word boundary when one is near, so the model does not see half a word.
    space = tail.find(" ", 0, 40)
    if 0 <= space < len(tail) - 1:
        tail = tail[space + 1 :]
    return TRIMMED_MARK + tail
