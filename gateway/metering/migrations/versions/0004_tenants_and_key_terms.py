"""Tenants with their own limits and models; keys get models, expiry, parallel limit,
metadata, a revision of their limits, and a rotation's grace period.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEY_COLUMNS = ("max_parallel_requests", "models_json", "expires_at", "metadata_json",
                "revision", "rotated_at", "previous_secret_hash", "previous_valid_until")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("budget_pico", sa.BigInteger(), nullable=True),
        sa.Column("budget_period", sa.String(8), nullable=False),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("max_parallel_requests", sa.Integer(), nullable=True),
        sa.Column("models_json", sa.Text(), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
    )
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("max_parallel_requests", sa.Integer(), nullable=True))
        table.add_column(sa.Column("models_json", sa.Text(), nullable=True))
        table.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("metadata_json", sa.Text(), nullable=True))
        table.add_column(sa.Column("revision", sa.Integer(), nullable=False,
                                   server_default="0"))
        table.add_column(sa.Column("rotated_at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("previous_secret_hash", sa.String(64), nullable=True))
        table.add_column(sa.Column("previous_valid_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        for column in reversed(_KEY_COLUMNS):
            table.drop_column(column)
    op.drop_table("tenants")
