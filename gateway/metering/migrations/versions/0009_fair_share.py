"""Fair share under saturation (issue #32): a key's and a tenant's ``weight`` (its share of
a saturated model's tokens relative to other tenants) and ``priority`` (the highest band
its requests may ask for). Both nullable: a key without them takes its tenant's, a tenant
without them has weight 1 and priority 0, so rows stored before keep today's behaviour.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
TABLES = ("api_keys", "tenants")


def upgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("weight", sa.Float(), nullable=True))
            table.add_column(sa.Column("priority", sa.Integer(), nullable=True))


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.drop_column("priority")
            table.drop_column("weight")
