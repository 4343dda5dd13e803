"""The store's vector search: exact search by one matrix-vector product, the approximate index's agreement
with it, deletes, restart catch-up, export/import (synthetic vectors, real SQLite)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from faceledger.store import CollectionRecord, FaceRecord
from faceledger.store.index import exact_nearest, squared_norms
from faceledger.store.sqlite import SQLiteStore

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)
MODEL = "dlib-resnet-v1"  # 128-d; the vectors are synthetic


def unit_vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def face(cid: str, i: int, vector: np.ndarray) -> FaceRecord:
    return FaceRecord(face_id=f"{i:08d}-0000-4000-8000-000000000000", collection_id=cid, image_id=f"img-{i}",
                      external_image_id=None, bounding_box=(0.5, 0.5, 0.1, 0.1), confidence=99.0,
                      face_model_version=MODEL, created_at=NOW, embedding=vector)


def make_store(path, cid: str, vectors: np.ndarray, batch: int = 1000) -> SQLiteStore:
    store = SQLiteStore(path)
    store.create_collection(CollectionRecord(cid, f"arn:aws:rekognition:us-east-1:000000000000:collection/{cid}", MODEL, NOW), {})
    for start in range(0, len(vectors), batch):
        store.add_faces([face(cid, start + i, v) for i, v in enumerate(vectors[start:start + batch])])
    return store


def reference(vectors: np.ndarray, query: np.ndarray, k: int, max_distance: float) -> list[int]:
    """Yesterday's search: the N x D difference, a stable sort."""
    distances = np.sqrt(((vectors - query) ** 2).sum(axis=1))
    rows = np.flatnonzero(distances <= max_distance)
    return list(rows[np.argsort(distances[rows], kind="stable")][:k])


def test_exact_search_by_matrix_vector_product_returns_the_same_neighbours(tmp_path):
    rng = np.random.default_rng(1)
    vectors = unit_vectors(rng, 3000, 128)
    vectors[100] = vectors[7]  # exact duplicates and near-duplicates: where float32 cancellation bites
    vectors[200] = vectors[7] + 1e-4
    vectors[200] /= np.linalg.norm(vectors[200])
    store = make_store(tmp_path / "f.db", "c", vectors)
    probes = np.concatenate([vectors[[7, 0, 5]], unit_vectors(rng, 20, 128)])
    probes[3:] = 0.6 * probes[3:] + 0.8 * vectors[rng.integers(0, 3000, 20)]
    for q in probes:
        for k, radius in ((1, 2.0), (10, 2.0), (80, 1.3), (5, 0.9), (3000, 1.35)):
            expected = reference(vectors, q, k, radius)
            rows, distances = exact_nearest(vectors, squared_norms(vectors), q, k, radius)
            assert list(rows) == expected
            hits = store.nearest("c", q, limit=k, max_distance=radius)
            assert [int(h.face.face_id[:8]) for h in hits] == expected
            np.testing.assert_allclose([h.distance for h in hits],
                                       np.linalg.norm(vectors[expected] - q, axis=1), atol=1e-6)
    excluded = face("c", 7, vectors[7]).face_id
    hits = store.nearest("c", vectors[7], limit=3, max_distance=2.0, exclude_face_ids=[excluded])
    assert [int(h.face.face_id[:8]) for h in hits] == [i for i in reference(vectors, vectors[7], 4, 2.0) if i != 7][:3]
    store.close()


def identities(rng: np.random.Generator, n_ids: int, per_id: int, d: int, spread: float = 0.35) -> np.ndarray:
    """``per_id`` noisy unit vectors around each of ``n_ids`` random centres, identity-major."""
    centres = unit_vectors(rng, n_ids, d)
    v = np.repeat(centres, per_id, axis=0) + spread / np.sqrt(d) * rng.standard_normal((n_ids * per_id, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def ids_of(hits) -> list[int]:
    return [int(h.face.face_id[:8]) for h in hits]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """4,000 faces (2,000 identities, 64-d) in a collection above the exact size: an IVF index."""
    rng = np.random.default_rng(2)
    vectors = identities(rng, 2000, 2, 64)
    path = tmp_path_factory.mktemp("ivf") / "faceledger.db"
    store = make_store(path, "big", vectors, batch=500)
    store.indexes.exact_below = 1000
    yield path, vectors, store
    store.close()


def test_the_approximate_index_agrees_with_exact_search_and_its_distances_are_exact(big):
    path, vectors, store = big
    index = store.indexes.current("big").index
    assert index.kind == "faiss-ivf"
    index.nprobe = index.nlist  # random centres have no neighbourhoods beyond the mate: every list
    rng = np.random.default_rng(3)
    top1 = top10 = 0
    probes = rng.choice(len(vectors), 100, replace=False)
    for i in probes:
        hits = store.nearest("big", vectors[i], limit=10, max_distance=2.0)
        expected = reference(vectors, vectors[i], 10, 2.0)
        top1 += ids_of(hits)[:1] == expected[:1]
        top10 += len(set(ids_of(hits)) & set(expected)) / 10
        np.testing.assert_allclose([h.distance for h in hits],
                                   np.linalg.norm(vectors[ids_of(hits)] - vectors[i], axis=1), atol=1e-6)
        assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    assert top1 / len(probes) >= 0.99 and top10 / len(probes) >= 0.99
    hits = store.nearest("big", vectors[0], limit=10, max_distance=0.5)
    assert all(h.distance <= 0.5 for h in hits)


def test_deleted_faces_never_come_back_and_new_faces_are_found_at_once(big, tmp_path):
    path, vectors, store = big
    victims = [face("big", i, vectors[i]) for i in (10, 11, 12)]
    assert store.delete_faces("big", [f.face_id for f in victims]) == [f.face_id for f in victims]
    for i in (10, 11, 12):
        assert not set(ids_of(store.nearest("big", vectors[i], limit=50, max_distance=2.0))) & {10, 11, 12}
    # another process's store (the CLI on the same data folder) sees the delete, and an add, on its next search
    other = SQLiteStore(path)
    other.indexes.exact_below = 1000
    assert 10 not in ids_of(other.nearest("big", vectors[10], limit=5, max_distance=2.0))
    new = unit_vectors(np.random.default_rng(4), 1, 64)[0]
    other.add_faces([face("big", 90000, new)])
    assert ids_of(store.nearest("big", new, limit=1, max_distance=2.0)) == [90000]
    store.add_faces([face("big", 10, vectors[10])])  # the same FaceId again: found again, once
    assert ids_of(other.nearest("big", vectors[10], limit=2, max_distance=2.0)).count(10) == 1
    other.close()


def test_a_restart_catches_the_saved_index_up_without_a_rebuild(big):
    path, vectors, store = big
    store.indexes.current("big")
    store.close()  # a clean stop saves the index
    saved = list((path.parent / "faceledger.db.index").glob("*.faiss"))
    assert len(saved) == 1
    assert saved[0].stat().st_mode & 0o777 == 0o600  # face vectors: private, as faceledger.db is
    writer = SQLiteStore(path)  # changes while no server runs
    writer.delete_faces("big", [face("big", 20, vectors[20]).face_id])
    extra = unit_vectors(np.random.default_rng(5), 1, 64)[0]
    writer.add_faces([face("big", 90001, extra)])
    again = SQLiteStore(path)
    again.indexes.exact_below = 1000
    assert ids_of(again.nearest("big", extra, limit=1, max_distance=2.0)) == [90001]
    assert 20 not in ids_of(again.nearest("big", vectors[20], limit=5, max_distance=2.0))
    assert again.indexes.builds == 0
    assert again.rebuild_index("big")["faces"] == len(vectors) - 1  # +90000 -10,11,12 +10 -20 +90001
    assert again.indexes.builds == 1
    again.close()


def test_crossing_the_exact_size_builds_the_approximate_index_without_stalling_searches(tmp_path, monkeypatch):
    import threading

    from faceledger.store.index import faiss_ivf

    release = threading.Event()  # the build waits for it: the search below must not
    train = faiss_ivf.IVFIndex.train.__func__
    monkeypatch.setattr(faiss_ivf.IVFIndex, "train",
                        classmethod(lambda cls, *a, **k: (release.wait(60), train(cls, *a, **k))[1]))
    safety = threading.Timer(30, release.set)  # a search that waited for the build fails below instead of hanging
    safety.start()
    vectors = identities(np.random.default_rng(8), 700, 2, 32)
    store = make_store(tmp_path / "faceledger.db", "grow", vectors[:800], batch=400)
    store.indexes.exact_below = 1000
    assert store.indexes.current("grow").index.kind == "exact"
    builds = store.indexes.builds
    store.add_faces([face("grow", 800 + i, v) for i, v in enumerate(vectors[800:])])  # 1,400 faces now
    # the search that sees the collection past the exact size answers from the exact index, at once and right;
    # the approximate index is built from a snapshot on a thread and swapped in
    hits = store.nearest("grow", vectors[1300], limit=2, max_distance=2.0)
    assert ids_of(hits) == [1300, 1301]
    assert not release.is_set() and store.indexes.current("grow").index.kind == "exact"
    release.set()
    safety.cancel()
    store.indexes.wait_for_builds(60)
    state = store.indexes.current("grow")
    assert state.index.kind == "faiss-ivf" and len(state.index) == 1400 and store.indexes.builds == builds + 1
    store.delete_faces("grow", [face("grow", 1301, vectors[1301]).face_id])  # caught up after the swap
    assert 1301 not in ids_of(store.nearest("grow", vectors[1300], limit=5, max_distance=2.0))
    store.close()


def test_a_threads_connection_is_closed_when_the_thread_ends(tmp_path):
    """Worker threads come and go (anyio retires one idle for 10 s; video and stream workers end): the SQLite
    connection of each must close with it, or a long-running server leaks two file descriptors a thread."""
    import os
    import threading

    store = make_store(tmp_path / "faceledger.db", "t", unit_vectors(np.random.default_rng(9), 10, 8))
    opened = len(os.listdir("/proc/self/fd"))
    for _ in range(40):
        worker = threading.Thread(target=lambda: store.get_collection("t"))
        worker.start()
        worker.join()
    assert len(store._connections) == 1 and len(os.listdir("/proc/self/fd")) <= opened + 2
    store.close()


KILLED_WRITER = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_vector_search import face, identities, make_store
vectors = identities(np.random.default_rng(6), 3000, 1, 32)
store = make_store({path!r}, "k", vectors[:1500], batch=500)
store.nearest("k", vectors[0], limit=1, max_distance=2.0)  # builds and saves the index at this point
print(1500, flush=True)
for start in range(1500, 3000, 100):
    store.add_faces([face("k", start + i, v) for i, v in enumerate(vectors[start:start + 100])])
    print(start + 100, flush=True)
"""


def test_sigkill_during_bulk_indexing_loses_no_acknowledged_face_and_needs_no_rebuild(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "faceledger.db"
    code = KILLED_WRITER.format(tests=str(Path(__file__).parent), path=str(path))
    env = dict(os.environ, FACELEDGER_EXACT_BELOW="1000")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    acknowledged = 0
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 2200:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    vectors = identities(np.random.default_rng(6), 3000, 1, 32)
    store = SQLiteStore(path)
    store.indexes.exact_below = 1000
    stored = store.get_collection("k").face_count
    assert acknowledged <= stored <= 3000
    for i in range(0, stored, 7):
        assert ids_of(store.nearest("k", vectors[i], limit=1, max_distance=2.0)) == [i]
    assert store.indexes.builds == 0  # the saved index (1,500 faces) was caught up, not rebuilt
    assert len(store.indexes.current("k").index) == stored
    store.close()


def test_a_database_of_the_previous_version_is_migrated_counted_and_searched(tmp_path):
    import sqlite3

    vectors = identities(np.random.default_rng(8), 300, 2, 32)
    make_store(tmp_path / "faceledger.db", "old", vectors, batch=200).close()
    db = sqlite3.connect(tmp_path / "faceledger.db", isolation_level=None)  # back to the previous schema
    for statement in ("DROP TRIGGER faces_tombstone", "DROP TRIGGER faces_counted", "DROP INDEX faces_by_seq",
                      "DROP TABLE face_tombstones", "ALTER TABLE faces DROP COLUMN seq",
                      "ALTER TABLE collections DROP COLUMN face_count"):
        db.execute(statement)
    db.close()
    store = SQLiteStore(tmp_path / "faceledger.db")
    assert store.get_collection("old").face_count == 600
    assert ids_of(store.nearest("old", vectors[5], limit=1, max_distance=2.0)) == [5]
    store.delete_faces("old", [face("old", 5, vectors[5]).face_id])
    assert store.get_collection("old").face_count == 599
    assert 5 not in ids_of(store.nearest("old", vectors[5], limit=3, max_distance=2.0))
    store.close()


def test_an_encrypted_store_never_writes_its_index_to_disk(tmp_path):
    import os

    vectors = identities(np.random.default_rng(9), 600, 2, 32)
    store = SQLiteStore(tmp_path / "faceledger.db", embedding_key=os.urandom(32))
    store.indexes.exact_below = 1000
    store.create_collection(CollectionRecord("enc", "arn:enc", MODEL, NOW), {})
    store.add_faces([face("enc", i, v) for i, v in enumerate(vectors)])
    assert ids_of(store.nearest("enc", vectors[4], limit=1, max_distance=2.0)) == [4]
    assert store.indexes.current("enc").index.kind == "faiss-ivf"
    store.close()
    assert not (tmp_path / "faceledger.db.index").exists()
