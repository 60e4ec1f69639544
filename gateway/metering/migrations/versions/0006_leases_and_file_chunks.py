"""Leases on running batch lines and on finalizing batches (owner, heartbeat); file
content in chunks; files' expiry.

Existing content moves into one chunk per file. A line left running by an older gateway
has no heartbeat, so its lease counts as expired: any instance reclaims it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_chunks",
        sa.Column("file_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.execute("INSERT INTO file_chunks (file_id, seq, data) SELECT id, 0, content FROM files")
    with op.batch_alter_table("files") as table:
        table.drop_column("content")
        table.alter_column("bytes", type_=sa.BigInteger(), existing_nullable=False)
        table.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
        table.create_index("ix_files_expires_at", ["expires_at"])
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("owner", sa.String(128), nullable=True))
        table.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("batch_lines") as table:
        table.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))


def _join_chunks() -> None:
    bind = op.get_bind()
    files = sa.table("files", sa.column("id", sa.String), sa.column("content", sa.LargeBinary))
    chunks = sa.table("file_chunks", sa.column("file_id", sa.String),
                      sa.column("seq", sa.Integer), sa.column("data", sa.LargeBinary))
    for (file_id,) in bind.execute(sa.select(files.c.id)).all():
        parts = bind.execute(sa.select(chunks.c.data).where(chunks.c.file_id == file_id)
                             .order_by(chunks.c.seq)).scalars().all()
        bind.execute(files.update().where(files.c.id == file_id)
                     .values(content=b"".join(parts)))


def downgrade() -> None:
    with op.batch_alter_table("batch_lines") as table:
        table.drop_column("heartbeat_at")
    with op.batch_alter_table("batches") as table:
        table.drop_column("heartbeat_at")
        table.drop_column("owner")
    with op.batch_alter_table("files") as table:
        table.drop_index("ix_files_expires_at")
        table.drop_column("expires_at")
        table.alter_column("bytes", type_=sa.Integer(), existing_nullable=False)
        table.add_column(sa.Column("content", sa.LargeBinary(), nullable=True))
    _join_chunks()
    with op.batch_alter_table("files") as table:
        table.alter_column("content", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("file_chunks")
