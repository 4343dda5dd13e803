"""The ledger's hash chain: how an entry is encoded, hashed and checked (pure functions).

Each entry commits to the previous entry's hash, so editing, removing or reordering any
stored entry breaks the chain at that entry. The hash covers every stored column
(sequence number included) in one canonical JSON encoding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

GENESIS = "0" * 64

#: The stored columns of an entry, in hashing order (``hash`` itself excluded).
COLUMNS = (
    "seq", "time", "principal", "source", "transport", "operation", "collection_id",
    "purpose", "case_ref", "result", "detail", "prev_hash",
)


@dataclass(frozen=True)
class LedgerEntry:
    """What the service asks the store to append; the store adds seq, prev_hash and hash."""

    time: str  # ISO 8601, UTC, microseconds
    principal: str
    source: str | None
    transport: str
    operation: str
    collection_id: str | None
    purpose: str | None
    case_ref: str | None
    result: str  # "OK" or the error code
    detail: dict[str, Any]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(row: dict[str, Any]) -> str:
    """SHA-256 of the entry's stored columns (``detail`` as its stored JSON text)."""
    return hashlib.sha256(canonical([row[c] for c in COLUMNS]).encode("utf-8")).hexdigest()


def row_for(entry: LedgerEntry, seq: int, prev_hash: str) -> dict[str, Any]:
    row = {
        "seq": seq,
        "time": entry.time,
        "principal": entry.principal,
        "source": entry.source,
        "transport": entry.transport,
        "operation": entry.operation,
        "collection_id": entry.collection_id,
        "purpose": entry.purpose,
        "case_ref": entry.case_ref,
        "result": entry.result,
        "detail": canonical(entry.detail),
        "prev_hash": prev_hash,
    }
    row["hash"] = entry_hash(row)
    return row


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int  # entries checked (up to the first problem)
    head_seq: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None


def verify(rows: Iterable[dict[str, Any]]) -> Verification:
    """Walk the chain in sequence order; the first entry altered, removed or out of order is named."""
    expected, prev, count = 1, GENESIS, 0
    for row in rows:
        seq = row["seq"]
        if seq != expected:
            return Verification(False, count, expected - 1, prev,
                                f"entry #{expected} is missing (the next stored entry is #{seq})", expected)
        if row["prev_hash"] != prev:
            return Verification(False, count, expected - 1, prev,
                                f"entry #{seq} does not follow entry #{seq - 1} (an entry was removed, "
                                "inserted or reordered here)", seq)
        if entry_hash(row) != row["hash"]:
            return Verification(False, count, expected - 1, prev, f"entry #{seq} was altered (its hash does not "
                                "match its content)", seq)
        prev, expected, count = row["hash"], expected + 1, count + 1
    return Verification(True, count, expected - 1, prev)
