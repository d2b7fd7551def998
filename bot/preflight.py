"""`python -m bot check`: the settings, then each service reached once, one line each.

The checks themselves are small functions returning a CheckResult; bot/runtime.py wires the
real clients to them (`check`), so each can also be run against a fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, TextIO

from bot.qwen.client import ModelCall, ModelClient
from bot.qwen.events import StreamError

CHECK_SECONDS: Final = 30.0
# Answered with one token: the cheapest call that proves the key, the account and the model.
PING_MESSAGES: Final = ({"role": "user", "content": "Reply with the single word OK."},)
_REFUSED_KEY: Final = frozenset({"InvalidApiKey", "AccessDenied", "Arrearage"})


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


Check = Callable[[], Awaitable[CheckResult]]


async def run_checks(checks: Sequence[tuple[str, Check]], out: TextIO) -> bool:
    """Run each check in turn, print its line; True if every one passed. A check that
    raises or hangs fails with a line of its own rather than ending the run."""
    passed = True
    for name, check in checks:
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                result = await check()
        except TimeoutError:
            result = CheckResult(name, False, f"no answer within {CHECK_SECONDS:.0f} s")
        except Exception as exc:
            result = CheckResult(name, False, f"could not check ({type(exc).__name__})")
        print(result.line(), file=out, flush=True)
        passed = passed and result.ok
    return passed


async def check_model_key(model: ModelClient, model_name: str) -> CheckResult:
    """One minimal call to `model_name` (a thinking model, with thinking off and one output
    token): the key is accepted if the model answers."""
    name = "DashScope API key"
    call = ModelCall(
        model_name,
        PING_MESSAGES,
        {
            "result_format": "message",
            "enable_thinking": False,
            "max_tokens": 1,
        },
    )
    stream = model.stream(call)
    try:
        async for event in stream:
            if isinstance(event, StreamError):
                if event.code in _REFUSED_KEY or event.code.startswith("InvalidApiKey"):
                    return CheckResult(
                        name,
                        False,
                        f"Model Studio refused DASHSCOPE_API_KEY ({event.code}): use a key from "
                        "https://bailian.console.aliyun.com/?apiKey=1 (Beijing region) on an "
                        "account in good standing",
                    )
                return CheckResult(
                    name, False, f"a minimal call to {model_name} failed ({event.code})"
                )
            # Anything else means the call was taken: stop it there.
            return CheckResult(name, True, f"accepted ({model_name} answered a 1-token call)")
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return CheckResult(name, False, f"{model_name} ended the call without answering")


def schema_line(
    current: str | None, head: str, pending: Sequence[str], *, unknown: bool
) -> tuple[bool, str]:
    """(ok, words) for where the database's schema stands."""
    if unknown:
        return False, (
            f"at revision {current}, which this release does not know (a newer release "
            "migrated it): run that release, or restore a backup"
        )
    if not pending:
        return True, f"reachable; migrations applied (at {head})"
    what = ", ".join(pending)
    at = f"at {current}" if current else "new or from before versioned migrations"
    return True, f"reachable; {at}; the next start applies {len(pending)} migration(s): {what}"
