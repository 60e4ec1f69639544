"""LoRA adapters registered by ``/admin/adapters``: name, base model, folder, prices (text of
the Decimal, USD per 1M tokens), the tenants and keys allowed (JSON lists) and the reasoning
parser. The ledger already records an adapter's name on its rows (0010).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "adapters",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("base_model", sa.String(128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("prompt_price", sa.String(40), nullable=False),
        sa.Column("completion_price", sa.String(40), nullable=False),
        sa.Column("tenants_json", sa.Text(), nullable=False),
        sa.Column("keys_json", sa.Text(), nullable=False),
        sa.Column("reasoning_parser", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("adapters")
