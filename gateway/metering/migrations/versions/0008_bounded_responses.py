"""Stored responses are bounded: a continuation links to the response it continues
(``previous_id``) and stores only its own items; each row knows its ``size`` (a tenant's
quota, ``responses.max_tenant_bytes``) and expires (``responses.ttl_s``). Rows stored
before keep their whole conversation, are sized here, and expire 30 days after creation.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("responses") as table:
        table.add_column(sa.Column("previous_id", sa.String(64), nullable=True))
        table.add_column(sa.Column("size", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
        table.create_index("ix_responses_expires_at", ["expires_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE responses SET size = octet_length(body) + octet_length(items), "
                   "expires_at = created_at + interval '30 days'")
    else:
        op.execute("UPDATE responses SET size = length(CAST(body AS BLOB)) + "
                   "length(CAST(items AS BLOB)), "
                   "expires_at = strftime('%Y-%m-%d %H:%M:%f000', created_at, '+30 days')")


def downgrade() -> None:
    with op.batch_alter_table("responses") as table:
        table.drop_index("ix_responses_expires_at")
        table.drop_column("expires_at")
        table.drop_column("size")
        table.drop_column("previous_id")
