"""Attribution: each ledger row keeps the request's ``user`` (``end_user``), the LoRA
adapter it ran on (``adapter``) and its completion tokens inside a reasoning span
(``reasoning_tokens``); its tags go to ``ledger_tags`` (one row per tag); a tenant may
limit each of its end users (``end_user_rpm``, ``end_user_budget_*``). Rows stored before
have no user, adapter or tags, and 0 reasoning tokens.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as table:
        table.add_column(sa.Column("end_user", sa.String(256), nullable=True))
        table.add_column(sa.Column("adapter", sa.String(128), nullable=True))
        table.add_column(sa.Column("reasoning_tokens", sa.Integer(), nullable=False,
                                   server_default="0"))
        table.create_index("ix_ledger_tenant_user", ["tenant", "end_user", "created_at"])
    with op.batch_alter_table("tenants") as table:
        table.add_column(sa.Column("end_user_budget_pico", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("end_user_budget_period", sa.String(8), nullable=False,
                                   server_default="month"))
        table.add_column(sa.Column("end_user_rpm", sa.Integer(), nullable=True))
    op.create_table(
        "ledger_tags",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("tag", sa.String(600), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
    )
    op.create_index("ix_ledger_tags_tenant_tag", "ledger_tags", ["tenant", "tag"])


def downgrade() -> None:
    op.drop_index("ix_ledger_tags_tenant_tag", table_name="ledger_tags")
    op.drop_table("ledger_tags")
    with op.batch_alter_table("tenants") as table:
        table.drop_column("end_user_rpm")
        table.drop_column("end_user_budget_period")
        table.drop_column("end_user_budget_pico")
    with op.batch_alter_table("ledger") as table:
        table.drop_index("ix_ledger_tenant_user")
        table.drop_column("reasoning_tokens")
        table.drop_column("adapter")
        table.drop_column("end_user")
