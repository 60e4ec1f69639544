"""Stored responses (``store: true``), in the metering database, per tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, Text
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
    items: Mapped[str] = mapped_column(Text)  # the conversation up to and including it
