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


def unit_vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def face(cid: str, i: int, vector: np.ndarray) -> FaceRecord:
    return FaceRecord(face_id=f"{i:08d}-0000-4000-8000-000000000000", collection_id=cid, image_id=f"img-{i}",
                      external_image_id=None, bounding_box=(0.5, 0.5, 0.1, 0.1), confidence=99.0,
                      face_model_version="test-model", created_at=NOW, embedding=vector)


def make_store(path, cid: str, vectors: np.ndarray, batch: int = 1000) -> SQLiteStore:
    store = SQLiteStore(path)
    store.create_collection(CollectionRecord(cid, f"arn:{cid}", "test-model", NOW), {})
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
