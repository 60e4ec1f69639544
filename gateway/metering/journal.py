"""The settlement journal: settlements waiting for the ledger database, kept on local disk.

A settlement the database could not take is appended here (one JSON line, flushed and
fsynced) before it is queued, so a gateway killed during a database outage still bills it:
the next start on the same data directory settles what the journal holds before startup
recovery closes this instance's open rows. Settling writes only an open row, so replaying an
entry the ledger already has changes nothing. When the backlog drains, the journal is
rewritten with what still waits (removed when nothing does).

One file per ``metering.instance_id`` under ``<data_dir>/settlements/``: keep the id stable
across restarts (recovery needs that too) and give each process its own. A torn last line (a
crash mid-append: the settlement was never acknowledged) or any unreadable line is skipped
with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from gateway.metering.ledger import Settlement

log = logging.getLogger("llm_gateway.metering")
VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class PendingSettlement:
    """Everything needed to settle one ledger row and count it: the row, the result, the
    model and tenant (for the metrics) and the exact cost."""

    request_id: str
    model: str
    tenant: str
    result: Settlement
    cost: Decimal

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ValueError("a pending settlement names its request")
        if not self.cost.is_finite() or self.cost < 0:
            raise ValueError("a pending settlement's cost is finite and >= 0")


def journal_path(data_dir: Path, instance_id: str) -> Path:
    """This instance's journal file under ``data_dir``."""
    name = _UNSAFE.sub("_", instance_id) or "gateway"
    return data_dir / "settlements" / f"{name}.jsonl"


def encode(pending: PendingSettlement) -> bytes:
    record = {"v": VERSION, "request_id": pending.request_id, "model": pending.model,
              "tenant": pending.tenant, "cost": str(pending.cost),
              "result": asdict(pending.result)}
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def decode(line: bytes) -> PendingSettlement:
    """One journal line; ValueError (or TypeError) when it is not a whole, valid entry."""
    record: Any = json.loads(line)
    if not isinstance(record, dict) or record.get("v") != VERSION:
        raise ValueError("not a journal entry of this version")
    result = record["result"]
    if not isinstance(result, dict):
        raise ValueError("an entry's result is an object")
    try:
        cost = Decimal(record["cost"])
    except (InvalidOperation, TypeError) as exc:
        raise ValueError("an entry's cost is a decimal") from exc
    return PendingSettlement(str(record["request_id"]), str(record["model"]),
                             str(record["tenant"]), Settlement(**result), cost)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SettlementJournal:
    """Blocking file operations: call them off the event loop (``asyncio.to_thread``), one
    at a time (the backlog serializes them)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, pending: PendingSettlement) -> None:
        """Durable when it returns (written and fsynced)."""
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as file:
            if not created and file.tell() > 0 and not self._ends_with_newline():
                file.write(b"\n")  # end a torn line, so this entry stays readable
            file.write(encode(pending))
            file.flush()
            os.fsync(file.fileno())
        if created:
            _fsync_dir(self.path.parent)

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as file:
            file.seek(-1, os.SEEK_END)
            return file.read(1) == b"\n"

    def read(self) -> list[PendingSettlement]:
        """The entries, in order; the last entry for a request wins."""
        if not self.path.exists():
            return []
        found: dict[str, PendingSettlement] = {}
        for number, line in enumerate(self.path.read_bytes().split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                pending = decode(line)
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("settlement journal %s line %d skipped (torn or unreadable): %s",
                            self.path, number, exc)
                continue
            found[pending.request_id] = pending
        return list(found.values())

    def rewrite(self, pending: Iterable[PendingSettlement]) -> None:
        """Compaction: the journal becomes exactly ``pending`` (removed when empty), replaced
        atomically so a crash leaves the old journal or the new one."""
        entries = b"".join(encode(p) for p in pending)
        if not entries:
            if self.path.exists():
                self.path.unlink()
                _fsync_dir(self.path.parent)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.tmp")
        with partial.open("wb") as file:
            file.write(entries)
            file.flush()
            os.fsync(file.fileno())
        partial.replace(self.path)
        _fsync_dir(self.path.parent)
