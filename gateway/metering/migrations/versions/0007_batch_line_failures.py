"""Batch lines count their failed attempts (``failed_attempts``): an attempt that failed on
the engine, ran past ``batches.line_timeout_s`` or whose gateway died or stalled holding it.
A line fails for good at ``batches.max_attempts``. Lines already stored start at 0.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_lines") as table:
        table.add_column(sa.Column("failed_attempts", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("batch_lines") as table:
        table.drop_column("failed_attempts")
