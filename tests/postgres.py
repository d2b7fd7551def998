"""A PostgreSQL database of its own for each test that wants one.

Where the server comes from: TEST_POSTGRES_URL if set, else the server at 127.0.0.1:5432 (this
project's machines run one, trust auth, database `test`). Where none answers, the tests that
need it are skipped with one line saying why; with CI set, that is a failure instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"
_unavailable: list[str] = []  # the reason, once a connection failed
_checked: list[bool] = []


def admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL") or DEFAULT_URL


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, path=f"/{name}"))


async def _require_server() -> None:
    if not _checked:
        try:
            conn = await asyncpg.connect(_with_database(admin_url(), _admin_db()), timeout=5)
            await conn.close()
        except (OSError, asyncpg.PostgresError) as exc:
            _unavailable.append(f"no PostgreSQL at {_safe(admin_url())} ({type(exc).__name__})")
        _checked.append(True)
    if _unavailable:
        if os.environ.get("CI"):
            pytest.fail(f"{_unavailable[0]}; CI must run the PostgreSQL tests")
        pytest.skip(f"{_unavailable[0]}; set TEST_POSTGRES_URL to run the PostgreSQL tests")


def _admin_db() -> str:
    return urlsplit(admin_url()).path.strip("/") or "postgres"


def _safe(url: str) -> str:
    parts = urlsplit(url)
    return parts.hostname or "?" if parts.password else url


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database; its URL (postgresql://…), dropped afterwards."""
    await _require_server()
    name = f"qdr_test_{uuid.uuid4().hex[:16]}"
    admin = _with_database(admin_url(), _admin_db())
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield _with_database(admin_url(), name)
    finally:
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
