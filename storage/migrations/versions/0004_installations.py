"""Installations: many workspaces installing the bot from its link.

- slack_installations, slack_bots, slack_oauth_states: slack_sdk's own SQLAlchemy stores
  (AsyncSQLAlchemyInstallationStore, AsyncSQLAlchemyOAuthStateStore) on the bot's database,
  with the columns slack_sdk 3.x defines (written out here so this migration never changes
  with a library upgrade; tests/test_installations.py checks they still match).
- workspaces: one row per workspace (team) the bot has served in multi-workspace mode: its
  enterprise (an org-wide install holds the token for all its workspaces), when it was
  installed, and, after an uninstall, when its content is to be deleted.
- workspace_keys: each workspace's own Model Studio API key, encrypted (never plaintext).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_installations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(32), nullable=False),
        sa.Column("enterprise_id", sa.String(32)),
        sa.Column("enterprise_name", sa.String(200)),
        sa.Column("enterprise_url", sa.String(200)),
        sa.Column("team_id", sa.String(32)),
        sa.Column("team_name", sa.String(200)),
        sa.Column("bot_token", sa.String(200)),
        sa.Column("bot_id", sa.String(32)),
        sa.Column("bot_user_id", sa.String(32)),
        sa.Column("bot_scopes", sa.String(1000)),
        sa.Column("bot_refresh_token", sa.String(200)),
        sa.Column("bot_token_expires_at", sa.DateTime()),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("user_token", sa.String(200)),
        sa.Column("user_scopes", sa.String(1000)),
        sa.Column("user_refresh_token", sa.String(200)),
        sa.Column("user_token_expires_at", sa.DateTime()),
        sa.Column("incoming_webhook_url", sa.String(200)),
        sa.Column("incoming_webhook_channel", sa.String(200)),
        sa.Column("incoming_webhook_channel_id", sa.String(200)),
        sa.Column("incoming_webhook_configuration_url", sa.String(200)),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False, default=False),
        sa.Column("token_type", sa.String(32)),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "slack_installations_idx",
        "slack_installations",
        ["client_id", "enterprise_id", "team_id", "user_id", "installed_at"],
    )
    op.create_table(
        "slack_bots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(32), nullable=False),
        sa.Column("enterprise_id", sa.String(32)),
        sa.Column("enterprise_name", sa.String(200)),
        sa.Column("team_id", sa.String(32)),
        sa.Column("team_name", sa.String(200)),
        sa.Column("bot_token", sa.String(200)),
        sa.Column("bot_id", sa.String(32)),
        sa.Column("bot_user_id", sa.String(32)),
        sa.Column("bot_scopes", sa.String(1000)),
        sa.Column("bot_refresh_token", sa.String(200)),
        sa.Column("bot_token_expires_at", sa.DateTime()),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False, default=False),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "slack_bots_idx",
        "slack_bots",
        ["client_id", "enterprise_id", "team_id", "installed_at"],
    )
    op.create_table(
        "slack_oauth_states",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("state", sa.String(200), nullable=False),
        sa.Column("expire_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "workspaces",
        sa.Column("team_id", sa.Text(), primary_key=True),
        sa.Column("enterprise_id", sa.Text()),
        sa.Column("enterprise_install", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("name", sa.Text(), nullable=False, server_default=""),
        sa.Column("installed_at", sa.Float(), nullable=False),
        sa.Column("uninstalled_at", sa.Float()),  # NULL while installed
        sa.Column("purge_at", sa.Float()),  # when its content is deleted; NULL: kept
    )
    op.create_index("workspaces_enterprise", "workspaces", ["enterprise_id"])
    op.create_index("workspaces_purge", "workspaces", ["purge_at"])
    op.create_table(
        "workspace_keys",
        sa.Column("team_id", sa.Text(), primary_key=True),
        sa.Column("key_sealed", sa.Text(), nullable=False),  # encrypted, never plaintext
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
