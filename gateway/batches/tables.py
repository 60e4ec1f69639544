"""Tables of uploaded files, batches and their lines (in the metering database).

A batch's request counts are never stored: each line owns its status and the counts are
read from the lines, so they cannot drift. A file's bytes are rows of ``file_chunks``
(at most ``CHUNK_BYTES`` each), written and read one chunk at a time. A running line,
and a batch being finalized, is leased: ``owner`` is the instance and ``heartbeat_at``
when it last renewed the lease. ``attempts`` counts a line's claims (a wait for a rate
limit or a shutdown gives the line back and costs a claim); ``failed_attempts`` counts
only the attempts that failed, which ``batches.max_attempts`` bounds.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.metering.tables import Base

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


class FileRow(Base):
    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    filename: Mapped[str] = mapped_column(String(256))
    purpose: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column("bytes", BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(), index=True)


class FileChunkRow(Base):
    """One piece of a file's content, in order of ``seq``."""

    __tablename__ = "file_chunks"

    file_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class BatchRow(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    metadata_json: Mapped[str | None] = mapped_column(Text)
    errors_json: Mapped[str | None] = mapped_column(Text)
    output_file_id: Mapped[str | None] = mapped_column(String(40))
    error_file_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    expires_at: Mapped[datetime] = mapped_column(DateTime())
    in_progress_at: Mapped[datetime | None] = mapped_column(DateTime())
    finalizing_at: Mapped[datetime | None] = mapped_column(DateTime())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime())
    failed_at: Mapped[datetime | None] = mapped_column(DateTime())
    cancelling_at: Mapped[datetime | None] = mapped_column(DateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime())
    owner: Mapped[str | None] = mapped_column(String(128))  # the instance finalizing it
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime())


class BatchLineRow(Base):
    """One request of a batch: claimed by a worker, finished exactly once."""

    __tablename__ = "batch_lines"

    batch_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    custom_id: Mapped[str] = mapped_column(String(512))
    body_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims: each a new request id
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)  # max: batches.max_attempts
    owner: Mapped[str | None] = mapped_column(String(128))  # the instance running it
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime())  # its lease, renewed
    result_json: Mapped[str | None] = mapped_column(Text)  # the output or error-file line
