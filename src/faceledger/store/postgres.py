"""The PostgreSQL store: every record of :class:`faceledger.store.sqlite.SQLiteStore` in one PostgreSQL database
(psycopg 3), so several faceledger servers share one state (docs/distributed.md).

The SQL is the SQLite store's own: this module holds only what differs (a dialect layer, :class:`PgConnection`):

* parameters ``?`` become ``%s``; ``instr(a, b)`` becomes ``strpos(a, b)``;
* the schema's ``REAL``/``BLOB``/``INTEGER`` become ``DOUBLE PRECISION``/``BYTEA``/``BIGINT``, text compares
  byte-wise (``COLLATE "C"``, as SQLite does, so listings page in the same order); the ``rowid`` SQLite gives
  every row is an explicit ``BIGSERIAL`` column of ``collections`` and ``faces``; the tombstone and face-count
  triggers are PL/pgSQL;
* ``BEGIN IMMEDIATE`` (SQLite's one writer at a time) becomes ``BEGIN`` and a transaction-scoped advisory lock
  (:data:`WRITE_LOCK`) taken by every writing transaction of every node: writes are serialised across the
  cluster, so the ledger stays one hash chain (each append reads the head under the lock) and every check
  made inside a write (the collection exists, the FaceId is new) holds until it commits;
* ``BEGIN`` for reads becomes ``BEGIN ISOLATION LEVEL REPEATABLE READ``: one snapshot across several SELECTs.

Every node keeps its own vector indexes (store/index/manager.py) current from the database: each search reads
the collection's ``generation`` (bumped by every write to its faces, on any node) and catches up from the face
rows and tombstones since, so a face indexed through one node is found through every other as soon as the
write has committed. A connection that fails (the server stopped, restarting, unreachable) raises
:class:`faceledger.store.errors.StorageError` (answered 503, nothing changed) and is replaced on the next call,
so the service recovers when the database is back.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from .crypto import EmbeddingCipher
from .index.manager import CollectionIndexes
from .sqlite import INDEX_SCHEMA as _SQLITE_INDEX_SCHEMA  # noqa: F401  (its PostgreSQL form is below)
from .sqlite import SCHEMA, SQLiteStore
from .video_jobs import SCHEMA as VIDEO_JOBS_SCHEMA

log = logging.getLogger("faceledger.store.postgres")

#: the key of the advisory lock every writing transaction holds until it ends ("fl" "wr" in ASCII)
WRITE_LOCK = 0x666C7772
#: the key of the advisory lock held while a node creates or upgrades the schema
SCHEMA_LOCK = 0x666C7363

_INDEX_SCHEMA = """
CREATE INDEX IF NOT EXISTS faces_by_seq ON faces(collection_id, seq);
CREATE OR REPLACE FUNCTION faceledger_face_tombstone() RETURNS trigger AS $$
BEGIN
    INSERT INTO face_tombstones (collection_id, generation, face_rowid)
    SELECT OLD.collection_id, generation + 1, OLD.rowid FROM collections WHERE collection_id = OLD.collection_id;
    UPDATE collections SET face_count = face_count - 1 WHERE collection_id = OLD.collection_id;
    RETURN OLD;
END
$$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER faces_tombstone AFTER DELETE ON faces FOR EACH ROW
    EXECUTE FUNCTION faceledger_face_tombstone();
CREATE OR REPLACE FUNCTION faceledger_face_counted() RETURNS trigger AS $$
BEGIN
    UPDATE collections SET face_count = face_count + 1 WHERE collection_id = NEW.collection_id;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER faces_counted AFTER INSERT ON faces FOR EACH ROW
    EXECUTE FUNCTION faceledger_face_counted();
"""


def schema_sql(sqlite_schema: str) -> str:
    """The PostgreSQL form of a SQLite schema script (module docstring)."""
    sql = re.sub(r"\bREAL\b", "DOUBLE PRECISION", sqlite_schema)
    sql = re.sub(r"\bBLOB\b", "BYTEA", sql)
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    sql = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', sql)
    for table in ("collections", "faces"):
        sql = sql.replace(f"CREATE TABLE IF NOT EXISTS {table} (",
                          f"CREATE TABLE IF NOT EXISTS {table} (\n    rowid BIGSERIAL UNIQUE,")
    return sql


@lru_cache(maxsize=1024)
def statement(sql: str) -> str:
    """The PostgreSQL form of one of the SQLite store's statements."""
    return sql.replace("%", "%%").replace("?", "%s").replace("instr(", "strpos(")


class _Row(tuple):
    """A result row read by position or by column name, like ``sqlite3.Row`` (``dict(row)`` works)."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any):
    names: dict[str, int] = {}
    for i, column in enumerate(cursor.description or ()):
        names.setdefault(column.name, i)

    def make(values: Sequence[Any]) -> _Row:
        row = _Row(values)
        row._names = names
        return row

    return make


def _lookup_params(params: Sequence[Any]) -> Sequence[Any]:
    """A SELECT's parameters, a NUL (or a lone surrogate, _UNSTORABLE) in a text one made U+FFFD. PostgreSQL's text cannot hold a NUL (a query with one
    fails with DataError: a 5xx), so no stored value has one and a key with one matches nothing; nor does it
    with U+FFFD, which no id's pattern allows and ledger columns escape. SQLite answers such a lookup with no
    row: so does PostgreSQL now (a JobId, processor Name or ARN is looked up before validation, for its policy).
    Writes keep their NUL and fail: a value stored must be stored as sent."""
    if not any(isinstance(p, str) and _UNSTORABLE.search(p) for p in params):
        return params
    return [_UNSTORABLE.sub("\ufffd", p) if isinstance(p, str) else p for p in params]


#: What PostgreSQL's UTF-8 text cannot hold: a NUL, and a lone surrogate (not encodable; only the in-process
#: Client can send one, HTTP bodies with one are refused when parsed).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class PgConnection:
    """One psycopg connection (autocommit: transactions are the explicit BEGIN/COMMIT the store issues) that
    accepts the SQLite store's SQL (module docstring)."""

    def __init__(self, dsn: str, *, connect_timeout: float = 5.0) -> None:
        import psycopg

        self.raw = psycopg.connect(dsn, autocommit=True, row_factory=_row_factory,
                                   connect_timeout=max(1, int(connect_timeout)))

    def execute(self, sql: str, params: Sequence[Any] | None = None):
        head = sql.strip().upper()
        if head == "BEGIN IMMEDIATE":
            self.raw.execute("BEGIN")
            return self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        if head == "BEGIN":
            return self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        if params is None or len(params) == 0:
            return self.raw.execute(statement(sql) if "?" in sql else sql.replace("instr(", "strpos("))
        if head.startswith("SELECT"):
            params = _lookup_params(params)
        return self.raw.execute(statement(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]):
        cursor = self.raw.cursor()
        rows = [tuple(r) for r in rows]
        if rows:
            cursor.executemany(statement(sql), rows)
        return cursor

    def executescript(self, sql: str) -> None:
        self.raw.execute(sql)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken

    def close(self) -> None:
        self.raw.close()


class PostgresStore(SQLiteStore):
    """:class:`faceledger.store.FaceStore` on a PostgreSQL database (``dsn``: ``postgresql://...``).

    ``index_dir``: where this node saves its approximate vector indexes (None: built from the database on
    start). Raises :class:`faceledger.store.errors.StorageError` when the database cannot be reached.
    """

    def __init__(self, dsn: str, *, embedding_key: bytes | None = None, index_dir: Path | None = None) -> None:
        self.dsn = dsn
        self.path = Path("postgresql")  # no file: logs name the database by its host (see __repr__)
        self._cipher = EmbeddingCipher(embedding_key) if embedding_key else None
        self.storage_failure = None
        self.storage_failed_at = None
        self._failure_lock = threading.Lock()
        self._busy_timeout_ms = 0
        self._local = threading.local()
        self._connections: list[PgConnection] = []
        self._connections_lock = threading.RLock()
        with self._storage_errors():
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
                conn.executescript(schema_sql(SCHEMA))
                conn.executescript(schema_sql(VIDEO_JOBS_SCHEMA))
                conn.executescript(_INDEX_SCHEMA)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        self.indexes = CollectionIndexes(self._read, self._open, index_dir if self._cipher is None else None)

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.dsn)})"

    def _new_connection(self) -> PgConnection:  # type: ignore[override]
        with self._storage_errors():
            return PgConnection(self.dsn)

    @staticmethod
    def _is_broken(conn) -> bool:
        return conn.broken  # the server went away: a new connection this time

    def _private_connection(self) -> PgConnection:
        with self._storage_errors():
            return PgConnection(self.dsn)

    def storage_status(self, *, probe: bool = True) -> dict:
        """As :meth:`SQLiteStore.storage_status`; after a failure, ``probe`` tries the database again."""
        if probe and self.storage_failure is not None:
            try:
                with self._write() as db:
                    db.execute("INSERT INTO health_probe (id, checked_at) VALUES (1, ?) "
                               "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                               (__import__("time").time(),))
            except Exception:
                pass
        failure, since = self.storage_failure, self.storage_failed_at
        return {"ok": failure is None, "reason": None if failure is None else str(failure), "since": since,
                "free_bytes": None, "database": redact(self.dsn)}

    def checkpoint(self) -> bool:
        """Nothing to do: PostgreSQL's VACUUM reclaims deleted rows (run by autovacuum)."""
        return True


def redact(dsn: str) -> str:
    """``dsn`` without its password."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", re.sub(r"password=\S+", "password=***", dsn))


def is_postgres_url(value: str | None) -> bool:
    return bool(value) and str(value).startswith(("postgresql://", "postgres://"))
