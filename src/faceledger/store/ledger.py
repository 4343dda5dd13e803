"""The ledger's hash chain: how an entry is encoded, hashed and checked (pure functions).

Each entry commits to the previous entry's hash, so editing, removing or reordering any
stored entry breaks the chain at that entry. The hash covers every stored column
(sequence number included) in one canonical JSON encoding.

An entry's size is capped here, whatever the service put in it: a text column past
MAX_COLUMN_CHARS is cut (saying how long it was), a ``detail`` whose JSON is past
MAX_DETAIL_CHARS is replaced by its size, SHA-256 and member names (and its RequestId).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

GENESIS = "0" * 64
#: The longest text column the store writes (characters): the service keeps them well under this.
MAX_COLUMN_CHARS = 4096
#: The longest ``detail`` JSON the store writes (characters). The largest legitimate detail is a ListFaces or
#: SearchFaces answer of 4096 faces with 255-character ExternalImageIds and 128-character UserIds: about 2 MB.
MAX_DETAIL_CHARS = 4 * 1024 * 1024

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


def _capped(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_COLUMN_CHARS:
        return value
    return f"{value[:MAX_COLUMN_CHARS]}...({len(value)} characters)"


def capped_detail(detail: dict[str, Any]) -> str:
    """``detail`` as stored: its canonical JSON, or, past MAX_DETAIL_CHARS, a stand-in naming its size, hash
    and members."""
    text = canonical(detail)
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    stand_in = {"Oversized": {"Characters": len(text), "SHA256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                              "Members": sorted(str(k)[:64] for k in list(detail)[:64])}}
    if isinstance(detail.get("RequestId"), str):
        stand_in["RequestId"] = detail["RequestId"][:64]
    return canonical(stand_in)


def row_for(entry: LedgerEntry, seq: int, prev_hash: str) -> dict[str, Any]:
    row = {
        "seq": seq,
        "time": entry.time,
        "principal": _capped(entry.principal),
        "source": _capped(entry.source),
        "transport": _capped(entry.transport),
        "operation": _capped(entry.operation),
        "collection_id": _capped(entry.collection_id),
        "purpose": _capped(entry.purpose),
        "case_ref": _capped(entry.case_ref),
        "result": _capped(entry.result),
        "detail": capped_detail(entry.detail),
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
