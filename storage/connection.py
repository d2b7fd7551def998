"""Access to the Store's one SQLite connection for modules that keep their own tables.

Store (storage/sqlite.py) owns the connection and the lock that keeps one coroutine's write
transaction from interleaving with another's. Modules with their own tables and queries use
both through here instead of opening a second connection, so every write still goes through
that one lock.
"""

from __future__ import annotations

import asyncio

import aiosqlite

from storage.sqlite import Store


def connection(store: Store) -> aiosqlite.Connection:
    return store._db


def write_lock(store: Store) -> asyncio.Lock:
    return store._write
