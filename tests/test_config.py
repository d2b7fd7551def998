"""bot/config.py: Settings from the environment and .env, and `python -m bot` without them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]

BOT_TOKEN = "xoxb-1111-bot-secret"
APP_TOKEN = "xapp-1-app-secret"
SIGNING_SECRET = "signing-secret-value"
API_KEY = "sk-dashscope-secret"

HTTP_ENV = {
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "DASHSCOPE_API_KEY": API_KEY,
}
SOCKET_ENV = {
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_APP_TOKEN": APP_TOKEN,
    "DASHSCOPE_API_KEY": API_KEY,
}


def load(env: dict[str, str], *, force_http: bool = False) -> Settings:
    return load_settings(env, force_http=force_http, dotenv=None)


def config_error(env: dict[str, str], *, force_http: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        load(env, force_http=force_http)
    return str(info.value)


# --------------------------------------------------------------------------- missing values


def test_missing_values_are_each_named_with_where_to_get_them() -> None:
    message = config_error({})
    assert "SLACK_BOT_TOKEN" in message
    assert "manifest.yml" in message
    assert "https://api.slack.com/apps" in message
    assert "DASHSCOPE_API_KEY" in message
    assert "https://bailian.console.aliyun.com" in message
    assert "SLACK_SIGNING_SECRET" in message
    assert "Signing Secret" in message


def test_only_the_missing_value_is_named() -> None:
    message = config_error({**HTTP_ENV, "DASHSCOPE_API_KEY": ""})
    assert "DASHSCOPE_API_KEY" in message
    assert "SLACK_BOT_TOKEN" not in message
    assert "SLACK_SIGNING_SECRET" not in message


def test_blank_value_counts_as_missing() -> None:
    assert "SLACK_BOT_TOKEN" in config_error({**SOCKET_ENV, "SLACK_BOT_TOKEN": "   "})


def test_socket_mode_does_not_ask_for_the_signing_secret() -> None:
    message = config_error({"SLACK_APP_TOKEN": APP_TOKEN})
    assert "SLACK_BOT_TOKEN" in message
    assert "DASHSCOPE_API_KEY" in message
    assert "SLACK_SIGNING_SECRET" not in message


def test_http_mode_mentions_socket_mode_as_the_alternative() -> None:
    message = config_error({"SLACK_BOT_TOKEN": BOT_TOKEN, "DASHSCOPE_API_KEY": API_KEY})
    assert "SLACK_SIGNING_SECRET" in message
    assert "SLACK_APP_TOKEN" in message


def test_forced_http_requires_the_signing_secret_even_with_an_app_token() -> None:
    message = config_error(SOCKET_ENV, force_http=True)
    assert "SLACK_SIGNING_SECRET" in message


def test_forced_http_with_a_signing_secret_runs_in_http_mode() -> None:
    settings = load({**SOCKET_ENV, "SLACK_SIGNING_SECRET": SIGNING_SECRET}, force_http=True)
    assert settings.http_mode is True


def test_app_token_selects_socket_mode() -> None:
    settings = load(SOCKET_ENV)
    assert settings.http_mode is False
    assert settings.slack_app_token == APP_TOKEN


def test_no_app_token_selects_http_mode() -> None:
    settings = load(HTTP_ENV)
    assert settings.http_mode is True
    assert settings.slack_signing_secret == SIGNING_SECRET


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    settings = load(SOCKET_ENV)
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.host == "0.0.0.0"
    assert settings.port == 3000
    assert settings.dashscope_base_url == "https://dashscope.aliyuncs.com/api/v1"
    assert settings.database_url == "sqlite+aiosqlite:///data/bot.sqlite3"
    assert settings.research_model == "qwen-deep-research"
    assert settings.thinking_model == "qwen-plus"
    assert settings.progress_update_seconds == 5


def test_overrides_are_read() -> None:
    settings = load(
        {
            **SOCKET_ENV,
            "SLACK_API_URL": "http://127.0.0.1:9000/api",
            "HOST": "127.0.0.1",
            "PORT": "8080",
            "DASHSCOPE_HTTP_BASE_URL": "http://127.0.0.1:9001/api/v1/",
            "RESEARCH_MODEL": "qwen-deep-research-2025-12-15",
            "THINKING_MODEL": "qwen3-max",
            "PROGRESS_UPDATE_SECONDS": "0.5",
        }
    )
    assert settings.slack_api_url == "http://127.0.0.1:9000/api/"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.dashscope_base_url == "http://127.0.0.1:9001/api/v1"
    assert settings.research_model == "qwen-deep-research-2025-12-15"
    assert settings.thinking_model == "qwen3-max"
    assert settings.progress_update_seconds == 0.5


# --------------------------------------------------------------------------- .env


def test_dotenv_is_read(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\n"
        f"SLACK_BOT_TOKEN={BOT_TOKEN}\n"
        f"export SLACK_APP_TOKEN='{APP_TOKEN}'\n"
        "\n"
        f'DASHSCOPE_API_KEY="{API_KEY}"\n'
        "PORT=4000\n",
        encoding="utf-8",
    )
    settings = load_settings({}, dotenv=dotenv)
    assert settings.slack_bot_token == BOT_TOKEN
    assert settings.slack_app_token == APP_TOKEN
    assert settings.dashscope_api_key == API_KEY
    assert settings.port == 4000


def test_real_environment_wins_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"SLACK_BOT_TOKEN=xoxb-from-file\nSLACK_APP_TOKEN={APP_TOKEN}\n"
        f"DASHSCOPE_API_KEY=sk-from-file\nPORT=4000\n",
        encoding="utf-8",
    )
    settings = load_settings({"DASHSCOPE_API_KEY": API_KEY, "PORT": "5000"}, dotenv=dotenv)
    assert settings.dashscope_api_key == API_KEY
    assert settings.port == 5000
    assert settings.slack_bot_token == "xoxb-from-file"


def test_missing_dotenv_file_is_fine(tmp_path: Path) -> None:
    settings = load_settings(SOCKET_ENV, dotenv=tmp_path / "absent.env")
    assert settings.slack_bot_token == BOT_TOKEN


# --------------------------------------------------------------------------- DATABASE_URL


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("sqlite:///relative.db", "sqlite+aiosqlite:///relative.db"),
        ("sqlite:///data/sub/bot.db", "sqlite+aiosqlite:///data/sub/bot.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("postgresql://u:p@db:5432/bot", "postgresql+asyncpg://u:p@db:5432/bot"),
        ("postgresql+asyncpg://u@db/bot", "postgresql+asyncpg://u@db/bot"),
        ("postgres://u:p@db/bot?ssl=require", "postgresql+asyncpg://u:p@db/bot?ssl=require"),
    ],
)
def test_database_url_picks_the_driver(url: str, normalised: str) -> None:
    assert load({**SOCKET_ENV, "DATABASE_URL": url}).database_url == normalised


def test_the_database_password_stays_out_of_logs() -> None:
    settings = load({**SOCKET_ENV, "DATABASE_URL": "postgresql://bot:hunter2-secret@db/bot"})
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" in settings.secrets  # redacted from every log line
    problem = config_error({**SOCKET_ENV, "DATABASE_URL": "mysql://bot:hunter2-secret@db/x"})
    assert "DATABASE_URL" in problem and "hunter2-secret" not in problem


@pytest.mark.parametrize(
    "url",
    [
        "postgres://db",
        "postgresql:///x",
        "sqlite://relative.db",
        "sqlite:///",
        "relative.db",
        "sqlite:x.db",
        "mysql://db/x",
    ],
)
def test_garbage_database_url_is_rejected(url: str) -> None:
    assert "DATABASE_URL" in config_error({**SOCKET_ENV, "DATABASE_URL": url})


# --------------------------------------------------------------------------- bad values


def test_bot_token_must_be_a_bot_token() -> None:
    message = config_error({**SOCKET_ENV, "SLACK_BOT_TOKEN": "xoxp-user-token"})
    assert "SLACK_BOT_TOKEN" in message
    assert "xoxb-" in message


def test_app_token_must_be_an_app_token() -> None:
    message = config_error({**SOCKET_ENV, "SLACK_APP_TOKEN": "xoxb-not-an-app-token"})
    assert "SLACK_APP_TOKEN" in message
    assert "xapp-" in message


@pytest.mark.parametrize("port", ["http", "3000.5", "-1"])
def test_bad_port_is_rejected(port: str) -> None:
    assert "PORT" in config_error({**SOCKET_ENV, "PORT": port})


def test_non_numeric_progress_interval_is_rejected() -> None:
    assert "PROGRESS_UPDATE_SECONDS" in config_error(
        {**SOCKET_ENV, "PROGRESS_UPDATE_SECONDS": "often"}
    )


def test_all_problems_are_reported_together() -> None:
    message = config_error(
        {**SOCKET_ENV, "SLACK_BOT_TOKEN": "bad", "PORT": "x", "DATABASE_URL": "nope"}
    )
    for name in ("SLACK_BOT_TOKEN", "PORT", "DATABASE_URL"):
        assert name in message


def test_config_error_does_not_echo_the_secret_tokens() -> None:
    message = config_error({**SOCKET_ENV, "SLACK_BOT_TOKEN": "xoxp-private-user-token"})
    assert "xoxp-private-user-token" not in message


# --------------------------------------------------------------------------- secrets


def test_repr_contains_no_secret() -> None:
    settings = load({**SOCKET_ENV, "SLACK_SIGNING_SECRET": SIGNING_SECRET})
    text = f"{settings!r} {settings}"
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, API_KEY):
        assert secret not in text
    assert "qwen-deep-research" in text


def test_secrets_lists_every_secret_set() -> None:
    settings = load({**SOCKET_ENV, "SLACK_SIGNING_SECRET": SIGNING_SECRET})
    assert set(settings.secrets) == {BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, API_KEY}


def test_settings_are_frozen() -> None:
    settings = load(SOCKET_ENV)
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- python -m bot


def test_python_m_bot_without_settings_exits_2_and_says_what_is_missing(tmp_path: Path) -> None:
    if (REPO_ROOT / ".env").exists():
        pytest.skip("a .env in the repository root would be read")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "SLACK_BOT_TOKEN" in result.stderr
    assert "DASHSCOPE_API_KEY" in result.stderr
    assert "manifest.yml" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- SECRET_KEY

SECRET_KEY = "a-secret-key-for-mcp-tokens-0123456789"


def test_secret_key_is_optional_kept_out_of_repr_and_listed_as_a_secret() -> None:
    assert load(SOCKET_ENV).secret_key is None
    settings = load({**SOCKET_ENV, "SECRET_KEY": SECRET_KEY})
    assert settings.secret_key == SECRET_KEY
    assert SECRET_KEY in settings.secrets
    assert SECRET_KEY not in repr(settings) and "secret_key=set" in repr(settings)


def test_a_short_secret_key_is_refused_with_how_to_make_one() -> None:
    message = config_error({**SOCKET_ENV, "SECRET_KEY": "too-short"})
    assert "SECRET_KEY must be at least 32 characters" in message
    assert "secrets.token_urlsafe" in message
    assert "too-short" not in message


# --------------------------------------------------------------------------- multi-workspace

MULTI_ENV = {
    "SLACK_CLIENT_ID": "111.222",
    "SLACK_CLIENT_SECRET": "client-secret-value",
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
}


def test_client_id_and_secret_start_multi_workspace_mode_over_http_without_a_model_key() -> None:
    settings = load(MULTI_ENV)
    assert settings.multi_workspace and settings.http_mode
    assert settings.slack_bot_token == "" and settings.dashscope_api_key == ""
    assert settings.data_retention_days == 30 and settings.require_workspace_key is False
    assert "client-secret-value" in settings.secrets
    assert "client-secret-value" not in repr(settings)


def test_multi_workspace_mode_names_what_it_misses() -> None:
    message = config_error({"SLACK_CLIENT_ID": "111.222"})
    assert "SLACK_CLIENT_SECRET" in message and "Client Secret" in message
    assert "SLACK_SIGNING_SECRET" in message
    assert "SLACK_BOT_TOKEN" not in message and "DASHSCOPE_API_KEY" not in message


def test_the_two_modes_are_not_mixed() -> None:
    assert "not both" in config_error({**MULTI_ENV, "SLACK_BOT_TOKEN": BOT_TOKEN})
    assert "HTTP only" in config_error({**MULTI_ENV, "SLACK_APP_TOKEN": APP_TOKEN})


def test_retention_and_required_key_settings() -> None:
    settings = load({**MULTI_ENV, "DATA_RETENTION_DAYS": "0", "REQUIRE_WORKSPACE_KEY": "true"})
    assert settings.data_retention_days == 0 and settings.require_workspace_key
    assert "REQUIRE_WORKSPACE_KEY" in config_error({**MULTI_ENV, "REQUIRE_WORKSPACE_KEY": "maybe"})
    assert "DATA_RETENTION_DAYS" in config_error({**MULTI_ENV, "DATA_RETENTION_DAYS": "-1"})
