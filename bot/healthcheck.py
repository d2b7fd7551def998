"""`python -m bot.healthcheck`: exit 0 if this container's bot answers GET /healthz, else 1.

The Dockerfile's HEALTHCHECK. It tries the two ports the bot may serve the endpoint on (PORT
in HTTP mode, METRICS_PORT in Socket Mode), so it needs to know neither the mode nor the
command line. Standard library only, and quick: Docker runs it every 30 seconds.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from typing import Final

TIMEOUT_SECONDS: Final = 3.0


def healthy(ports: list[str]) -> bool:
    for port in ports:
        try:
            url = f"http://127.0.0.1:{int(port)}/healthz"
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
                if response.status == 200:
                    return True
        except (OSError, ValueError):
            continue
    return False


def main() -> int:
    # Read here, not through bot.config: a health probe must not fail on a setting the bot
    # itself would only warn about, and it runs without the .env the bot was started with.
    ports = [os.environ.get("PORT") or "3000", os.environ.get("METRICS_PORT") or ""]
    if healthy([p for p in ports if p]):
        return 0
    print(f"no answer from /healthz on port(s) {', '.join(p for p in ports if p)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
