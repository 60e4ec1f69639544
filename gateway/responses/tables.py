"""Stored responses (``store: true``), in the metering database, per tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.metering.tables import Base


class ResponseRow(Base):
    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    body: Mapped[str] = mapped_column(Text)  # the response object, as the client saw it
    # The items this response added (its input items and output); rows stored before 0008
    # hold the whole conversation and no previous_id.
    items: Mapped[str] = mapped_column(Text)
    previous_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # continues it
    size: Mapped[int] = mapped_column(Integer, default=0)  # bytes of body and items
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True, index=True)
