"""Fitting a conversation into a model's context window.

Tokens are counted with the Qwen tokenizer that ships with the dashscope SDK
(`dashscope.get_tokenizer`: a BPE vocabulary file inside the package, so no network), the one
Qwen models count with: digits one token each, CJK and emoji as the model sees them. It loads on
first use, about 0.3 s once (`preload` does it ahead, off the event loop, once the bot listens).
Should it ever be missing, every UTF-8 byte counts as a token instead: a byte-level BPE token
covers at least one byte, so that bound never under-counts either, only wastes room.

Counting is CPU work on the caller's thread (the event loop for follow-ups), so one `fit` looks
at no more than MAX_COUNTED_CHARS characters of the thread (counting them takes about 15 ms for
English, 70 ms for Chinese, 0.2 s for emoji; a message cut to fit is counted up to three times
more). Older messages beyond that are left out as if they did not fit.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

logger = logging.getLogger(__name__)

Message = dict[str, Any]

# <|im_start|>role\n … <|im_end|>\n is five tokens in Qwen's chat template; keep some spare.
MESSAGE_OVERHEAD: Final = 8
# A shortened message smaller than this is more confusing than helpful: drop it instead.
MIN_KEPT_TOKENS: Final = 200
TRIMMED_MARK: Final = "[… earlier part trimmed to fit the model's context window]\n\n"
MAX_COUNTED_CHARS: Final = 400_000
_TOKENIZER_MODEL: Final = "qwen-plus"


class _Tokenizer(Protocol):
    def encode(self, text: str, **kwargs: Any) -> list[int]: ...

    def decode(self, token_ids: list[int], **kwargs: Any) -> str: ...


_LOADING: Final = threading.Lock()


def _qwen_tokenizer() -> _Tokenizer | None:
    # `preload` runs in a thread after the bot listens; a follow-up counted meanwhile waits for
    # that load rather than starting a second one.
    with _LOADING:
        return _load_tokenizer()


@functools.cache
def _load_tokenizer() -> _Tokenizer | None:
    try:
        from dashscope.tokenizers import get_tokenizer

        tokenizer: _Tokenizer = get_tokenizer(_TOKENIZER_MODEL)
    except Exception:
        logger.warning(
            "the Qwen tokenizer could not be loaded; counting a token per UTF-8 byte instead, "
            "so follow-ups see less of their thread",
            exc_info=True,
        )
        return None
    return tokenizer


def preload() -> bool:
    """Load the tokenizer now (blocking: call it in a thread); False if it is unavailable."""
    return _qwen_tokenizer() is not None


def _encode(tokenizer: _Tokenizer, text: str) -> list[int]:
    # Text that looks like a special token (<|im_end|>) is counted as the text it is.
    return tokenizer.encode(text, allowed_special=set(), disallowed_special=())


def estimate_tokens(text: str) -> int:
    """Tokens of `text` as Qwen models count them (never fewer, without the tokenizer)."""
    tokenizer = _qwen_tokenizer()
    if tokenizer is None:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(_encode(tokenizer, text))


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


def prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    return sum(message_tokens(m) for m in messages)


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
    chars = MAX_COUNTED_CHARS - sum(len(text_of(m.get("content"))) for m in (*fixed, question))
    kept: list[Message] = []
    for message in reversed(context):
        plain = {
            "role": str(message.get("role", "user")),
            "content": text_of(message.get("content")),
        }
        if room <= 0 or chars <= 0:
            break
        if len(plain["content"]) <= chars:
            cost = message_tokens(plain)
            if cost <= room:
                kept.append(plain)
                room -= cost
                chars -= len(plain["content"])
                continue
        shortened = _keep_end(plain["content"], room - MESSAGE_OVERHEAD, chars)
        if shortened is not None:
            kept.append({**plain, "content": shortened})
        break
    return [*fixed, *reversed(kept), question]


def _keep_end(text: str, tokens: int, chars: int) -> str | None:
    """The longest end of `text` that fits in `tokens` with the trim mark in front, looking at
    no more than its last `chars` characters."""
    room = tokens - estimate_tokens(TRIMMED_MARK) - 2  # the joins may cost a token each
    if room < MIN_KEPT_TOKENS or chars <= 0:
        return None
    tail = _last_tokens(text[-chars:], room)
    # Start at a word boundary when one is near, so the model does not see half a word.
    space = tail.find(" ", 0, 40)
    if 0 <= space < len(tail) - 1:
        tail = tail[space + 1 :]
    if not tail.strip() or estimate_tokens(TRIMMED_MARK + tail) > tokens:
        return None
    return TRIMMED_MARK + tail


def _last_tokens(text: str, n: int) -> str:
    """The longest end of `text` that is at most `n` tokens (checked, not assumed)."""
    tokenizer = _qwen_tokenizer()
    if tokenizer is None:
        return text.encode("utf-8", "surrogatepass")[-n:].decode("utf-8", "ignore")
    ids = _encode(tokenizer, text)
    tail = text
    for _ in range(4):  # a cut text can tokenize a little differently: check and cut again
        excess = len(ids) - n
        if excess <= 0:
            return tail
        kept = len(tokenizer.decode(ids[excess:], errors="ignore"))
        tail = tail[len(tail) - kept :] if kept else ""
        ids = _encode(tokenizer, tail)
    return tail if len(ids) <= n else ""
