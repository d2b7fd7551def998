"""The bytes of one DashScope text-generation call: the request, and the SSE response cut into
frames, with what the dashscope SDK's 1.x-style async path did at each step kept where the bot
relied on it (../shared/reference/dashscope-wire.md).

Why not the SDK's own loop: it reads a stream one line per `await` and builds a response object
per frame, which cost more CPU per frame than everything the bot then does with the frame
(bench/frames.py). Here the bytes that arrived are split in one go and each `data:` line goes
straight to `json.loads`. What the SDK did and the bot kept:

- the request: the same URL, body (`model`, `parameters` with `incremental_output`, `input`) and
  the `X-DashScope-SSE: enable` header; a pooled connection found dead before any byte of the
  answer is retried once at once;
- an error before the stream (a non-200 answer in JSON, or one SSE error event) is one error
  frame with the answer's HTTP status;
- in the stream, `event:error` marks an error frame; its status is the `:HTTP_STATUS/` comment
  (the SDK always said 400; errors are classified by code anyway); an error frame without a code
  is an `UnknownError` (the SDK raised KeyError); an undecodable `data:` line is an `Unknown`
  error with status 500, as the SDK made it;
- a result frame's `code`, if any, is ignored (the SDK kept only output, usage and request_id),
  and a frame without `request_id` carries the last one seen.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

logger = logging.getLogger(__name__)

GENERATION_PATH: Final = "/services/aigc/text-generation/generation"
SSE_CONTENT_TYPE: Final = "text/event-stream"
USER_AGENT: Final = "qwen-deep-research-slack (aiohttp; DashScope native SSE)"
# Mid-stream error events without a :HTTP_STATUS/ line: the status the SDK reported.
DEFAULT_ERROR_STATUS: Final = 400

_DATA: Final = b"data:"
_EVENT_ERROR: Final = b"event:error"
_STATUS: Final = b":HTTP_STATUS/"


def request_url(base_url: str) -> str:
    return base_url.rstrip("/") + GENERATION_PATH


def request_headers(api_key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {api_key}",
        "Accept": SSE_CONTENT_TYPE,
        "Content-Type": "application/json; charset=utf-8",
        "X-DashScope-SSE": "enable",
        "X-Accel-Buffering": "no",
        "User-Agent": USER_AGENT,
    }


def request_body(
    model: str, messages: list[dict[str, Any]], parameters: Mapping[str, Any]
) -> bytes:
    """The JSON body, as the SDK wrote it (incremental output always asked for)."""
    body = {
        "model": model,
        "parameters": {"incremental_output": True, **parameters},
        "input": {"messages": messages},
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class SseSplitter:
    """Cuts response bytes into the `data:` lines of SSE events, whatever the byte boundaries.

    `feed` returns the bytes after "data:" of each event completed; `errors` then maps the
    position of each error event's line in that list to its HTTP status (most calls: none).
    An event's `event:` and `:HTTP_STATUS/` lines come before its data line; a blank line ends
    the event. (No tuple per frame: at hundreds of open streams, the frames waiting to be read
    would be objects for the garbage collector to walk.)
    """

    __slots__ = ("_error", "_status", "_tail", "errors")

    def __init__(self) -> None:
        self._tail = b""
        self._error = False
        self._status = DEFAULT_ERROR_STATUS
        self.errors: dict[int, int] = {}

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._tail:
            chunk = self._tail + chunk
        lines = chunk.split(b"\n")
        self._tail = lines.pop()  # the unfinished line (b"" after a newline)
        return self._lines(lines)

    def end(self) -> list[bytes]:
        """The last line if the stream ended without a newline after it."""
        tail, self._tail = self._tail, b""
        return self._lines([tail] if tail else [])

    def _lines(self, lines: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        self.errors = {}
        for line in lines:
            if line.startswith(_DATA):
                if self._error:
                    self.errors[len(out)] = self._status
                out.append(line[5:])
            elif line.startswith(_EVENT_ERROR):
                self._error = True
            elif line.startswith(_STATUS):
                digits = line[len(_STATUS) :].strip()
                if digits.isdigit():
                    self._status = int(digits)
            elif not line.strip():
                self._error = False  # the event ended
                self._status = DEFAULT_ERROR_STATUS
        return out


class FrameDecoder:
    """`data:` lines to the frame dicts the interpreter reads (one stream's state)."""

    __slots__ = ("request_id",)

    def __init__(self) -> None:
        self.request_id = ""

    def __call__(self, data: bytes, error_status: int) -> dict[str, Any]:
        try:
            frame = json.loads(data)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            frame = None
        if not isinstance(frame, dict):
            return {"code": "Unknown", "message": "undecodable frame", "status_code": 500}
        request_id = frame.get("request_id")
        if request_id is None:
            frame["request_id"] = self.request_id
        else:
            self.request_id = request_id
        if error_status:
            return self.error(frame, error_status, in_stream=True)
        if "code" in frame:  # only an error event's code counts
            del frame["code"]
        return frame

    def error(self, frame: Mapping[str, Any], status: int, *, in_stream: bool) -> dict[str, Any]:
        """The error frame of an error event (`in_stream`) or of a failed answer."""
        code = frame.get("code")
        if in_stream and "code" not in frame:
            logger.warning("model stream sent an error frame without a code")
            code = "UnknownError"
        elif not isinstance(code, str) or not code:
            code = f"HTTP{status}"  # classified by its status
        message = frame.get("message", frame.get("msg", ""))
        return {
            "code": code,
            "message": message if isinstance(message, str) else "",
            "request_id": frame.get("request_id") or self.request_id,
            "status_code": status,
        }
