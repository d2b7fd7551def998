"""Settings: read once from the environment (and ./.env), validated, frozen.

Importing this module needs only the standard library, so `scripts/start` can check the
settings (`preflight`) with a bare Python before it spends a minute installing the bot.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from bot.usage import Pricing, PricingError, load_pricing

MIN_SECRET_KEY_CHARS: Final = 32
"""SECRET_KEY's shortest length (bot/secrets_box.py derives the workspace keys' cipher from it)."""

DEFAULT_SLACK_API_URL: Final = "https://slack.com/api/"
DEFAULT_DASHSCOPE_URL: Final = "https://dashscope.aliyuncs.com/api/v1"
DEFAULT_DATABASE_URL: Final = "sqlite:///data/bot.sqlite3"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")

_SIGNING_SECRET_PATH: Final = "Basic Information > App Credentials > Signing Secret"
# Where an operator gets each required value; shown verbatim when it is missing.
_WHERE: Final[dict[str, str]] = {
    "SLACK_BOT_TOKEN": (
        "the Bot User OAuth Token (xoxb-...): create the app from manifest.yml at "
        "https://api.slack.com/apps?new_app=1, install it, then OAuth & Permissions"
    ),
    "SLACK_APP_TOKEN": (
        "an app-level token (xapp-...) for Socket Mode, which manifest.yml turns on (no public "
        "URL needed): Basic Information > App-Level Tokens > Generate, scope connections:write"
    ),
    "SLACK_SIGNING_SECRET": (
        f"{_SIGNING_SECRET_PATH} (needed in HTTP mode; or set SLACK_APP_TOKEN to use Socket "
        "Mode instead)"
    ),
    "DASHSCOPE_API_KEY": (
        "a Model Studio API key (sk-...) from the Beijing region: "
        "https://bailian.console.aliyun.com/?apiKey=1"
    ),
    "SLACK_CLIENT_SECRET": (
        "Basic Information > App Credentials > Client Secret (multi-workspace mode, with "
        "SLACK_CLIENT_ID)"
    ),
}
_MULTI_SIGNING_SECRET: Final = (
    f"{_SIGNING_SECRET_PATH} (multi-workspace mode serves Slack over HTTP and needs it)"
)


class ConfigError(Exception):
    """The environment cannot run the bot; the message says what to fix."""


class StartupError(Exception):
    """Something the bot needs at start (its port, Slack, the database) is not available;
    the message is for the operator."""


@dataclass(frozen=True, slots=True)
class Settings:
    # "" in multi-workspace mode: each workspace's bot token comes from its installation.
    slack_bot_token: str = ""
    # "" when no fallback key is set (multi-workspace mode, each workspace brings its own).
    dashscope_api_key: str = ""
    slack_app_token: str | None = None
    slack_signing_secret: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    host: str = "0.0.0.0"
    port: int = 3000
    dashscope_base_url: str = DEFAULT_DASHSCOPE_URL
    # Normalised to its driver: sqlite+aiosqlite:///… or postgresql+asyncpg://…
    database_url: str = "sqlite+aiosqlite:///data/bot.sqlite3"
    research_model: str = "qwen-deep-research"
    thinking_model: str = "qwen-plus"
    progress_update_seconds: float = 5.0
    http_mode: bool = False
    thinking_budget: int | None = None  # default cap on reasoning tokens for /ask, follow-ups
    pricing_file: Path | None = None
    pricing: Pricing = field(default_factory=Pricing)  # defaults overridden by pricing_file
    workspace_monthly_token_budget: int | None = None  # None: no budget
    secret_key: str | None = None  # encrypts MCP tokens at rest; None: tokens cannot be saved
    # Durable work: how long a dead process's work waits before another takes it over; how
    # long running research may go on after SIGTERM; whether a cut run restarts by itself.
    run_lease_seconds: float = 30.0
    drain_seconds: float = 25.0
    auto_resume: bool = True
    run_max_seconds: float = 45 * 60.0
    stream_idle_seconds: float = 10 * 60.0
    user_max_running: int = 2  # research runs at once per person (fleet wide); more queue
    workspace_max_running: int = 10  # and per workspace
    # Multi-workspace mode ("Add to Slack"): set together, instead of SLACK_BOT_TOKEN.
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    require_workspace_key: bool = False  # refuse workspaces without their own model key
    data_retention_days: int = 30  # after an uninstall, content kept this long (0: none)

    @property
    def multi_workspace(self) -> bool:
        return self.slack_client_id is not None

    # Operations: /healthz, /readyz and /metrics on this port in Socket Mode (HTTP mode serves
    # them on PORT); log verbosity and format.
    metrics_port: int | None = None
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one object per line
    otel_endpoint: str | None = None  # OTLP/HTTP collector; None: no tracing at all

    @property
    def listen_port(self) -> int | None:
        """The HTTP listener's port: PORT in HTTP mode, METRICS_PORT (or none) in Socket Mode."""
        return self.port if self.http_mode else self.metrics_port

    def __repr__(self) -> str:  # secrets never reach a log through repr()
        return (
            f"Settings(mode={'http' if self.http_mode else 'socket'}, "
            f"slack_api_url={self.slack_api_url!r}, dashscope={self.dashscope_base_url!r}, "
            f"db={_without_password(self.database_url)!r}, research_model={self.research_model!r}, "
            f"thinking_model={self.thinking_model!r}, "
            f"monthly_token_budget={self.workspace_monthly_token_budget}, "
            f"secret_key={'set' if self.secret_key else 'unset'}, "
            f"workspaces={'many' if self.multi_workspace else 'one'})"
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        values = (
            self.slack_bot_token,
            self.slack_app_token,
            self.slack_signing_secret,
            self.dashscope_api_key,
            self.secret_key,
            self.slack_client_secret,
            urlsplit(self.database_url).password,  # a log line never shows the database's
        )
        return tuple(v for v in values if v)


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines; comments, blank lines and `export ` prefixes allowed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


_TRUE: Final = ("true", "1", "yes")
_BOOLEANS: Final = (*_TRUE, "false", "0", "no")
_SQLITE_PREFIXES: Final = ("sqlite:///", "sqlite+aiosqlite:///")
_POSTGRES_SCHEMES: Final = ("postgresql", "postgresql+asyncpg", "postgres")


def database_url(url: str) -> str:
    """DATABASE_URL with the driver the bot uses: `sqlite:///relative.db` and
    `sqlite:////abs.db` run on aiosqlite, `postgresql://user:password@host:port/db` (also
    `postgresql+asyncpg://`, `postgres://`) on asyncpg."""
    for prefix in _SQLITE_PREFIXES:
        if url.startswith(prefix) and len(url) > len(prefix) and "?" not in url:
            return "sqlite+aiosqlite:///" + url[len(prefix) :]
    parts = urlsplit(url)
    if parts.scheme in _POSTGRES_SCHEMES and parts.hostname and parts.path.strip("/"):
        return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))
    raise ConfigError(
        "DATABASE_URL must look like sqlite:///relative.db, sqlite:////absolute.db or "
        f"postgresql://user:password@host:5432/database, got {_without_password(url)!r}"
    )


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def missing_settings(get: Callable[[str], str | None], *, force_http: bool) -> str | None:
    """What is missing to start, each with where to get it, Socket Mode first; None if nothing.

    Without SLACK_APP_TOKEN and SLACK_SIGNING_SECRET the message leads with the app token:
    manifest.yml turns Socket Mode on, and it needs no public URL. With SLACK_CLIENT_ID set
    (multi-workspace mode, HTTP only) the client secret and signing secret are needed
    instead of the bot token, and the model key is optional."""
    if get("SLACK_CLIENT_ID") is not None:
        lines = [f"  SLACK_CLIENT_SECRET: {_WHERE['SLACK_CLIENT_SECRET']}"]
        lines = lines if get("SLACK_CLIENT_SECRET") is None else []
        if get("SLACK_SIGNING_SECRET") is None:
            lines.append(f"  SLACK_SIGNING_SECRET: {_MULTI_SIGNING_SECRET}")
        if not lines:
            return None
        return (
            "Missing settings (put them in the environment or in ./.env; .env.example lists "
            "them all):\n" + "\n".join(lines)
        )
    socket_first = not force_http and get("SLACK_APP_TOKEN") is None
    socket_first = socket_first and get("SLACK_SIGNING_SECRET") is None
    names = ["SLACK_APP_TOKEN"] if socket_first else []
    names += [n for n in ("SLACK_BOT_TOKEN", "DASHSCOPE_API_KEY") if get(n) is None]
    if force_http and get("SLACK_SIGNING_SECRET") is None:
        names.append("SLACK_SIGNING_SECRET")
    if not names:
        return None
    lines = [f"  {name}: {_WHERE[name]}" for name in names]
    if socket_first:
        lines.append(
            f"  (or, for HTTP mode instead of Socket Mode, SLACK_SIGNING_SECRET: "
            f"{_SIGNING_SECRET_PATH})"
        )
    return (
        "Missing settings (put them in the environment or in ./.env; .env.example lists them "
        "all):\n" + "\n".join(lines)
    )


def _reader(environ: Mapping[str, str] | None, dotenv: Path | None) -> Callable[[str], str | None]:
    env: dict[str, str] = dict(read_dotenv(dotenv)) if dotenv is not None else {}
    env.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    return get


def preflight(argv: list[str] | None = None) -> int:
    """`scripts/start`'s check before installing: 2 with the sentence when settings are
    missing, else 0. Standard library only; `python -m bot` checks everything again."""
    args = sys.argv[1:] if argv is None else argv
    message = missing_settings(_reader(None, Path(".env")), force_http="--http" in args)
    if message is None:
        return 0
    print(f"Cannot start the bot.\n{message}", file=sys.stderr)
    print(
        "\nCreate the Slack app in one step from manifest.yml (see README.md), then set the "
        "values above.",
        file=sys.stderr,
    )
    return 2


def load_database_url(
    environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")
) -> str:
    """DATABASE_URL alone (the operator's commands need nothing else), with its driver."""
    return database_url(_reader(environ, dotenv)("DATABASE_URL") or DEFAULT_DATABASE_URL)


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    force_http: bool = False,
    dotenv: Path | None = Path(".env"),
) -> Settings:
    """Build Settings from the environment; the real environment wins over .env."""
    get = _reader(environ, dotenv)
    app_token = get("SLACK_APP_TOKEN")
    client_id = get("SLACK_CLIENT_ID")
    multi = client_id is not None
    http_mode = force_http or app_token is None or multi
    missing = missing_settings(get, force_http=force_http)
    if missing is not None:
        raise ConfigError(missing)

    problems: list[str] = []
    bot_token = get("SLACK_BOT_TOKEN") or ""
    if multi:
        if bot_token:
            problems.append(
                "SLACK_BOT_TOKEN and SLACK_CLIENT_ID are two modes: set SLACK_BOT_TOKEN for one "
                "workspace, or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for any number of "
                "workspaces installing from /slack/install, not both"
            )
        if app_token is not None:
            problems.append(
                "multi-workspace mode (SLACK_CLIENT_ID) serves Slack over HTTP only: unset "
                "SLACK_APP_TOKEN (Socket Mode apps cannot be distributed publicly)"
            )
    elif not bot_token.startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    if app_token is not None and not app_token.startswith("xapp-"):
        problems.append("SLACK_APP_TOKEN must be an app-level token starting with xapp-")

    def number(name: str, default: float, *, integer: bool = False) -> float:
        raw = get(name)
        if raw is None:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            problems.append(f"{name} must be a number, got {raw!r}")
            return default
        if value < 0:
            problems.append(f"{name} must not be negative")
        return value

    def positive_int(name: str) -> int | None:
        raw = get(name)
        if raw is None:
            return None
        digits = raw.replace("_", "").replace(",", "")
        if not digits.isascii() or not digits.isdigit() or int(digits) == 0:
            problems.append(
                f"{name} must be a positive whole number of tokens (leave it unset for none), "
                f"got {raw!r}"
            )
            return None
        return int(digits)

    port = int(number("PORT", 3000, integer=True))
    lease = number("RUN_LEASE_SECONDS", 30.0)
    if lease < 1:
        problems.append("RUN_LEASE_SECONDS must be at least 1")
    drain = number("DRAIN_SECONDS", 25.0)
    run_max = number("RUN_MAX_SECONDS", 45 * 60.0)
    idle = number("STREAM_IDLE_SECONDS", 10 * 60.0)
    user_cap = int(number("USER_MAX_RUNNING", 2, integer=True))
    workspace_cap = int(number("WORKSPACE_MAX_RUNNING", 10, integer=True))
    metrics_port = int(number("METRICS_PORT", -1, integer=True))
    log_level = (get("LOG_LEVEL") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        problems.append(
            f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {get('LOG_LEVEL')!r}"
        )
    log_format = (get("LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        problems.append(f"LOG_FORMAT must be text or json, got {get('LOG_FORMAT')!r}")
    if user_cap < 1 or workspace_cap < 1:
        problems.append("USER_MAX_RUNNING and WORKSPACE_MAX_RUNNING must be at least 1")
    auto_resume = (get("AUTO_RESUME") or "true").lower()
    if auto_resume not in _BOOLEANS:
        problems.append(f"AUTO_RESUME must be true or false, got {get('AUTO_RESUME')!r}")
    require_key = (get("REQUIRE_WORKSPACE_KEY") or "false").lower()
    if require_key not in _BOOLEANS:
        problems.append(
            f"REQUIRE_WORKSPACE_KEY must be true or false, got {get('REQUIRE_WORKSPACE_KEY')!r}"
        )
    retention = int(number("DATA_RETENTION_DAYS", 30, integer=True))
    progress = number("PROGRESS_UPDATE_SECONDS", 5.0)
    thinking_budget = positive_int("THINKING_BUDGET")
    monthly_budget = positive_int("WORKSPACE_MONTHLY_TOKEN_BUDGET")
    pricing_file = Path(raw_pricing) if (raw_pricing := get("PRICING_FILE")) else None
    pricing = Pricing()
    if pricing_file is not None:
        try:
            pricing = load_pricing(pricing_file)
        except PricingError as exc:
            problems.append(str(exc))
    secret_key = get("SECRET_KEY")
    if secret_key is not None and len(secret_key) < MIN_SECRET_KEY_CHARS:
        problems.append(
            f"SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    try:
        db_url = database_url(get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    except ConfigError as exc:
        problems.append(str(exc))
        db_url = ""
    if problems:
        raise ConfigError("Invalid settings:\n" + "\n".join(f"  {p}" for p in problems))

    slack_api_url = get("SLACK_API_URL") or DEFAULT_SLACK_API_URL
    return Settings(
        slack_bot_token=bot_token,
        dashscope_api_key=get("DASHSCOPE_API_KEY") or "",
        slack_app_token=app_token,
        slack_signing_secret=get("SLACK_SIGNING_SECRET"),
        slack_api_url=slack_api_url if slack_api_url.endswith("/") else slack_api_url + "/",
        host=get("HOST") or "0.0.0.0",
        port=port,
        dashscope_base_url=(get("DASHSCOPE_HTTP_BASE_URL") or DEFAULT_DASHSCOPE_URL).rstrip("/"),
        database_url=db_url,
        run_lease_seconds=lease,
        drain_seconds=drain,
        auto_resume=auto_resume in _TRUE,
        run_max_seconds=run_max,
        stream_idle_seconds=idle,
        user_max_running=user_cap,
        workspace_max_running=workspace_cap,
        research_model=get("RESEARCH_MODEL") or "qwen-deep-research",
        thinking_model=get("THINKING_MODEL") or "qwen-plus",
        progress_update_seconds=progress,
        http_mode=http_mode,
        thinking_budget=thinking_budget,
        pricing_file=pricing_file,
        pricing=pricing,
        workspace_monthly_token_budget=monthly_budget,
        secret_key=secret_key,
        slack_client_id=client_id,
        slack_client_secret=get("SLACK_CLIENT_SECRET"),
        require_workspace_key=require_key in _TRUE,
        data_retention_days=retention,
        metrics_port=metrics_port if metrics_port >= 0 else None,
        log_level=log_level,
        log_format=log_format,
        otel_endpoint=get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    )
