"""What can be checked of the container setup without a Docker engine: the compose file passes
exactly the README's settings, .env.example lists them too, the Dockerfile keeps its promises
(slim base, non-root, the lock file, health check, `python -m bot`), and the health check
command answers for a running bot in both modes."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import yaml

from tests.conftest import start_bot
from tests.fakes.dashscope_server import FakeDashScope
from tests.fakes.slack_server import FakeSlack

ROOT = Path(__file__).resolve().parent.parent
# docker-compose.yml's own variables (not the bot's): the database password it makes.
COMPOSE_ONLY = {"POSTGRES_PASSWORD"}


def readme_settings() -> set[str]:
    """Every variable in the README's settings table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### Settings", 1)[1].split("\n#", 1)[0]
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_the_readme_table_is_read() -> None:
    settings = readme_settings()
    assert {"SLACK_BOT_TOKEN", "HOST", "PORT", "METRICS_PORT", "LOG_FORMAT"} <= settings
    assert len(settings) > 25


def test_compose_passes_exactly_the_readme_settings_to_the_bot() -> None:
    environment = compose()["services"]["bot"]["environment"]
    assert set(environment) == readme_settings()


def test_compose_interpolates_only_readme_settings() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assert used - COMPOSE_ONLY <= readme_settings()
    # The two without which the bot cannot start are required, with a message saying so.
    for name in ("SLACK_BOT_TOKEN", "DASHSCOPE_API_KEY"):
        assert f"${{{name}:?set {name} in .env}}" in text


def test_compose_runs_the_bot_on_its_postgresql_once_that_is_healthy() -> None:
    services = compose()["services"]
    bot = services["bot"]
    assert bot["build"] == "."
    assert bot["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert bot["environment"]["DATABASE_URL"].startswith("postgresql://bot:")
    assert bot["environment"]["DATABASE_URL"].endswith("@db:5432/qwen_bot")
    assert services["db"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    # Docker's grace period is longer than the bot's default drain.
    assert int(bot["stop_grace_period"].rstrip("s")) > 25


def test_env_example_lists_every_readme_setting() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    listed = {m.group(1) for line in lines if (m := re.match(r"#?\s*([A-Z][A-Z0-9_]+)=", line))}
    assert listed - COMPOSE_ONLY == readme_settings()


def test_the_dockerfile_keeps_its_promises() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    text = "\n".join(lines)
    [base] = [line for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"FROM python:3\.1[1-9]-slim(-\w+)?", base)
    assert "COPY requirements.lock ./" in text
    assert "pip install --no-cache-dir --require-hashes -r requirements.lock" in text
    [user] = [line for line in lines if line.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("root", "0")
    assert 'CMD ["python", "-m", "bot.healthcheck"]' in text
    assert lines[-1] == 'CMD ["python", "-m", "bot"]'
    # The user is set before the command, after the installs.
    assert lines.index(user) > max(i for i, line in enumerate(lines) if line.startswith("RUN "))


async def healthcheck(**env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.healthcheck",
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_the_health_check_command_finds_the_bot_in_either_mode(
    slack: FakeSlack, dashscope: FakeDashScope, tmp_path: Path
) -> None:
    http = await start_bot(slack, dashscope, tmp_path / "http", "http")
    try:
        assert await healthcheck(PORT=str(http.http_port)) == (0, "")
    finally:
        await http.stop()
    socket = await start_bot(slack, dashscope, tmp_path / "socket", "socket", METRICS_PORT="0")
    try:
        # In Socket Mode nothing listens on PORT: METRICS_PORT answers.
        assert await healthcheck(PORT="9", METRICS_PORT=str(socket.ops_port)) == (0, "")
    finally:
        await socket.stop()


async def test_the_health_check_command_fails_when_nothing_answers() -> None:
    code, err = await healthcheck(PORT="9", METRICS_PORT="")
    assert code == 1
    assert "no answer from /healthz on port(s) 9" in err
