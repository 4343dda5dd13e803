"""The embedded store: one SQLite database in WAL mode, the source of truth.

Every write is one ``BEGIN IMMEDIATE`` transaction committed with
``synchronous=FULL``, so an acknowledged write survives the process being
killed. Each thread gets its own connection; WAL lets readers run beside one
writer, and ``busy_timeout`` makes concurrent writers (other threads, or a CLI
process on the same data folder) wait their turn instead of failing.

A *unit of work* (:meth:`SQLiteStore.unit_of_work`, thread-local) groups the writes of one
service call: the first write opens ``BEGIN IMMEDIATE``, later writes join it, and the call's
ledger entry is appended in the same transaction just before ``COMMIT``. Deleted content is
overwritten (``secure_delete``).

Search goes through each collection's vector index (derived state kept current from the ``generation``
counter, bumped in the same transaction as every change to its faces; see store/index/manager.py):
exact below a size, approximate above it with every candidate re-measured from the stored vectors.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import AccessKeyRecord, CollectionRecord, FaceRecord, Neighbour, Page, UserRecord
from .crypto import EmbeddingCipher, EmbeddingKeyError, is_encrypted
from .errors import StorageError, storage_failure
from .files import create_private_file, secure_data_dir
from .index.exact import ExactIndex
from .index.manager import CollectionIndexes
from .ledger import COLUMNS as LEDGER_COLUMNS
from .ledger import GENESIS, LedgerEntry, Verification, row_for, verify
from .video_jobs import SCHEMA as VIDEO_JOBS_SCHEMA
from .video_jobs import VideoJobStore

log = logging.getLogger("faceledger.store")

#: candidates an approximate index returns beyond those asked for, re-measured exactly before ranking
CANDIDATES_SPARE = 32
#: the most candidates an approximate index is asked for (SearchUsers asks for "all within reach")
MAX_CANDIDATES = 4096

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    collection_id TEXT PRIMARY KEY,
    arn TEXT NOT NULL UNIQUE,
    face_model_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    face_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS faces (
    face_id TEXT PRIMARY KEY,
    collection_id TEXT NOT NULL REFERENCES collections(collection_id) ON DELETE CASCADE,
    image_id TEXT NOT NULL,
    external_image_id TEXT,
    box_width REAL NOT NULL,
    box_height REAL NOT NULL,
    box_left REAL NOT NULL,
    box_top REAL NOT NULL,
    confidence REAL NOT NULL,
    face_model_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    user_id TEXT,
    embedding BLOB NOT NULL,
    image_digest TEXT,
    seq INTEGER NOT NULL DEFAULT 0,
    quality_band TEXT
);
CREATE INDEX IF NOT EXISTS faces_by_collection ON faces(collection_id, face_id);
CREATE TABLE IF NOT EXISTS face_tombstones (
    collection_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    face_rowid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS face_tombstones_by_generation ON face_tombstones(collection_id, generation);
CREATE INDEX IF NOT EXISTS faces_by_user ON faces(collection_id, user_id);
CREATE INDEX IF NOT EXISTS faces_by_external_id ON faces(external_image_id);
CREATE TABLE IF NOT EXISTS users (
    collection_id TEXT NOT NULL REFERENCES collections(collection_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (collection_id, user_id)
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    principal TEXT NOT NULL,
    source TEXT,
    transport TEXT NOT NULL,
    operation TEXT NOT NULL,
    collection_id TEXT,
    purpose TEXT,
    case_ref TEXT,
    result TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_principal ON ledger(principal);
CREATE INDEX IF NOT EXISTS ledger_by_collection ON ledger(collection_id);
CREATE TABLE IF NOT EXISTS access_keys (
    access_key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret BLOB NOT NULL,
    policy TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS collection_policies (
    collection_id TEXT PRIMARY KEY REFERENCES collections(collection_id) ON DELETE CASCADE,
    policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    collection_id TEXT NOT NULL REFERENCES collections(collection_id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (collection_id, key)
);
CREATE TABLE IF NOT EXISTS request_tokens (
    principal TEXT NOT NULL,
    operation TEXT NOT NULL,
    token TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (principal, operation, token)
);
CREATE TABLE IF NOT EXISTS health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at REAL NOT NULL
);
-- live stream processors (faceledger.store.streams)
CREATE TABLE IF NOT EXISTS stream_sources (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_sinks (
    arn TEXT PRIMARY KEY,
    webhook_url TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_processors (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL UNIQUE,
    definition TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    status_message TEXT,
    desired TEXT NOT NULL DEFAULT 'STOPPED',
    session_id TEXT,
    stats TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""

_FACE_COLUMNS = (
    "face_id, collection_id, image_id, external_image_id, box_width, box_height, box_left, box_top, "
    "confidence, face_model_version, created_at, user_id, image_digest, quality_band"
)


#: Vector indexes are derived state (store/index/manager.py): each face row carries ``seq``, the collection's
#: generation after the write that stored it, and each delete leaves a tombstone at the generation the
#: write bumps to (every write that deletes faces bumps the generation once after its deletes).
#: the page cache of a bulk insert (SQLiteStore.counted_at_end), KiB: the two FaceId indexes of 10M faces
#: are ~1 GB (docs/scale.md)
BULK_CACHE_KIB = int(os.environ.get("FACELEDGER_BULK_CACHE_MB", "1024")) * 1024
#: each face stored counts itself (dropped and created again around a bulk insert: SQLiteStore.counted_at_end)
FACES_COUNTED = """CREATE TRIGGER IF NOT EXISTS faces_counted AFTER INSERT ON faces BEGIN
    UPDATE collections SET face_count = face_count + 1 WHERE collection_id = new.collection_id;
END"""
INDEX_SCHEMA = (
    "CREATE INDEX IF NOT EXISTS faces_by_seq ON faces(collection_id, seq)",
    """CREATE TRIGGER IF NOT EXISTS faces_tombstone AFTER DELETE ON faces BEGIN
    INSERT INTO face_tombstones (collection_id, generation, face_rowid)
    SELECT old.collection_id, generation + 1, old.rowid FROM collections WHERE collection_id = old.collection_id;
    UPDATE collections SET face_count = face_count - 1 WHERE collection_id = old.collection_id;
END""",
    FACES_COUNTED,
)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database created by an earlier version up to SCHEMA (columns added since)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(faces)")}
    if "image_digest" not in columns:  # duplicate detection in IndexFaces; older faces have none
        conn.execute("ALTER TABLE faces ADD COLUMN image_digest TEXT")
    if "quality_band" not in columns:  # Similarity by quality band (vision.face_quality); older faces have none
        conn.execute("ALTER TABLE faces ADD COLUMN quality_band TEXT")
    if "seq" not in columns:  # older faces: seq 0, in any index built from generation 0 on
        conn.execute("ALTER TABLE faces ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    counted = "face_count" in {row[1] for row in conn.execute("PRAGMA table_info(collections)")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not counted:  # kept by the triggers from now on (a search reads it: no COUNT over millions of rows)
            conn.execute("ALTER TABLE collections ADD COLUMN face_count INTEGER NOT NULL DEFAULT 0")
            conn.execute("UPDATE collections SET face_count = "
                         "(SELECT COUNT(*) FROM faces WHERE faces.collection_id = collections.collection_id)")
            conn.execute("DROP TRIGGER IF EXISTS faces_tombstone")
        for statement in INDEX_SCHEMA:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=timezone.utc)


class UnitOfWork:
    """The transaction state of one service call on one thread (see the module's docstring)."""

    def __init__(self, store: "SQLiteStore", conn: sqlite3.Connection) -> None:
        self.store, self.conn = store, conn
        self.writing = False
        self.after_commit: list = []

    def begin_write(self) -> None:
        if not self.writing:
            self.conn.execute("BEGIN IMMEDIATE")
            self.writing = True

    def rollback(self) -> None:
        """Roll the open write back. Never raises: SQLite may have rolled it back already (a full disk does),
        and the error that caused the rollback is the one to report."""
        if self.writing:
            self.writing = False
            _rollback(self.conn)
        self.after_commit.clear()

    def commit(self, entry: LedgerEntry | None) -> dict | None:
        """Append ``entry`` (if any) to the ledger inside the open write transaction, then COMMIT."""
        row = None
        if entry is not None:
            self.begin_write()
            row = self.store._append(self.conn, entry)
        if self.writing:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                self.rollback()
                raise
            self.writing = False
            self.store._storage_ok()
        callbacks, self.after_commit = self.after_commit, []
        for fn in callbacks:
            fn()
        return row


def _rollback(conn: sqlite3.Connection) -> None:
    """ROLLBACK if a transaction is open; a failure to roll back is logged, never raised over the real error."""
    if not conn.in_transaction:  # SQLite rolled it back itself (SQLITE_FULL, SQLITE_IOERR, ...)
        return
    try:
        conn.execute("ROLLBACK")
    except Exception:  # sqlite3.Error, or a PostgreSQL connection that is gone
        log.warning("ROLLBACK failed", exc_info=True)


def _face(row: sqlite3.Row, embedding: bytes | None = None) -> FaceRecord:
    return FaceRecord(
        face_id=row["face_id"],
        collection_id=row["collection_id"],
        image_id=row["image_id"],
        external_image_id=row["external_image_id"],
        bounding_box=(row["box_width"], row["box_height"], row["box_left"], row["box_top"]),
        confidence=row["confidence"],
        face_model_version=row["face_model_version"],
        created_at=_ts(row["created_at"]),
        user_id=row["user_id"],
        embedding=None if embedding is None else np.frombuffer(embedding, dtype=np.float32),
        image_digest=row["image_digest"],
        quality_band=row["quality_band"],
    )


class _ThreadConnection:
    """A thread's store connection, held in the store's thread-local slot: when the thread ends, the slot is
    freed and the connection closed. Worker threads come and go (anyio retires a thread idle for 10 s, video
    and stream workers end): kept until the store closed, each would hold its file descriptors (SQLite) or a
    server connection (PostgreSQL) for ever."""

    __slots__ = ("conn", "_release")

    def __init__(self, conn, release) -> None:
        self.conn, self._release = conn, release

    def __del__(self) -> None:
        try:
            self._release(self.conn)
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass


class SQLiteStore(VideoJobStore):
    """:class:`faceledger.store.FaceStore` on one SQLite file."""

    def __init__(
        self, path: str | Path, *, busy_timeout_ms: int = 30_000, embedding_key: bytes | None = None
    ) -> None:
        self.path = Path(path)
        self._cipher = EmbeddingCipher(embedding_key) if embedding_key else None
        if str(path) != ":memory:":
            secure_data_dir(self.path.parent)  # 0700, its files 0600 (tightened with a warning)
            create_private_file(self.path)  # 0600 before SQLite opens it: -wal and -shm get its mode
        # The last storage failure (full disk, I/O error) and when it happened; cleared by the next commit.
        self.storage_failure: StorageError | None = None
        self.storage_failed_at: float | None = None
        self._failure_lock = threading.Lock()
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.RLock()
        with self._storage_errors():
            self._conn().executescript(SCHEMA)
            self._conn().executescript(VIDEO_JOBS_SCHEMA)
            _migrate(self._conn())
        persist = str(path) != ":memory:" and self._cipher is None  # never write decrypted vectors to disk
        self.indexes = CollectionIndexes(self._read, self._open,
                                         self.path.with_name(self.path.name + ".index") if persist else None)

    # -- connections and transactions -------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use and closed when the thread ends (_ThreadConnection)."""
        held = getattr(self._local, "conn", None)
        if held is not None and self._is_broken(held.conn):
            self._release(held.conn)
            held = None
        if held is None:
            conn = self._new_connection()
            with self._connections_lock:
                self._connections.append(conn)
            held = self._local.conn = _ThreadConnection(conn, self._release)
        return held.conn

    def _new_connection(self) -> sqlite3.Connection:
        with self._storage_errors():
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA secure_delete = ON")  # deleted faces are overwritten, not just unlinked
            except BaseException:
                conn.close()
                raise
        return conn

    @staticmethod
    def _is_broken(conn) -> bool:
        return False

    def _release(self, conn) -> None:
        """Close ``conn`` and forget it (its thread ended, or it broke)."""
        with self._connections_lock:
            if conn not in self._connections:
                return  # closed already (store.close())
            self._connections.remove(conn)
        try:
            conn.close()
        except Exception:  # noqa: BLE001  (its server is gone)
            pass

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """Group this thread's writes into one transaction, committed by ``unit.commit(entry)``.

        Nested calls join the outer unit. Leaving without commit rolls back.
        """
        outer = getattr(self._local, "unit", None)
        if outer is not None:
            yield outer
            return
        unit = UnitOfWork(self, self._conn())
        self._local.unit = unit
        try:
            with self._storage_errors():
                yield unit
        finally:
            self._local.unit = None
            unit.rollback()

    def _unit(self) -> UnitOfWork | None:
        return getattr(self._local, "unit", None)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        unit = self._unit()
        if unit is not None:  # join the call's transaction; the unit commits or rolls back
            unit.begin_write()
            yield unit.conn
            return
        conn = self._conn()
        with self._storage_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        self._storage_ok()

    # -- storage failures (full disk, I/O errors) --------------------------------------

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Turn SQLite's and the OS's storage failures into :class:`StorageError` (the cause chained), and
        remember them for :meth:`storage_status`."""
        try:
            yield
        except Exception as exc:
            failure = storage_failure(exc)
            if failure is None:
                raise
            with self._failure_lock:
                first = self.storage_failure is None
                self.storage_failure, self.storage_failed_at = failure, time.time()
            if first:
                log.error("storage failure on %s: %s; every call is refused until it recovers", self.path, failure)
            if failure is exc:
                raise
            raise failure from exc

    def _storage_ok(self) -> None:
        if self.storage_failure is not None:
            with self._failure_lock:
                failure, self.storage_failure, self.storage_failed_at = self.storage_failure, None, None
            if failure is not None:
                log.warning("storage of %s recovered (after: %s)", self.path, failure.reason)

    def storage_status(self, *, probe: bool = True) -> dict:
        """The storage's health: ``{"ok": bool, "reason": str | None, "since": epoch seconds | None,
        "free_bytes": int | None}``. After a failure, ``probe`` writes one row (table ``health_probe``) to see
        whether it has recovered (e.g. space was freed); while all is well nothing is written."""
        if probe and self.storage_failure is not None and str(self.path) != ":memory:":
            try:
                with self._write() as db:
                    db.execute("INSERT INTO health_probe (id, checked_at) VALUES (1, ?) "
                               "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at", (time.time(),))
            except StorageError:
                pass
        failure, since = self.storage_failure, self.storage_failed_at
        try:
            free = shutil.disk_usage(self.path.parent).free if str(self.path) != ":memory:" else None
        except OSError:
            free = None
        return {"ok": failure is None, "reason": None if failure is None else str(failure), "since": since,
                "free_bytes": free}

    def _private_connection(self):
        """A new connection of this thread's alone, closed by the caller (a snapshot apart from the units of
        work)."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot across several SELECTs (inside an open transaction: that one)."""
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        try:
            self.indexes.save_all()  # a clean stop: the next start reads no change twice
        except Exception:  # a failure to save derived state loses nothing: the next start catches up
            log.warning("could not save the vector indexes", exc_info=True)
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except Exception:  # closed from another thread already, or its server is gone
                    pass
            self._connections.clear()
        self._local = threading.local()

    def _seal(self, face_id: str, plain: bytes) -> bytes:
        return self._cipher.encrypt(face_id, plain) if self._cipher else plain

    def _open(self, face_id: str, blob: bytes) -> bytes:
        if is_encrypted(blob):
            if self._cipher is None:
                raise EmbeddingKeyError(
                    "embeddings in this store are encrypted: set FACELEDGER_EMBEDDING_KEY to read them"
                )
            return self._cipher.decrypt(face_id, blob)
        return blob

    @staticmethod
    def _bump(db: sqlite3.Connection, collection_id: str) -> None:
        db.execute(
            "UPDATE collections SET generation = generation + 1 WHERE collection_id = ?", (collection_id,)
        )

    # -- collections -------------------------------------------------------------------

    def _collection(self, db: sqlite3.Connection, row: sqlite3.Row | None) -> CollectionRecord | None:
        if row is None:
            return None
        cid = row["collection_id"]
        faces = row["face_count"]  # kept by triggers (INDEX_SCHEMA)
        users = db.execute("SELECT COUNT(*) FROM users WHERE collection_id = ?", (cid,)).fetchone()[0]
        return self._record(row, faces, users)

    @staticmethod
    def _record(row: sqlite3.Row, faces: int | None, users: int | None) -> CollectionRecord:
        return CollectionRecord(
            collection_id=row["collection_id"],
            arn=row["arn"],
            face_model_version=row["face_model_version"],
            created_at=_ts(row["created_at"]),
            face_count=faces,
            user_count=users,
        )

    def create_collection(self, collection: CollectionRecord, tags: dict[str, str]) -> bool:
        with self._write() as db:
            exists = db.execute(
                "SELECT 1 FROM collections WHERE collection_id = ?", (collection.collection_id,)
            ).fetchone()
            if exists:
                return False
            db.execute(
                "INSERT INTO collections (collection_id, arn, face_model_version, created_at) VALUES (?, ?, ?, ?)",
                (
                    collection.collection_id,
                    collection.arn,
                    collection.face_model_version,
                    collection.created_at.timestamp(),
                ),
            )
            db.executemany(
                "INSERT INTO tags (collection_id, key, value) VALUES (?, ?, ?)",
                [(collection.collection_id, k, v) for k, v in tags.items()],
            )
        return True

    def get_collection(self, collection_id: str, *, counts: bool = True) -> CollectionRecord | None:
        """The collection, with its face and user counts (``counts=False``: None, and no cost: counting reads the
        collection's whole index, time in proportion to its faces)."""
        if not counts:
            row = self._conn().execute("SELECT * FROM collections WHERE collection_id = ?", (collection_id,)).fetchone()
            return None if row is None else self._record(row, None, None)
        with self._read() as db:
            row = db.execute("SELECT * FROM collections WHERE collection_id = ?", (collection_id,)).fetchone()
            return self._collection(db, row)

    def collection_by_arn(self, arn: str) -> CollectionRecord | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM collections WHERE arn = ?", (arn,)).fetchone()
            return self._collection(db, row)

    def list_collections(self, after: str | None, limit: int) -> Page[CollectionRecord]:
        """Collections in creation order; the cursor is the last rowid (ids can be too long for a token)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT rowid, * FROM collections WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (int(after or 0), limit + 1),
            ).fetchall()
            items = [c for c in (self._collection(db, r) for r in rows[:limit]) if c is not None]
        more = len(rows) > limit and limit > 0
        return Page(items, str(rows[limit - 1]["rowid"]) if more else None)

    def delete_collection(self, collection_id: str) -> bool:
        with self._write() as db:
            deleted = db.execute("DELETE FROM collections WHERE collection_id = ?", (collection_id,)).rowcount
            db.execute("DELETE FROM face_tombstones WHERE collection_id = ?", (collection_id,))
        self.indexes.forget(collection_id)
        return deleted > 0

    # -- faces -------------------------------------------------------------------------

    def add_faces(self, faces: Sequence[FaceRecord], *, numbered: list | None = None) -> bool:
        """Store the faces; False (and nothing stored) when a collection is gone, e.g. deleted meanwhile.
        ``numbered`` (a bulk import building its index from the vectors it holds: CollectionIndexes.build_from):
        a list to which ``(first, head)`` is appended when the faces (all of one collection) provably got the
        row numbers first, first + 1, ... in their order (SQLite gives a new row the largest row number + 1,
        and the largest grew by exactly their count), ``head`` being the collection's ((rowid, created_at),
        generation) after this write; None is appended when that cannot be shown (then read them back)."""
        if not faces:
            return True
        rows = []
        for f in faces:
            if f.embedding is None:
                raise ValueError(f"face {f.face_id} has no embedding")
            w, h, left, top = f.bounding_box
            rows.append(
                (
                    f.face_id,
                    f.collection_id,
                    f.image_id,
                    f.external_image_id,
                    w,
                    h,
                    left,
                    top,
                    f.confidence,
                    f.face_model_version,
                    f.created_at.timestamp(),
                    f.user_id,
                    f.image_digest,
                    f.quality_band,
                    self._seal(f.face_id, np.ascontiguousarray(f.embedding, dtype=np.float32).tobytes()),
                )
            )
        collection_ids = {f.collection_id for f in faces}
        with self._write() as db:
            seqs = {}
            for cid in collection_ids:
                row = db.execute("SELECT generation FROM collections WHERE collection_id = ?", (cid,)).fetchone()
                if row is None:
                    return False
                seqs[cid] = row[0] + 1  # the generation this write bumps to
            countable = numbered is not None and len(collection_ids) == 1 and isinstance(db, sqlite3.Connection)
            if countable:
                before = db.execute("SELECT max(rowid) FROM faces").fetchone()[0] or 0
            db.executemany(
                f"INSERT INTO faces ({_FACE_COLUMNS}, embedding, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [row + (seqs[row[1]],) for row in rows],
            )
            for cid in collection_ids:
                self._bump(db, cid)
            if numbered is not None:
                after = db.execute("SELECT max(rowid) FROM faces").fetchone()[0] if countable else None
                numbered.append((before + 1, CollectionIndexes._head(db, cid))
                                if countable and after - before == len(rows) else None)
        return True

    @contextmanager
    def counted_at_end(self, collection_id: str) -> Iterator[None]:
        """Faces of ``collection_id`` added inside are counted once at the end (``face_count`` set from a
        COUNT over the collection's rows), not one UPDATE a row by the ``faces_counted`` trigger: that
        trigger is ~45% of an insert's CPU (bench/import_speed.py). Only inside a service call's write
        transaction on SQLite: the trigger is dropped and created again in that transaction, so another
        connection sees the schema and the counts before or after, whole, and a crash or a rollback
        restores both. Elsewhere (no call's transaction, PostgreSQL) nothing changes."""
        unit = self._unit()
        if unit is None or not isinstance(unit.conn, sqlite3.Connection):
            yield
            return
        unit.begin_write()
        unit.conn.execute("DROP TRIGGER IF EXISTS faces_counted")
        # a page cache big enough for the FaceId indexes that random UUIDs are inserted into (2 MB by default:
        # at millions of faces each insert then re-reads and spills their pages; memory only, durability as
        # before), back to what it was after
        cache = unit.conn.execute("PRAGMA cache_size").fetchone()[0]
        unit.conn.execute(f"PRAGMA cache_size = {-BULK_CACHE_KIB}")
        failed = True
        try:
            yield
            failed = False
        finally:
            try:
                unit.conn.execute(f"PRAGMA cache_size = {int(cache)}")
            except Exception:  # noqa: BLE001  (a broken connection: the error in flight is the one to report)
                pass
            try:
                unit.conn.execute(FACES_COUNTED)
                unit.conn.execute("UPDATE collections SET face_count = (SELECT COUNT(*) FROM faces WHERE "
                                  "collection_id = ?) WHERE collection_id = ?", (collection_id, collection_id))
            except Exception:
                if not failed:
                    raise
                # the error in flight is the one to report; the call's rollback restores the trigger

    def get_faces(
        self, collection_id: str, face_ids: Iterable[str], *, with_embeddings: bool = False
    ) -> dict[str, FaceRecord]:
        ids = list(dict.fromkeys(face_ids))
        out: dict[str, FaceRecord] = {}
        cols = _FACE_COLUMNS + (", embedding" if with_embeddings else "")
        conn = self._conn()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT {cols} FROM faces WHERE collection_id = ? AND face_id IN ({marks})",
                (collection_id, *chunk),
            ):
                embedding = self._open(row["face_id"], row["embedding"]) if with_embeddings else None
                out[row["face_id"]] = _face(row, embedding)
        return out

    def list_faces(
        self,
        collection_id: str,
        *,
        after: str | None,
        limit: int,
        face_ids: Sequence[str] | None = None,
        user_id: str | None = None,
    ) -> list[FaceRecord]:
        sql = f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_id = ? AND face_id > ?"
        args: list[object] = [collection_id, after or ""]
        if face_ids is not None:
            sql += f" AND face_id IN ({','.join('?' * len(face_ids))})"
            args.extend(face_ids)
        if user_id is not None:
            sql += " AND user_id = ?"
            args.append(user_id)
        sql += " ORDER BY face_id LIMIT ?"
        args.append(limit + 1)
        rows = self._conn().execute(sql, args).fetchall()
        more = len(rows) > limit and limit > 0
        return Page([_face(r) for r in rows[:limit]], rows[limit - 1]["face_id"] if more else None)

    def iter_faces(self, collection_id: str, *, chunk: int = 10000) -> Iterator[tuple[list[FaceRecord], np.ndarray]]:
        """Every face of the collection with its embedding, in FaceId order, ``chunk`` at a time:
        (records without embeddings, float32 (n, D) vectors). One snapshot (a private connection), so a
        concurrent write is either wholly in it or not at all."""
        conn = self._private_connection()
        try:
            conn.execute("BEGIN")
            cursor = conn.execute(f"SELECT {_FACE_COLUMNS}, embedding FROM faces WHERE collection_id = ? "
                                  "ORDER BY face_id", (collection_id,))
            while True:
                rows = cursor.fetchmany(chunk)
                if not rows:
                    break
                blobs = [self._open(r["face_id"], r["embedding"]) for r in rows]
                yield [_face(r) for r in rows], np.frombuffer(b"".join(blobs), np.float32).reshape(len(rows), -1)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def existing_face_ids(self, face_ids: Sequence[str]) -> list[str]:
        """Those of ``face_ids`` stored in any collection (FaceIds are unique across the store)."""
        out: list[str] = []
        conn = self._unit().conn if self._unit() is not None else self._conn()
        ids = list(face_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            out += [r[0] for r in conn.execute(f"SELECT face_id FROM faces WHERE face_id IN ({','.join('?' * len(chunk))})",
                                               chunk)]
        return out

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        ids = list(dict.fromkeys(face_ids))
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._write() as db:
            found = [
                r[0]
                for r in db.execute(
                    f"SELECT face_id FROM faces WHERE collection_id = ? AND face_id IN ({marks})",
                    (collection_id, *ids),
                )
            ]
            if found:
                db.execute(
                    f"DELETE FROM faces WHERE collection_id = ? AND face_id IN ({','.join('?' * len(found))})",
                    (collection_id, *found),
                )
                self._bump(db, collection_id)
        return found

    def image_faces(
        self, collection_id: str, external_image_id: str, image_digest: str, *, lock: bool = False
    ) -> list[FaceRecord]:
        """The faces stored for one image (the same ExternalImageId and image digest) in a collection,
        largest box first. ``lock``: read inside the write transaction (inside a unit of work it holds
        the write lock until the unit commits, so a concurrent IndexFaces of the same image waits, then
        sees these faces)."""
        sql = (f"SELECT {_FACE_COLUMNS} FROM faces WHERE external_image_id = ? AND collection_id = ? "
               "AND image_digest = ?")
        args = (external_image_id, collection_id, image_digest)
        if lock:
            with self._write() as db:
                rows = db.execute(sql, args).fetchall()
        else:
            rows = self._conn().execute(sql, args).fetchall()
        faces = [_face(r) for r in rows]
        faces.sort(key=lambda f: (-f.bounding_box[0] * f.bounding_box[1], f.face_id))
        return faces

    def nearest(
        self,
        collection_id: str,
        vector: np.ndarray,
        *,
        limit: int,
        max_distance: float,
        exclude_face_ids: Iterable[str] = (),
    ) -> list[Neighbour]:
        """The ``limit`` faces nearest to ``vector`` within ``max_distance``, nearest first, with exact
        distances (re-measured from the stored float32 vectors when the collection's index is approximate;
        see store/index/manager.py). ValueError when the vector's length is not the collection's."""
        if limit <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        excluded = set(exclude_face_ids)
        want = limit + len(excluded)
        unit = self._unit()
        if unit is not None and unit.writing:  # uncommitted changes: search them exactly, cache nothing
            index = ExactIndex(0)
            labels, vectors = self.indexes._rows(unit.conn.execute(
                "SELECT rowid, face_id, embedding FROM faces WHERE collection_id = ?", (collection_id,)))
            if len(labels):
                index = ExactIndex(vectors.shape[1])
                index.add(labels, vectors)
            state = None
        else:
            state = self.indexes.current(collection_id)
            index = None if state is None else state.index
        if index is None or not len(index):
            return []
        if query.shape[0] != index.dimension:
            raise ValueError(f"query has {query.shape[0]} dimensions, collection {collection_id} has {index.dimension}")
        if state is not None:
            with state.lock:
                labels, distances = index.search(query, min(want + CANDIDATES_SPARE, MAX_CANDIDATES)
                                                 if not index.exact else want, max_distance)
        else:
            labels, distances = index.search(query, want, max_distance)
        rows = self._rows_by_rowid(collection_id, labels, with_embeddings=not index.exact)
        # gone (deleted since the index was read), excluded, or a repeated label: dropped
        seen: set[int] = set()
        kept, kept_rows = [], []
        for k, label in enumerate(labels.tolist()):
            row = rows.get(label)
            if row is None or label in seen or row["face_id"] in excluded:
                continue
            seen.add(label)
            kept.append(k)
            kept_rows.append(row)
        if not kept_rows:
            return []
        distances = distances[kept]
        if not index.exact:  # re-measure every candidate from the stored float32 vector: the ranking is exact
            blobs = [self._open(r["face_id"], r["embedding"]) for r in kept_rows]
            diff = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1) - query
            distances = np.sqrt((diff * diff).sum(axis=1))
            order = [k for k in np.lexsort((labels[kept], distances)).tolist() if distances[k] <= max_distance]
        else:
            order = range(len(kept_rows))
        return [Neighbour(_face(kept_rows[k]), float(distances[k])) for k in order][:limit]

    def _rows_by_rowid(self, collection_id: str, rowids: np.ndarray, *, with_embeddings: bool) -> dict:
        cols = "rowid, " + _FACE_COLUMNS + (", embedding" if with_embeddings else "")
        out = {}
        ids = [int(r) for r in rowids]
        conn = self._conn()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            # by rowid only: with the collection in the WHERE clause SQLite may scan the collection's index
            for row in conn.execute(f"SELECT {cols} FROM faces WHERE rowid IN ({','.join('?' * len(chunk))})",
                                    chunk):
                if row["collection_id"] == collection_id:  # else: the row number was reused by another collection
                    out[row["rowid"]] = row
        return out

    def rebuild_index(self, collection_id: str, kind: str | None = None) -> dict | None:
        """Build the collection's vector index again from the stored vectors (``kind``: "exact" or
        "faiss-ivf"; None: by size). Returns {"kind", "faces", "generation"}, None for no such collection."""
        state = self.indexes.rebuild(collection_id, kind)
        if state is None:
            return None
        return {"kind": state.index.kind, "faces": len(state.index), "generation": state.generation}

    # -- users -------------------------------------------------------------------------

    def create_user(self, user: UserRecord) -> bool:
        with self._write() as db:
            exists = db.execute(
                "SELECT 1 FROM users WHERE collection_id = ? AND user_id = ?", (user.collection_id, user.user_id)
            ).fetchone()
            if exists:
                return False
            db.execute(
                "INSERT INTO users (collection_id, user_id, created_at) VALUES (?, ?, ?)",
                (user.collection_id, user.user_id, user.created_at.timestamp()),
            )
        return True

    def _user(self, db: sqlite3.Connection, row: sqlite3.Row) -> UserRecord:
        count = db.execute(
            "SELECT COUNT(*) FROM faces WHERE collection_id = ? AND user_id = ?",
            (row["collection_id"], row["user_id"]),
        ).fetchone()[0]
        return UserRecord(row["collection_id"], row["user_id"], _ts(row["created_at"]), count)

    def get_user(self, collection_id: str, user_id: str) -> UserRecord | None:
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM users WHERE collection_id = ? AND user_id = ?", (collection_id, user_id)
            ).fetchone()
            return None if row is None else self._user(db, row)

    def list_users(self, collection_id: str, after: str | None, limit: int) -> Page[UserRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM users WHERE collection_id = ? AND user_id > ? ORDER BY user_id LIMIT ?",
                (collection_id, after or "", limit + 1),
            ).fetchall()
            items = [self._user(db, r) for r in rows[:limit]]
        more = len(rows) > limit and limit > 0
        return Page(items, rows[limit - 1]["user_id"] if more else None)

    def delete_user(self, collection_id: str, user_id: str) -> bool:
        with self._write() as db:
            db.execute(
                "UPDATE faces SET user_id = NULL WHERE collection_id = ? AND user_id = ?", (collection_id, user_id)
            )
            deleted = db.execute(
                "DELETE FROM users WHERE collection_id = ? AND user_id = ?", (collection_id, user_id)
            ).rowcount
        return deleted > 0

    def set_face_user(self, collection_id: str, face_ids: Sequence[str], user_id: str | None) -> None:
        if not face_ids:
            return
        with self._write() as db:
            db.executemany(
                "UPDATE faces SET user_id = ? WHERE collection_id = ? AND face_id = ?",
                [(user_id, collection_id, fid) for fid in face_ids],
            )

    # -- tags --------------------------------------------------------------------------

    def get_tags(self, collection_id: str) -> dict[str, str]:
        rows = self._conn().execute(
            "SELECT key, value FROM tags WHERE collection_id = ? ORDER BY key", (collection_id,)
        )
        return {r[0]: r[1] for r in rows}

    def put_tags(self, collection_id: str, tags: dict[str, str]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO tags (collection_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (collection_id, key) DO UPDATE SET value = excluded.value",
                [(collection_id, k, v) for k, v in tags.items()],
            )

    def remove_tags(self, collection_id: str, keys: Sequence[str]) -> None:
        with self._write() as db:
            db.executemany(
                "DELETE FROM tags WHERE collection_id = ? AND key = ?", [(collection_id, k) for k in keys]
            )

    # -- ledger ------------------------------------------------------------------------

    def _append(self, db: sqlite3.Connection, entry: LedgerEntry) -> dict:
        last = db.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (1, GENESIS) if last is None else (last[0] + 1, last[1])
        row = row_for(entry, seq, prev)
        cols = LEDGER_COLUMNS + ("hash",)
        db.execute(f"INSERT INTO ledger ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                   [row[c] for c in cols])
        return row

    def append_ledger(self, entry: LedgerEntry) -> dict:
        """Append one entry in its own transaction (or the open unit of work's)."""
        unit = self._unit()
        if unit is not None:
            unit.begin_write()
            return self._append(unit.conn, entry)
        with self._write() as db:
            return self._append(db, entry)

    def ledger_rows(
        self,
        *,
        principal: str | None = None,
        collection_id: str | None = None,
        operation: str | None = None,
        since: str | None = None,
        until: str | None = None,
        contains: Sequence[str] = (),
        after_seq: int = 0,
        limit: int | None = None,
    ) -> Iterator[dict]:
        """Ledger rows in sequence order, filtered; ``contains``: substrings of the detail JSON."""
        sql = "SELECT seq, " + ", ".join(c for c in LEDGER_COLUMNS if c != "seq") + ", hash FROM ledger WHERE seq > ?"
        args: list[object] = [after_seq]
        for column, value in (("principal", principal), ("collection_id", collection_id), ("operation", operation)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        if since is not None:
            sql += " AND time >= ?"
            args.append(since)
        if until is not None:
            sql += " AND time <= ?"
            args.append(until)
        for text in contains:
            sql += " AND instr(detail, ?) > 0"
            args.append(text)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        conn = self._private_connection()  # a private snapshot, any thread
        try:
            for row in conn.execute(sql, args):
                yield dict(row)
        finally:
            conn.close()

    def verify_ledger(self) -> Verification:
        return verify(self.ledger_rows())

    # -- access keys -------------------------------------------------------------------

    def add_access_key(self, key: AccessKeyRecord, audit: LedgerEntry | None = None) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO access_keys (access_key_id, name, secret, policy, created_at) VALUES (?, ?, ?, ?, ?)",
                (key.access_key_id, key.name, key.secret, key.policy, key.created_at.timestamp()),
            )
            if audit is not None and self._unit() is None:
                self._append(db, audit)

    def get_access_key(self, access_key_id: str) -> AccessKeyRecord | None:
        row = self._conn().execute("SELECT * FROM access_keys WHERE access_key_id = ?", (access_key_id,)).fetchone()
        return None if row is None else _access_key(row)

    def list_access_keys(self) -> list[AccessKeyRecord]:
        return [_access_key(r) for r in self._conn().execute("SELECT * FROM access_keys ORDER BY created_at")]

    def revoke_access_key(self, access_key_id: str, when: datetime, audit: LedgerEntry | None = None) -> bool:
        with self._write() as db:
            n = db.execute(
                "UPDATE access_keys SET revoked_at = ? WHERE access_key_id = ? AND revoked_at IS NULL",
                (when.timestamp(), access_key_id),
            ).rowcount
            if n and audit is not None and self._unit() is None:
                self._append(db, audit)
        return n > 0

    def count_access_keys(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM access_keys").fetchone()[0]

    # -- collection policies -----------------------------------------------------------

    def get_collection_policy(self, collection_id: str) -> dict | None:
        row = self._conn().execute(
            "SELECT policy FROM collection_policies WHERE collection_id = ?", (collection_id,)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def put_collection_policy(self, collection_id: str, policy: dict | None) -> bool:
        """Set (None: remove) a collection's policy; False when the collection does not exist."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM collections WHERE collection_id = ?", (collection_id,)).fetchone() is None:
                return False
            if policy is None:
                db.execute("DELETE FROM collection_policies WHERE collection_id = ?", (collection_id,))
            else:
                db.execute(
                    "INSERT INTO collection_policies (collection_id, policy) VALUES (?, ?) "
                    "ON CONFLICT (collection_id) DO UPDATE SET policy = excluded.policy",
                    (collection_id, json.dumps(policy, sort_keys=True)),
                )
        return True

    def collection_policies(self) -> dict[str, dict]:
        rows = self._conn().execute("SELECT collection_id, policy FROM collection_policies ORDER BY collection_id")
        return {r[0]: json.loads(r[1]) for r in rows}

    # -- idempotency tokens (ClientRequestToken) ----------------------------------------

    def get_request_token(self, principal: str, operation: str, token: str, since: datetime) -> tuple[str, str] | None:
        """(fingerprint, response JSON) of the call that used ``token`` at or after ``since``, or None."""
        row = self._conn().execute(
            "SELECT fingerprint, response FROM request_tokens WHERE principal = ? AND operation = ? AND token = ? "
            "AND created_at >= ?", (principal, operation, token, since.timestamp())).fetchone()
        return None if row is None else (row[0], row[1])

    def put_request_token(self, principal: str, operation: str, token: str, fingerprint: str, response: str,
                          when: datetime, forget_before: datetime) -> None:
        """Remember a successful call's token (in the current unit of work); tokens older than
        ``forget_before`` are dropped."""
        with self._write() as db:
            db.execute("DELETE FROM request_tokens WHERE created_at < ?", (forget_before.timestamp(),))
            db.execute(
                "INSERT INTO request_tokens (principal, operation, token, fingerprint, response, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (principal, operation, token) DO UPDATE SET "
                "fingerprint = excluded.fingerprint, response = excluded.response, created_at = excluded.created_at",
                (principal, operation, token, fingerprint, response, when.timestamp()))

    # -- retention and erasure ---------------------------------------------------------

    def delete_faces_created_before(self, collection_id: str, cutoff: datetime) -> list[FaceRecord]:
        """Delete (and return) the faces of a collection created before ``cutoff``."""
        with self._write() as db:
            rows = db.execute(
                f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_id = ? AND created_at < ? ORDER BY face_id",
                (collection_id, cutoff.timestamp()),
            ).fetchall()
            if rows:
                db.execute("DELETE FROM faces WHERE collection_id = ? AND created_at < ?",
                           (collection_id, cutoff.timestamp()))
                self._bump(db, collection_id)
        return [_face(r) for r in rows]

    def erase_external_image_id(
        self, external_image_id: str, *, face_ids: Sequence[str] | None = None, dry_run: bool = False
    ) -> list[FaceRecord]:
        """Delete (and return) every face with this ExternalImageId, in every collection; ``face_ids``:
        only those of them; ``dry_run``: delete nothing, return what would be deleted."""
        with self._read() if dry_run else self._write() as db:
            rows = db.execute(
                f"SELECT {_FACE_COLUMNS} FROM faces WHERE external_image_id = ? ORDER BY collection_id, face_id",
                (external_image_id,),
            ).fetchall()
            if face_ids is not None:
                wanted = set(face_ids)
                rows = [r for r in rows if r["face_id"] in wanted]
            if rows and not dry_run:
                ids = [r["face_id"] for r in rows]
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    db.execute(f"DELETE FROM faces WHERE face_id IN ({','.join('?' * len(chunk))})", chunk)
                for cid in {r["collection_id"] for r in rows}:
                    self._bump(db, cid)
        return [_face(r) for r in rows]

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it, so deleted pages leave no copy behind.

        True when the WAL was fully checkpointed (False: a reader held it; retried by the next).
        """
        busy, _, _ = self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0


def _access_key(row: sqlite3.Row) -> AccessKeyRecord:
    return AccessKeyRecord(
        access_key_id=row["access_key_id"],
        name=row["name"],
        secret=row["secret"],
        policy=row["policy"],
        created_at=_ts(row["created_at"]),
        revoked_at=None if row["revoked_at"] is None else _ts(row["revoked_at"]),
    )
