"""Exact costs and conversation versions.

- usage.cost_usd (a float, which drifts when summed) becomes usage.cost_nanousd, an integer
  number of billionths of a US dollar: sums are exact on both engines.
- conversations.version: every save bumps it, and a save based on an older read is refused,
  so two writers (two processes on PostgreSQL) never silently overwrite each other.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("usage", sa.Column("cost_nanousd", sa.BigInteger()))
    op.execute(
        "UPDATE usage SET cost_nanousd = CAST(ROUND(cost_usd * 1000000000) AS BIGINT) "
        "WHERE cost_usd IS NOT NULL"
    )
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("cost_usd")
