"""Each collection's vector index, kept current from the store and persisted beside it.

The store (SQLite) is the source of truth; an index is derived from it:

* every face row carries ``seq``, the collection's ``generation`` after the write that stored it, and every
  deleted face leaves a tombstone (its row number, the generation of the delete; a trigger writes it, so
  no delete path can forget). An index records the generation it reflects; bringing it up to date
  (*catching up*) applies the tombstones and the new rows since, in one read snapshot. A search catches up
  first, so a face is searchable as soon as the write that stored it has committed, in any process.
* a large index is saved as ``<data>/faceledger.db.index/<collection>-g<generation>.faiss`` and a small JSON
  file naming it, replaced last (a crash leaves the old pair or the new one); on start it is loaded and
  caught up: no rebuild after a clean stop or a SIGKILL. The file of another incarnation of the collection
  (deleted and created again) or of a generation ahead of the store (a restored backup) is rebuilt.
* below :data:`EXACT_BELOW` faces a collection is searched exactly (its vectors in memory, one
  matrix-vector product a query); at that size it switches to the approximate index
  (:class:`faceledger.store.index.faiss_ivf.IVFIndex`), retrained when the collection has grown
  :data:`RETRAIN_GROWTH` times past what it was trained on, and on demand (``faceledger index rebuild``).
  Crossing that size and retraining happen on a background thread: searches go on with the index they
  have (exact, or the old approximate one, caught up as usual) until the new one, built from a snapshot,
  is swapped in and caught up; a build from nothing (no index yet, or a restart without a saved one)
  happens in the search that needs it.

Indexes of stores whose embeddings are encrypted are never written to disk (they are rebuilt on start).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .exact import ExactIndex

log = logging.getLogger("faceledger.store.index")

#: collections smaller than this are searched exactly (docs/scale.md: below it exact search is at most a
#: few milliseconds a query for any model; above it the approximate index is faster at the recall targets)
EXACT_BELOW = int(os.environ.get("FACELEDGER_EXACT_BELOW", "50000"))
#: an approximate index is retrained when the collection has grown this many times past its training set
RETRAIN_GROWTH = 8
#: "exact" searches every collection exactly (no approximate index is built or loaded): for checking
#: the approximate one against it (bench/search_scale.py) or for a machine with memory to spare
MODE = os.environ.get("FACELEDGER_INDEX", "auto")
#: a caught-up index is saved again after this many changes (a restart then re-reads at most these)
SAVE_EVERY = 20000
#: rows read from the store at a time while building
CHUNK = 50000


def _have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        if not getattr(_have_faiss, "warned", False):
            _have_faiss.warned = True
            log.warning("faiss is not installed (pip install 'faceledger[scale]'): large collections are searched "
                        "exactly, one matrix-vector product a query")
        return False
    return True


@dataclass
class _State:
    index: object
    generation: int
    incarnation: tuple
    unsaved: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    building: threading.Thread | None = None  # a replacement being built in the background


class CollectionIndexes:
    """The indexes of one store's collections.

    ``snapshot``: a context manager yielding a connection that sees one consistent state of the store;
    ``open_blob(face_id, blob)``: the float32 bytes of a stored embedding; ``directory``: where indexes are
    saved (None: never saved).
    """

    def __init__(self, snapshot: Callable, open_blob: Callable[[str, bytes], bytes], directory: Path | None,
                 *, exact_below: int | None = None) -> None:
        self._snapshot = snapshot
        self._open = open_blob
        self.directory = directory
        self.exact_below = EXACT_BELOW if exact_below is None else exact_below
        if MODE == "exact":
            self.exact_below = 1 << 62
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one writer of the index files at a time
        self.builds = 0  # full builds from the store since this process opened it
        self.last_build_seconds: float | None = None

    # -- the state of one collection ------------------------------------------------------------

    @staticmethod
    def _head(db, collection_id: str) -> tuple[tuple, int] | None:
        row = db.execute("SELECT rowid, created_at, generation FROM collections WHERE collection_id = ?",
                         (collection_id,)).fetchone()
        return None if row is None else ((row[0], row[1]), row[2])

    def current(self, collection_id: str) -> _State | None:
        """The collection's index, caught up with the store (None: no such collection). Hold ``lock``
        while using it."""
        with self._snapshot() as db:
            head = self._head(db, collection_id)
        if head is None:
            self.forget(collection_id, files=False)
            return None
        incarnation, generation = head
        with self._lock:
            state = self._states.get(collection_id)
            if state is not None and state.incarnation != incarnation:
                state = None
            if state is None:
                state = _State(None, -1, incarnation)
                self._states[collection_id] = state
        with state.lock:
            if state.index is None:
                self._load(collection_id, state)
            if state.generation != generation:
                self._catch_up(collection_id, state)
        return state

    def _catch_up(self, collection_id: str, state: _State) -> None:
        if state.index is None or state.generation < 0:
            return self._build(collection_id, state)
        with self._snapshot() as db:
            head = self._head(db, collection_id)
            if head is None or head[0] != state.incarnation or head[1] < state.generation:
                return self._build(collection_id, state)
            generation = head[1]
            gone = np.fromiter((r[0] for r in db.execute(
                "SELECT face_rowid FROM face_tombstones WHERE collection_id = ? AND generation > ?",
                (collection_id, state.generation))), dtype=np.int64)
            labels, vectors = self._rows(db.execute(
                "SELECT rowid, face_id, embedding FROM faces WHERE collection_id = ? AND seq > ?",
                (collection_id, state.generation)))
        if len(labels) and state.index is not None and vectors.shape[1] != state.index.dimension:
            return self._build(collection_id, state)
        state.index.remove(gone)
        state.index.add(labels, vectors)
        state.generation = generation
        state.unsaved += len(gone) + len(labels)
        n = len(state.index)
        if isinstance(state.index, ExactIndex) and n >= self.exact_below and _have_faiss():
            self._build_in_background(collection_id, state)
        elif not state.index.exact and n > RETRAIN_GROWTH * max(state.index.trained_on, 1):
            self._build_in_background(collection_id, state)
        if state.unsaved >= SAVE_EVERY:
            self._save(collection_id, state)

    def _build_in_background(self, collection_id: str, state: _State) -> None:
        """Build ``state``'s replacement on a thread (called holding ``state.lock``); searches meanwhile use
        ``state.index`` as it is. The replacement reflects the generation of its snapshot and is caught up
        by the next :meth:`current`; it is dropped if the collection was deleted and created again."""
        if state.building is not None:
            return

        def run() -> None:
            fresh = _State(None, -1, state.incarnation)
            try:
                self._build(collection_id, fresh)
                with state.lock:
                    if fresh.index is not None and fresh.incarnation == state.incarnation:
                        state.index, state.generation, state.unsaved = fresh.index, fresh.generation, 0
            except Exception:  # the store went away, memory ran out: the current index goes on serving
                log.warning("building the index of collection %s in the background failed", collection_id,
                            exc_info=True)
            finally:
                state.building = None

        state.building = threading.Thread(target=run, name=f"index-build-{collection_id}", daemon=True)
        state.building.start()

    def wait_for_builds(self, timeout: float | None = None) -> None:
        """Wait for the background builds running now (tests, benches, a clean stop)."""
        with self._lock:
            threads = [s.building for s in self._states.values() if s.building is not None]
        for thread in threads:
            thread.join(timeout)

    def _rows(self, cursor) -> tuple[np.ndarray, np.ndarray]:
        labels, blobs = [], []
        for rowid, face_id, blob in cursor:
            labels.append(rowid)
            blobs.append(self._open(face_id, blob))
        if not labels:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(labels), -1)
        return np.asarray(labels, np.int64), vectors

    def _build(self, collection_id: str, state: _State, *, force_kind: str | None = None) -> None:
        """Build the collection's index from every stored vector (in chunks, one snapshot)."""
        started = time.monotonic()
        with self._snapshot() as db:
            head = self._head(db, collection_id)
            if head is None:
                state.index, state.generation = ExactIndex(0), -1
                return
            state.incarnation, generation = head
            count = db.execute("SELECT COUNT(*) FROM faces WHERE collection_id = ?", (collection_id,)).fetchone()[0]
            first = db.execute("SELECT length(embedding), face_id, embedding FROM faces WHERE collection_id = ? "
                               "LIMIT 1", (collection_id,)).fetchone()
            dimension = 0 if first is None else len(self._open(first[1], first[2])) // 4

            def sample(want: int) -> np.ndarray:
                # a random set of the collection's row numbers (its index holds them: no vector is read),
                # then those rows' vectors by number; not ORDER BY random(), which reads and sorts every
                # vector (5 GB at 10M faces of 128-d)
                rowids = np.fromiter((r[0] for r in db.execute("SELECT rowid FROM faces WHERE collection_id = ?",
                                                               (collection_id,))), np.int64)
                pick = np.sort(np.random.default_rng(0).choice(rowids, min(want, len(rowids)), replace=False))
                parts = [self._rows(db.execute(
                    f"SELECT rowid, face_id, embedding FROM faces WHERE rowid IN ({','.join('?' * len(ids))})",
                    [int(i) for i in ids]))[1] for ids in np.array_split(pick, max(1, len(pick) // 500))]
                return np.concatenate(parts)

            def chunks():
                after = -1
                while True:
                    labels, vectors = self._rows(db.execute(
                        "SELECT rowid, face_id, embedding FROM faces WHERE collection_id = ? AND rowid > ? "
                        "ORDER BY rowid LIMIT ?", (collection_id, after, CHUNK)))
                    if not len(labels):
                        return
                    yield labels, vectors
                    after = int(labels[-1])

            index = self._new_index(force_kind, count, dimension, sample, chunks())
        self._built(collection_id, state, index, generation, started)

    def _new_index(self, kind: str | None, count: int, dimension: int, sample: Callable[[int], np.ndarray],
                   chunks) -> object:
        """An index of ``kind`` ("exact", "faiss-ivf"; None: by ``count``) over the (labels, vectors) pairs of
        ``chunks``; an approximate one is trained first on ``sample(n)`` (n random vectors of the collection)."""
        kind = kind or ("exact" if count < self.exact_below else "faiss-ivf")
        if kind == "faiss-ivf" and not _have_faiss():
            kind = "exact"
        if kind == "exact" or count == 0:
            index = ExactIndex(dimension)
        else:
            from .faiss_ivf import IVFIndex, lists_for

            index = IVFIndex.train(sample(min(count, 64 * lists_for(count))), expected=count)
        for labels, vectors in chunks:
            index.add(labels, vectors)
        return index

    def _built(self, collection_id: str, state: _State, index, generation: int, started: float) -> None:
        state.index, state.generation, state.unsaved = index, generation, 0
        self.builds += 1
        self.last_build_seconds = time.monotonic() - started
        log.info("built the %s index of collection %s: %d faces in %.1f s", index.kind, collection_id, len(index),
                 self.last_build_seconds)
        self._save(collection_id, state)

    def build_from(self, collection_id: str, head: tuple[tuple, int], labels: np.ndarray, vectors: np.ndarray,
                   kind: str | None = None) -> _State:
        """Build the collection's index from vectors the caller holds instead of reading them back from the
        store: ImportCollection, from the export's vectors.npy (a memory map) and the row numbers its rows
        were stored under, right after its commit. ``head``: ((collection rowid, created_at), generation) as
        the committed import left them; ``labels[i]`` (int64): the row number of ``vectors[i]`` (n x D
        float32, the vectors exactly as stored). Changes committed since are caught up by the next
        :meth:`current`, as after any build."""
        started = time.monotonic()
        incarnation, generation = head
        labels = np.asarray(labels, np.int64)
        if len(labels) != len(vectors):
            raise ValueError(f"{len(labels)} labels for {len(vectors)} vectors")
        with self._lock:
            state = self._states.get(collection_id)
            if state is None or state.incarnation != incarnation:
                state = self._states[collection_id] = _State(None, -1, incarnation)
        n, dimension = vectors.shape

        def sample(want: int) -> np.ndarray:
            return np.asarray(vectors[np.sort(np.random.default_rng(0).choice(n, min(want, n), replace=False))],
                              np.float32)

        def chunks():
            for start in range(0, n, CHUNK):
                yield labels[start:start + CHUNK], np.asarray(vectors[start:start + CHUNK], np.float32)

        with state.lock:
            self._built(collection_id, state, self._new_index(kind, n, dimension, sample, chunks()), generation,
                        started)
        return state

    def rebuild(self, collection_id: str, kind: str | None = None) -> _State | None:
        """Build the collection's index again from the store (``kind``: "exact" or "faiss-ivf"; None: by size)."""
        with self._snapshot() as db:
            head = self._head(db, collection_id)
        if head is None:
            return None
        with self._lock:
            state = self._states.get(collection_id)
            if state is None or state.incarnation != head[0]:
                state = self._states[collection_id] = _State(None, -1, head[0])
        with state.lock:
            self._build(collection_id, state, force_kind=kind)
        return state

    # -- files ----------------------------------------------------------------------------------

    def _stem(self, collection_id: str) -> str:
        return hashlib.sha256(collection_id.encode()).hexdigest()[:32]

    def _meta_path(self, collection_id: str) -> Path:
        return self.directory / f"{self._stem(collection_id)}.json"

    def _save(self, collection_id: str, state: _State) -> None:
        if self.directory is None or state.index is None or state.index.exact:
            return
        with self._save_lock:
            self._save_files(collection_id, state)

    def _save_files(self, collection_id: str, state: _State) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        name = f"{self._stem(collection_id)}-g{state.generation}.faiss"
        state.index.save(self.directory / name)
        meta = {"collection_id": collection_id, "incarnation": list(state.incarnation),
                "generation": state.generation, "kind": state.index.kind, "file": name,
                "params": state.index.params()}
        path = self._meta_path(collection_id)
        old = json.loads(path.read_text()).get("file") if path.exists() else None
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        if old and old != name:
            (self.directory / old).unlink(missing_ok=True)
        state.unsaved = 0

    def _load(self, collection_id: str, state: _State) -> None:
        """The saved index if it belongs to this incarnation of the collection (else none: built on catch-up)."""
        if self.directory is None or MODE == "exact":
            return
        path = self._meta_path(collection_id)
        try:
            meta = json.loads(path.read_text())
            if meta.get("collection_id") != collection_id or tuple(meta["incarnation"]) != state.incarnation:
                return
            if meta["kind"] == "faiss-ivf":
                from .faiss_ivf import IVFIndex

                state.index = IVFIndex.load(self.directory / meta["file"], meta["params"])
                state.generation = int(meta["generation"])
        except FileNotFoundError:
            return
        except Exception:  # a damaged file is rebuilt, never trusted
            log.warning("the saved index of collection %s is unreadable: rebuilding it", collection_id, exc_info=True)
            state.index, state.generation = None, -1

    def forget(self, collection_id: str, *, files: bool = True) -> None:
        """Drop the collection's index (``files``: and its saved files)."""
        with self._lock:
            self._states.pop(collection_id, None)
        if files and self.directory is not None:
            path = self._meta_path(collection_id)
            try:
                name = json.loads(path.read_text()).get("file")
            except (FileNotFoundError, ValueError):
                name = None
            if name:
                (self.directory / name).unlink(missing_ok=True)
            path.unlink(missing_ok=True)

    def save_all(self) -> None:
        """Save every index with unsaved changes (a clean stop; background builds are waited for first)."""
        self.wait_for_builds()
        with self._lock:
            states = list(self._states.items())
        for collection_id, state in states:
            with state.lock:
                if state.unsaved and state.index is not None:
                    try:
                        self._save(collection_id, state)
                    except OSError:
                        log.warning("could not save the index of %s", collection_id, exc_info=True)
