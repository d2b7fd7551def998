"""Alembic's environment: the connection comes from storage.database, never from a file."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters a table by copying it; Alembic's batch mode does that.
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
