"""The stream tables of the SQLite store: named sources, sinks of Kinesis data stream ARNs, stream processors.

Tables ``stream_sources``, ``stream_sinks`` and ``stream_processors`` (created with the rest of
:data:`faceledger.store.sqlite.SCHEMA`). A processor's ``definition`` is its CreateStreamProcessor request (as
validated, Tags apart) plus who created it and why (``Principal``, ``Purpose``, ``Case``); ``desired`` is
RUNNING between StartStreamProcessor and StopStreamProcessor (a server that starts resumes those), ``status`` and
``status_message`` what it last reported, ``stats`` its counters (JSON) when it last stopped or changed status.
Writes join the calling unit of work (:meth:`SQLiteStore.unit_of_work`) when there is one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import Page
from .sqlite import SQLiteStore, _ts


@dataclass(frozen=True)
class StreamSource:
    name: str
    url: str
    kind: str
    created_at: datetime


@dataclass(frozen=True)
class StreamProcessorRecord:
    name: str
    arn: str
    definition: dict[str, Any]
    tags: dict[str, str]
    status: str
    status_message: str | None
    desired: str
    session_id: str | None
    stats: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class StreamTables:
    """Reads and writes of the stream tables of one :class:`SQLiteStore`."""

    def __init__(self, store: SQLiteStore) -> None:
        if not isinstance(store, SQLiteStore):
            raise TypeError("stream processors need the SQLite store")
        self.store = store

    # -- sources ---------------------------------------------------------------------------

    def add_source(self, name: str, url: str, kind: str) -> bool:
        """False when a source of that name exists."""
        with self.store._write() as db:
            if db.execute("SELECT 1 FROM stream_sources WHERE name = ?", (name,)).fetchone():
                return False
            db.execute("INSERT INTO stream_sources (name, url, kind, created_at) VALUES (?, ?, ?, ?)",
                       (name, url, kind, time.time()))
        return True

    def get_source(self, name: str) -> StreamSource | None:
        row = self.store._conn().execute("SELECT * FROM stream_sources WHERE name = ?", (name,)).fetchone()
        return None if row is None else StreamSource(row["name"], row["url"], row["kind"], _ts(row["created_at"]))

    def list_sources(self) -> list[StreamSource]:
        rows = self.store._conn().execute("SELECT * FROM stream_sources ORDER BY name")
        return [StreamSource(r["name"], r["url"], r["kind"], _ts(r["created_at"])) for r in rows]

    def remove_source(self, name: str) -> bool:
        with self.store._write() as db:
            return db.execute("DELETE FROM stream_sources WHERE name = ?", (name,)).rowcount > 0

    # -- sinks -----------------------------------------------------------------------------

    def put_sink(self, arn: str, webhook_url: str | None) -> None:
        with self.store._write() as db:
            db.execute("INSERT INTO stream_sinks (arn, webhook_url, created_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (arn) DO UPDATE SET webhook_url = excluded.webhook_url",
                       (arn, webhook_url, time.time()))

    def get_sink(self, arn: str) -> str | None:
        """The webhook URL configured for a Kinesis data stream ARN (None: none)."""
        row = self.store._conn().execute("SELECT webhook_url FROM stream_sinks WHERE arn = ?", (arn,)).fetchone()
        return None if row is None else row[0]

    def list_sinks(self) -> dict[str, str | None]:
        rows = self.store._conn().execute("SELECT arn, webhook_url FROM stream_sinks ORDER BY arn")
        return {r[0]: r[1] for r in rows}

    # -- processors ------------------------------------------------------------------------

    def create_processor(self, name: str, arn: str, definition: dict[str, Any], tags: dict[str, str]) -> bool:
        """False when a processor of that name exists."""
        now = time.time()
        with self.store._write() as db:
            if db.execute("SELECT 1 FROM stream_processors WHERE name = ?", (name,)).fetchone():
                return False
            db.execute("INSERT INTO stream_processors (name, arn, definition, tags, status, status_message, desired, "
                       "created_at, updated_at) VALUES (?, ?, ?, ?, 'STOPPED', NULL, 'STOPPED', ?, ?)",
                       (name, arn, json.dumps(definition, sort_keys=True), json.dumps(tags, sort_keys=True), now,
                        now))
        return True

    @staticmethod
    def _processor(row: Any) -> StreamProcessorRecord:
        return StreamProcessorRecord(
            name=row["name"], arn=row["arn"], definition=json.loads(row["definition"]), tags=json.loads(row["tags"]),
            status=row["status"], status_message=row["status_message"], desired=row["desired"],
            session_id=row["session_id"], stats=json.loads(row["stats"]) if row["stats"] else None,
            created_at=_ts(row["created_at"]), updated_at=_ts(row["updated_at"]))

    def get_processor(self, name: str) -> StreamProcessorRecord | None:
        row = self.store._conn().execute("SELECT * FROM stream_processors WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._processor(row)

    def processor_by_arn(self, arn: str) -> StreamProcessorRecord | None:
        row = self.store._conn().execute("SELECT * FROM stream_processors WHERE arn = ?", (arn,)).fetchone()
        return None if row is None else self._processor(row)

    def list_processors(self, after: str | None, limit: int) -> Page[StreamProcessorRecord]:
        rows = self.store._conn().execute(
            "SELECT * FROM stream_processors WHERE name > ? ORDER BY name LIMIT ?", (after or "", limit + 1)
        ).fetchall()
        items = [self._processor(r) for r in rows[:limit]]
        return Page(items, items[-1].name if len(rows) > limit else None)

    def count_processors(self) -> int:
        return int(self.store._conn().execute("SELECT COUNT(*) FROM stream_processors").fetchone()[0])

    def processors_using_source(self, source: str) -> list[str]:
        rows = self.store._conn().execute("SELECT name, definition FROM stream_processors ORDER BY name")
        return [r[0] for r in rows if json.loads(r[1]).get("SourceName") == source]

    def desired_running(self) -> list[str]:
        rows = self.store._conn().execute("SELECT name FROM stream_processors WHERE desired = 'RUNNING' ORDER BY name")
        return [r[0] for r in rows]

    def update_processor(self, name: str, **values: Any) -> bool:
        """Set columns (definition, tags, status, status_message, desired, session_id, stats); False when the
        processor does not exist."""
        allowed = {"definition", "tags", "status", "status_message", "desired", "session_id", "stats"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        cols, args = [], []
        for key, value in values.items():
            cols.append(f"{key} = ?")
            args.append(json.dumps(value, sort_keys=True) if key in ("definition", "tags", "stats") and
                        value is not None else value)
        cols.append("updated_at = ?")
        args.append(time.time())
        with self.store._write() as db:
            return db.execute(f"UPDATE stream_processors SET {', '.join(cols)} WHERE name = ?",
                              (*args, name)).rowcount > 0

    def claim_start(self, name: str, session_id: str, status_message: str,
                    definition: dict[str, Any] | None = None) -> bool:
        """Mark a processor wanted RUNNING in session ``session_id`` (Status STARTING), unless it is already wanted
        RUNNING and starting or running: False then. One conditional write, so that of Starts at once exactly one
        wins (each checked the processor before any of them wrote)."""
        cols, args = ["desired = 'RUNNING'", "session_id = ?", "status = 'STARTING'", "status_message = ?",
                      "updated_at = ?"], [session_id, status_message, time.time()]
        if definition is not None:
            cols.append("definition = ?")
            args.append(json.dumps(definition, sort_keys=True))
        with self.store._write() as db:
            return db.execute(
                f"UPDATE stream_processors SET {', '.join(cols)} WHERE name = ? AND NOT (desired = 'RUNNING' AND "
                "status IN ('STARTING', 'RUNNING', 'STOPPING'))", (*args, name)).rowcount > 0

    def delete_processor(self, name: str, *, unless_running: bool = False) -> bool:
        """Delete a processor; False when there is none. ``unless_running``: only one not wanted RUNNING (False
        too for one started by a StartStreamProcessor that came between the caller's check and this write)."""
        with self.store._write() as db:
            return db.execute("DELETE FROM stream_processors WHERE name = ?"
                              + (" AND desired != 'RUNNING'" if unless_running else ""), (name,)).rowcount > 0
