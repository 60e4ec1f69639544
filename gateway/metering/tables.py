"""SQLAlchemy tables of the metering database: tenants, virtual API keys and the ledger.

Money columns are integers of pico-dollars (1e-12 USD): exact on SQLite and PostgreSQL.
Timestamps are naive UTC.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RESERVED = "reserved"  # status of a row between reservation and settlement


class Base(DeclarativeBase):
    pass


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str | None] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime())
    budget_pico: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str] = mapped_column(String(8), default="month")
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    response_cache: Mapped[bool | None] = mapped_column(Boolean)  # None: the gateway default
    max_parallel_requests: Mapped[int | None] = mapped_column(Integer)
    models_json: Mapped[str | None] = mapped_column(Text)  # a JSON list; None: every model
    expires_at: Mapped[datetime | None] = mapped_column(DateTime())
    metadata_json: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer, default=0)  # counts edits of the limits
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime())
    # After a rotation the replaced secret stays valid until previous_valid_until.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_valid_until: Mapped[datetime | None] = mapped_column(DateTime())
    # Its fair share of a saturated model (0009; None: its tenant's)
    weight: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[int | None] = mapped_column(Integer)


class TenantRow(Base):
    """A tenant's own limits and models, on top of each of its keys' (the stricter wins).
    A key's tenant need not have a row: then only the key's own limits apply."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    updated_at: Mapped[datetime] = mapped_column(DateTime())
    budget_pico: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str] = mapped_column(String(8), default="month")
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    max_parallel_requests: Mapped[int | None] = mapped_column(Integer)
    models_json: Mapped[str | None] = mapped_column(Text)
    metadata_json: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    # Its fair share of a saturated model (0009; None: weight 1, priority 0)
    weight: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[int | None] = mapped_column(Integer)
    # Each end user (the requests' ``user``) of this tenant, on its own (0010)
    end_user_budget_pico: Mapped[int | None] = mapped_column(BigInteger)
    end_user_budget_period: Mapped[str] = mapped_column(String(8), default="month")
    end_user_rpm: Mapped[int | None] = mapped_column(Integer)


class LedgerRow(Base):
    """One row per request: reserved before dispatch, settled exactly once."""

    __tablename__ = "ledger"
    __table_args__ = (
        Index("ix_ledger_tenant_created", "tenant", "created_at"),
        Index("ix_ledger_key_created", "key_id", "created_at"),
        Index("ix_ledger_open", "settled_at", "instance_id"),
        Index("ix_ledger_batch", "batch_id"),
        Index("ix_ledger_tenant_user", "tenant", "end_user", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    n: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=RESERVED)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    spec_drafted_tokens: Mapped[int | None] = mapped_column(Integer)
    spec_accepted_tokens: Mapped[int | None] = mapped_column(Integer)
    reserved_tokens: Mapped[int] = mapped_column(Integer)
    reserved_pico: Mapped[int] = mapped_column(BigInteger)
    cost_pico: Mapped[int] = mapped_column(BigInteger, default=0)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    response_cached: Mapped[bool] = mapped_column(Boolean, default=False)  # a response-cache hit
    batch_id: Mapped[str | None] = mapped_column(String(40))  # a line of this batch
    recovered: Mapped[bool] = mapped_column(Boolean, default=False)
    instance_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    settled_at: Mapped[datetime | None] = mapped_column(DateTime())
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    end_user: Mapped[str | None] = mapped_column(String(256))  # the request's ``user`` (0010)
    adapter: Mapped[str | None] = mapped_column(String(128))  # a LoRA adapter served (0010)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)  # of completion_tokens


class LedgerTagRow(Base):
    """A request's tags (its ``metadata`` pairs and ``x-llmgw-tags``), one row each."""

    __tablename__ = "ledger_tags"
    __table_args__ = (Index("ix_ledger_tags_tenant_tag", "tenant", "tag"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tag: Mapped[str] = mapped_column(String(600), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
