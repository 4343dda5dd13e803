"""Vectors and approximate search in Milvus; the records stay in SQLite or PostgreSQL (docs/distributed.md).

``serve --vector-store milvus://host:port`` (a Milvus server) or ``--vector-store PATH.db`` (Milvus Lite, the C++
engine in a local file; pymilvus and milvus-lite 2.5: ``pip install 'faceledger[milvus]'``).

Mapping: each faceledger collection is one Milvus collection named ``fl_`` + the first 32 hex digits of the
SHA-256 of its CollectionId (Milvus names allow only letters, digits and underscores), with two fields: ``label``
(INT64, primary key: the face's row number in the store, never reused on PostgreSQL) and ``vector``
(FLOAT_VECTOR of the collection's model's dimension, L2; index FLAT unless ``?index=IVF_FLAT&nlist=N&nprobe=M``
or ``?index=HNSW&M=..&ef=..`` on a server). FaceIds, users and every other field stay in the store.

Consistency: the store is the source of truth and Milvus is derived from it, like a node's own index
(store/index/manager.py). The store's change log (each face row's ``seq``, each deleted face's tombstone, the
collection's ``generation``) says what changed; table ``vector_sync`` (in the store) records the generation
Milvus reflects. Bringing Milvus up to date (a search does it first; so does every start) runs in one write
transaction of the store (its one-writer lock: one node at a time): delete the tombstoned labels, upsert the new
rows, then record the new generation. Deletes and upserts by label are idempotent, so a crash anywhere between
the store's commit and Milvus's (or between Milvus's and ``vector_sync``'s) is repaired by applying the same
changes again on the next search or start; a Milvus collection whose faceledger collection is gone is dropped
at start. Every candidate Milvus returns is re-measured from the store's own float32 vector and dropped if
its face is gone (faceledger.store.sqlite.SQLiteStore.nearest), so Milvus can cost recall, never a wrong
distance or a deleted face. Milvus unreachable: :class:`faceledger.store.vectors.VectorStoreUnavailable`
(answered 503, nothing changed); the next call tries again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from .index.manager import CHUNK, CollectionIndexes, _State
from .vectors import VectorStoreUnavailable

log = logging.getLogger("faceledger.store.milvus")

SYNC_SCHEMA = """CREATE TABLE IF NOT EXISTS vector_sync (
    collection_id TEXT PRIMARY KEY,
    incarnation TEXT NOT NULL,
    generation INTEGER NOT NULL
)"""
PREFIX = "fl_"
#: seconds a Milvus call may take before it counts as unreachable
TIMEOUT = float(os.environ.get("FACELEDGER_MILVUS_TIMEOUT", "10"))


def milvus_name(collection_id: str) -> str:
    """The Milvus collection of a faceledger collection (module docstring)."""
    return PREFIX + hashlib.sha256(collection_id.encode("utf-8")).hexdigest()[:32]


class MilvusVectors:
    """One Milvus (server or Lite file): upsert, delete and search labelled vectors, every failure a
    :class:`VectorStoreUnavailable`. ``target``: ``milvus://host:port[?index=...]`` or a ``.db`` file path."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.scheme == "milvus":
            self.uri, self.where = f"http://{parts.netloc}", f"milvus://{parts.netloc}"
            self.address: tuple[str, int] | None = (parts.hostname or "127.0.0.1", parts.port or 19530)
        elif parts.scheme in ("", "file"):
            path = Path(parts.path if parts.scheme == "file" else target.split("?")[0]).resolve()
            if not path.name.endswith(".db"):
                raise ValueError(f"--vector-store {target}: a Milvus Lite file's name must end in .db")
            self.uri, self.where, self.address = str(path), str(path), None
        else:
            raise ValueError(f"--vector-store must be milvus://host:port or a Milvus Lite .db file, not {target!r}")
        self.index_type = options.get("index", "FLAT").upper()
        self.index_options = {k: int(v) for k, v in options.items() if k in ("nlist", "M", "efConstruction")}
        self.search_options = {k: int(v) for k, v in options.items() if k in ("nprobe", "ef")}
        self._client: Any = None
        self._lock = threading.Lock()
        self._known: set[str] = set()

    def _failure(self, exc: BaseException) -> VectorStoreUnavailable:
        with self._lock:  # a fresh connection next time (gRPC would otherwise back off for minutes)
            client, self._client = self._client, None
            self._known.clear()
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001  (already gone)
                pass
        return VectorStoreUnavailable(f"the Milvus vector store {self.where} cannot be used",
                                      f"Milvus: {str(exc).strip()[:500]}")

    def _reachable(self) -> None:
        """Refuse at once when nothing listens at a server's address (pymilvus would retry for minutes)."""
        if self.address is None:
            return
        try:
            socket.create_connection(self.address, timeout=min(TIMEOUT, 2.0)).close()
        except OSError as exc:
            raise self._failure(exc) from exc

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``MilvusClient.method(*args, **kwargs)``; connects first when needed."""
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise VectorStoreUnavailable("Milvus needs pymilvus: pip install 'faceledger[milvus]'", str(exc)) from exc
        self._reachable()
        try:
            with self._lock:
                if self._client is None:
                    self._client = MilvusClient(uri=self.uri, timeout=TIMEOUT)
                client = self._client
            return getattr(client, method)(*args, timeout=TIMEOUT, **kwargs)
        except VectorStoreUnavailable:
            raise
        except Exception as exc:  # pymilvus's MilvusException, gRPC's errors, a refused connection
            raise self._failure(exc) from exc

    def ensure(self, name: str, dimension: int) -> None:
        if name in self._known:
            return
        if not self.call("has_collection", name):
            from pymilvus import DataType, MilvusClient

            schema = MilvusClient.create_schema(auto_id=False)
            schema.add_field("label", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dimension))
            params = self.call("prepare_index_params")
            params.add_index("vector", index_type=self.index_type, metric_type="L2", params=self.index_options)
            self.call("create_collection", name, schema=schema, index_params=params, consistency_level="Strong")
        self._known.add(name)

    def drop(self, name: str) -> None:
        self._known.discard(name)
        if self.call("has_collection", name):
            self.call("drop_collection", name)

    def names(self) -> list[str]:
        return [n for n in self.call("list_collections") if n.startswith(PREFIX)]

    def upsert(self, name: str, labels: np.ndarray, vectors: np.ndarray) -> None:
        for start in range(0, len(labels), 5000):
            rows = [{"label": int(label), "vector": vector.tolist()}
                    for label, vector in zip(labels[start:start + 5000], vectors[start:start + 5000])]
            self.call("upsert", name, rows)

    def delete(self, name: str, labels: np.ndarray) -> None:
        if not len(labels) or (name not in self._known and not self.call("has_collection", name)):
            return
        for start in range(0, len(labels), 5000):
            self.call("delete", name, ids=[int(x) for x in labels[start:start + 5000]])

    def search(self, name: str, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        hits = self.call("search", name, [np.asarray(query, np.float32).tolist()], limit=int(min(k, 16384)),
                         search_params={"metric_type": "L2", "params": self.search_options},
                         consistency_level="Strong")[0]
        labels = np.asarray([h["id"] for h in hits], np.int64)
        distances = np.sqrt(np.maximum(np.asarray([h["distance"] for h in hits], np.float64), 0))  # L2 is squared
        return labels, distances


class MilvusIndex:
    """A collection's vectors in Milvus, behind the VectorIndex interface (store/index/base.py)."""

    kind = "milvus"
    exact = False
    trained_on = 0

    def __init__(self, vectors: MilvusVectors, name: str, dimension: int, count: int) -> None:
        self.vectors, self.name, self.dimension, self.count = vectors, name, dimension, count

    def __len__(self) -> int:
        return self.count

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        if len(labels):
            self.vectors.ensure(self.name, vectors.shape[1])
            self.vectors.upsert(self.name, labels, vectors)

    def remove(self, labels: np.ndarray) -> None:
        self.vectors.delete(self.name, labels)

    def search(self, query: np.ndarray, k: int, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
        if not self.count:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        self.vectors.ensure(self.name, self.dimension)
        return self.vectors.search(self.name, query, k)

    def save(self, path: Path) -> None:  # Milvus persists itself
        return None

    def params(self) -> dict:
        return {}


class MilvusIndexes(CollectionIndexes):
    """The collections' vectors in one Milvus, kept current from the store (module docstring); replaces the
    store's own :class:`CollectionIndexes` (``store.indexes``)."""

    def __init__(self, store: Any, target: str) -> None:
        super().__init__(store._read, store._open, None)
        self.store = store
        self.vectors = MilvusVectors(target)
        with store._write() as db:
            db.execute(SYNC_SCHEMA)

    def status(self) -> dict:
        """``{"ok": bool, "reason": str | None, "where": ...}``: whether Milvus answers now (one cheap
        ``list_collections`` call, bounded by the connect check and TIMEOUT); ``GET /health`` reports it, so a
        load balancer stops sending searches to a node whose vector store is gone."""
        try:
            self.vectors.call("list_collections")
        except VectorStoreUnavailable as exc:
            return {"ok": False, "reason": str(exc), "where": self.vectors.where}
        return {"ok": True, "reason": None, "where": self.vectors.where}

    # CollectionIndexes.current and .rebuild call these: here they bring Milvus up to date
    def _load(self, collection_id: str, state: _State) -> None:
        return None

    def _catch_up(self, collection_id: str, state: _State) -> None:
        self._sync(collection_id, state)

    def _build(self, collection_id: str, state: _State, *, force_kind: str | None = None) -> None:
        self._sync(collection_id, state, full=True)

    def build_from(self, collection_id: str, head, labels, vectors, kind: str | None = None) -> _State | None:
        """Milvus is filled from the store (its own bulk path), not from the caller's arrays."""
        return self.rebuild(collection_id)

    def _sync(self, collection_id: str, state: _State, *, full: bool = False) -> None:
        """Apply the store's changes since the generation Milvus reflects, under the store's write lock."""
        name = milvus_name(collection_id)
        with self.store._write() as db:
            head = self._head(db, collection_id)
            if head is None:
                return
            incarnation, generation = json.dumps(list(head[0])), head[1]
            row = db.execute("SELECT incarnation, generation FROM vector_sync WHERE collection_id = ?",
                             (collection_id,)).fetchone()
            if full or row is None or row[0] != incarnation or row[1] > generation:
                self.vectors.drop(name)  # another incarnation's vectors, or none recorded: start again
                synced = -1
            else:
                synced = row[1]
            first = db.execute("SELECT face_id, embedding FROM faces WHERE collection_id = ? LIMIT 1",
                               (collection_id,)).fetchone()
            dimension = 0 if first is None else len(self._open(first[0], first[1])) // 4
            count = db.execute("SELECT COUNT(*) FROM faces WHERE collection_id = ?", (collection_id,)).fetchone()[0]
            index = MilvusIndex(self.vectors, name, dimension, count)
            if synced != generation:
                if synced >= 0:
                    index.remove(np.fromiter((r[0] for r in db.execute(
                        "SELECT face_rowid FROM face_tombstones WHERE collection_id = ? AND generation > ?",
                        (collection_id, synced))), dtype=np.int64))
                after = -1
                while True:  # the rows stored since, a chunk at a time
                    labels, vectors = self._rows(db.execute(
                        "SELECT rowid, face_id, embedding FROM faces WHERE collection_id = ? AND seq > ? AND rowid > ? "
                        "ORDER BY rowid LIMIT ?", (collection_id, synced, after, CHUNK)))
                    if not len(labels):
                        break
                    index.add(labels, vectors)
                    after = int(labels[-1])
                db.execute("INSERT INTO vector_sync (collection_id, incarnation, generation) VALUES (?, ?, ?) "
                           "ON CONFLICT (collection_id) DO UPDATE SET incarnation = excluded.incarnation, "
                           "generation = excluded.generation", (collection_id, incarnation, generation))
        state.incarnation, state.index, state.generation = head[0], index, generation

    def forget(self, collection_id: str, *, files: bool = True) -> None:
        """Drop the collection's vectors (``files``: in Milvus too, unless the store has it again)."""
        with self._lock:
            self._states.pop(collection_id, None)
        if not files:
            return
        try:
            with self.store._write() as db:
                if self._head(db, collection_id) is None:  # not created again meanwhile (by another node)
                    self.vectors.drop(milvus_name(collection_id))
                    db.execute("DELETE FROM vector_sync WHERE collection_id = ?", (collection_id,))
        except Exception as exc:  # noqa: BLE001  (Milvus down: the next start drops it)
            log.warning("could not drop the Milvus vectors of deleted collection %s: %s", collection_id, exc)

    def repair(self) -> dict:
        """Drop what Milvus holds of collections the store no longer has, then bring every collection up to date
        (a start after a crash between the two). Returns {"dropped": n, "synced": n}."""
        with self._snapshot() as db:
            ids = [r[0] for r in db.execute("SELECT collection_id FROM collections")]
        wanted = {milvus_name(c) for c in ids}
        dropped = 0
        for name in self.vectors.names():
            if name not in wanted:
                self.vectors.drop(name)
                dropped += 1
        with self.store._write() as db:
            db.execute("DELETE FROM vector_sync WHERE collection_id NOT IN (SELECT collection_id FROM collections)")
        for cid in ids:
            self.current(cid)
        return {"dropped": dropped, "synced": len(ids)}

    def save_all(self) -> None:
        return None


def attach(store: Any, target: str) -> MilvusIndexes:
    """Search ``store``'s collections in Milvus from now on; repairs what a crash left (Milvus down: at the
    first search instead)."""
    indexes = MilvusIndexes(store, target)
    store.indexes = indexes
    try:
        found = indexes.repair()
        log.info("Milvus %s: %s", indexes.vectors.where, found)
    except VectorStoreUnavailable as exc:
        log.warning("%s: searches answer 503 until it is back", exc)
    return indexes
