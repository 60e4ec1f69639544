"""Response cache: a per-key policy and the ledger's mark for answers served from it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("response_cache", sa.Boolean(), nullable=True))
    with op.batch_alter_table("ledger") as table:
        table.add_column(sa.Column("response_cached", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as table:
        table.drop_column("response_cached")
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("response_cache")
