"""scripts/start as a new user meets it (issue 10, item 15): settings are checked before any
install, a .venv made by a gone or too-old Python is rebuilt, the missing-settings message leads
with Socket Mode, and .env.example lists every setting.

The script runs for real on a copy of the repository's layout; the interpreter it is given
(PYTHON) runs the standard library only and fakes what needs the network (creating a venv,
pip), recording every call, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.config import read_dotenv

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "SLACK_BOT_TOKEN": "xoxb-start-test",
    "SLACK_APP_TOKEN": "xapp-start-test",
    "DASHSCOPE_API_KEY": "sk-start-test",
}

# python3, standard library only (-S: no site-packages, so nothing installed can help), except
# that `-m venv DIR` makes DIR/bin/python the fake venv interpreter below.
FAKE_PYTHON = """#!/bin/sh
echo "python $*" >> "$CALLS"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && cp "$FAKE_VENV_PYTHON" "$3/bin/python" && exit 0
fi
exec "$REAL_PYTHON" -S -E "$@"
"""
# The interpreter of a new .venv: real for version checks, pip succeeds, the bot "starts".
FAKE_VENV_PYTHON = """#!/bin/sh
echo "venv-python $*" >> "$CALLS"
case "$1" in
  -c) exec "$REAL_PYTHON" -S -E "$@" ;;
  --version) echo "Python 3.12.1" ;;
  -m) if [ "$2" = "bot" ]; then echo "bot running"; fi ;;
esac
"""
# A .venv made with Python 3.8: too old for the bot, so every install would fail.
OLD_VENV_PYTHON = """#!/bin/sh
echo "old-python $*" >> "$CALLS"
if [ "$1" = "--version" ]; then echo "Python 3.8.10"; exit 0; fi
exit 1
"""


# Exactly the pinned versions, each checked against its hashes.
INSTALL = (
    "venv-python -m pip install --disable-pip-version-check --require-hashes -r requirements.lock"
)


@dataclass
class Run:
    code: int
    out: str
    err: str
    calls: list[str]
    seconds: float


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The repository's layout: the real scripts and bot package, the lock file, no .env."""
    (tmp_path / "scripts").mkdir()
    for script in ("start", "install-locked"):
        shutil.copy2(ROOT / "scripts" / script, tmp_path / "scripts" / script)
    shutil.copy2(ROOT / "requirements.lock", tmp_path / "requirements.lock")
    (tmp_path / "bot").symlink_to(ROOT / "bot", target_is_directory=True)
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (
        ("python3", FAKE_PYTHON),
        ("venv-python", FAKE_VENV_PYTHON),
        ("old-python", OLD_VENV_PYTHON),
    ):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    return tmp_path


def start(repo: Path, *args: str, **settings: str) -> Run:
    calls = repo / "calls.log"
    calls.write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(repo),
        "PYTHON": str(repo / "tools" / "python3"),
        "REAL_PYTHON": sys.executable,
        "FAKE_VENV_PYTHON": str(repo / "tools" / "venv-python"),
        "CALLS": str(calls),
        **settings,
    }
    began = time.monotonic()
    result = subprocess.run(
        [str(repo / "scripts" / "start"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(
        result.returncode,
        result.stdout,
        result.stderr,
        calls.read_text().splitlines(),
        time.monotonic() - began,
    )


def test_missing_settings_are_named_at_once_before_anything_is_installed(repo: Path) -> None:
    run = start(repo)
    assert run.code == 2, run.err
    assert run.seconds < 10
    assert run.err.startswith("Cannot start the bot.\nMissing settings")
    lines = [line.strip() for line in run.err.splitlines() if line.startswith("  ")]
    # Socket Mode first: manifest.yml turns it on and it needs no public URL.
    assert lines[0].startswith("SLACK_APP_TOKEN: an app-level token (xapp-...) for Socket Mode")
    assert [line.split(":")[0] for line in lines[1:3]] == ["SLACK_BOT_TOKEN", "DASHSCOPE_API_KEY"]
    assert "HTTP mode instead of Socket Mode, SLACK_SIGNING_SECRET" in lines[3]
    assert ".env.example" in run.err and "Traceback" not in run.err
    assert not (repo / ".venv").exists()
    assert not any("venv" in c or "pip" in c for c in run.calls), run.calls


def test_settings_in_dot_env_are_enough_and_the_bot_starts(repo: Path) -> None:
    (repo / ".env").write_text("".join(f"{k}={v}\n" for k, v in SETTINGS.items()))
    run = start(repo)
    assert run.code == 0, run.err
    assert "bot running" in run.out
    assert "python -m venv .venv" in run.calls
    assert INSTALL in run.calls
    assert run.calls[-1] == "venv-python -m bot"

    again = start(repo, "--http", SLACK_SIGNING_SECRET="s3cret")
    assert again.code == 0, again.err
    assert not any("pip" in c or "-m venv" in c for c in again.calls)  # nothing to install
    assert again.calls[-1] == "venv-python -m bot --http"


def test_a_changed_lock_file_is_installed_at_the_next_start_and_only_then(repo: Path) -> None:
    (repo / ".env").write_text("".join(f"{k}={v}\n" for k, v in SETTINGS.items()))
    assert INSTALL in start(repo).calls
    assert not any("pip" in c for c in start(repo).calls)
    with (repo / "requirements.lock").open("a") as lock:
        lock.write("# refreshed by scripts/lock\n")
    changed = start(repo, "check")
    assert INSTALL in changed.calls
    assert changed.calls[-1] == "venv-python -m bot check"
    assert not any("pip" in c for c in start(repo).calls)


def test_http_mode_asks_for_the_signing_secret_first_thing(repo: Path) -> None:
    run = start(repo, "--http", **SETTINGS)
    assert run.code == 2
    assert "SLACK_SIGNING_SECRET" in run.err and "SLACK_APP_TOKEN:" not in run.err
    assert not (repo / ".venv").exists()


def test_a_venv_made_by_an_old_python_is_rebuilt(repo: Path) -> None:
    venv_python = repo / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    shutil.copy2(repo / "tools" / "old-python", venv_python)
    (repo / ".venv" / ".installed-requirements.lock").write_text("stale")
    run = start(repo, **SETTINGS)
    assert run.code == 0, run.err
    assert "Rebuilding .venv: it was made with Python 3.8.10." in run.err
    assert "python -m venv .venv" in run.calls
    assert any(c.startswith("venv-python -m pip install") for c in run.calls)
    assert "bot running" in run.out
    assert (
        "Python 3.12.1"
        in subprocess.run(
            [str(venv_python), "--version"],
            env={"CALLS": os.devnull},
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    )


def test_a_venv_whose_python_is_gone_is_rebuilt(repo: Path) -> None:
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(repo / "no-such-python")
    run = start(repo, **SETTINGS)
    assert run.code == 0, run.err
    assert "Rebuilding .venv: it was made with a Python that is no longer there." in run.err
    assert "bot running" in run.out


def test_a_python_too_old_for_the_bot_is_named(repo: Path) -> None:
    old = repo / "tools" / "old-python"
    env_python = {"PYTHON": str(old)}
    result = subprocess.run(
        [str(repo / "scripts" / "start")],
        env={"PATH": os.environ.get("PATH", ""), "CALLS": os.devnull, **env_python},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "needs Python 3.11 or newer" in result.stderr and "Python 3.8.10" in result.stderr
    assert not (repo / ".venv").exists()


def test_env_example_lists_every_setting_and_leads_with_socket_mode() -> None:
    example = ROOT / ".env.example"
    text = example.read_text()
    names = {
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_API_URL",
        "HOST",
        "PORT",
        "DASHSCOPE_API_KEY",
        "DASHSCOPE_HTTP_BASE_URL",
        "DATABASE_URL",
        "RESEARCH_MODEL",
        "THINKING_MODEL",
        "PROGRESS_UPDATE_SECONDS",
        "THINKING_BUDGET",
        "PRICING_FILE",
        "WORKSPACE_MONTHLY_TOKEN_BUDGET",
        "SECRET_KEY",
        "SLACK_CLIENT_ID",
        "SLACK_CLIENT_SECRET",
        "REQUIRE_WORKSPACE_KEY",
        "DATA_RETENTION_DAYS",
    }
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{n}`" in readme for n in names)  # the same list the README documents
    assert all(f"{n}=" in text for n in names)
    assert text.index("SLACK_APP_TOKEN=") < text.index("SLACK_SIGNING_SECRET=")
    # Copied to .env unchanged, it names what is still missing rather than passing for set.
    assert set(read_dotenv(example).values()) == {""}
