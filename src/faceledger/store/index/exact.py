"""Exact nearest neighbours by one matrix-vector product (no N x D temporary).

Squared distances are expanded as ``|v|^2 - 2 v.q + |q|^2``: one ``vectors @ query`` (N floats) instead of
``vectors - query`` (a second N x D matrix per query: 4.6 GB at 1M faces of a 1152-d model). The expansion
loses precision for near-duplicates (float32 cancellation, about 1e-6 in squared distance), so it only
*selects* candidates, with a few spare ones; their distances are then recomputed directly from the rows, and
the ranking returned is the exact one.
"""

from __future__ import annotations

import numpy as np

#: Candidates beyond ``k`` kept from the expanded distances before the exact recomputation, so rounding
#: near the k-th distance cannot push a true neighbour out.
SPARE = 8


def squared_norms(vectors: np.ndarray) -> np.ndarray:
    """|v|^2 per row, float32, shape (N,)."""
    if not vectors.size:
        return np.zeros(vectors.shape[0], np.float32)
    return np.einsum("ij,ij->i", vectors, vectors)


def exact_distances(vectors: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Euclidean distances of ``vectors[rows]`` (float16/float32 rows) to ``query``, float32, computed directly."""
    diff = vectors[rows].astype(np.float32) - query
    return np.sqrt((diff * diff).sum(axis=1))


def exact_nearest(
    vectors: np.ndarray, norms: np.ndarray, query: np.ndarray, k: int, max_distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``vectors`` (N x D) nearest to ``query`` (D,) within ``max_distance``.

    ``norms``: :func:`squared_norms` of ``vectors``. Returns (rows int64, distances float32), nearest first,
    ties in row order. Cost: one matrix-vector product, O(N) memory beside the matrix.
    """
    n = vectors.shape[0]
    if n == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    q = np.ascontiguousarray(query, dtype=np.float32)
    qq = float(q @ q)
    d2 = vectors @ q
    d2 *= -2.0
    d2 += norms
    d2 += qq
    take = min(n, k + SPARE)
    rows = np.argpartition(d2, take - 1)[:take] if take < n else np.arange(n)
    # generous rounding allowance: float32 error of the expansion is ~1e-7 x (|v|^2 + |q|^2)
    slack = 1e-4 * (qq + float(norms[rows].max()) + 1.0)
    rows = rows[d2[rows] <= max_distance * max_distance + slack]
    if rows.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    distances = exact_distances(vectors, rows, q)
    keep = distances <= max_distance
    rows, distances = rows[keep], distances[keep]
    order = np.lexsort((rows, distances))[:k]
    return rows[order].astype(np.int64), distances[order]


class ExactIndex:
    """Every vector in memory as one float32 matrix, searched with :func:`exact_nearest`.

    Memory: N x D x 4 bytes (plus 12 bytes a row). Cost per query: one matrix-vector product."""

    kind = "exact"
    exact = True

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._n = 0
        self._labels = np.zeros(0, np.int64)
        self._vectors = np.zeros((0, dimension), np.float32)
        self._norms = np.zeros(0, np.float32)

    def __len__(self) -> int:
        return self._n

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        labels = np.asarray(labels, np.int64).reshape(-1)
        vectors = np.asarray(vectors, np.float32).reshape(len(labels), self.dimension)
        need = self._n + len(labels)
        if need > len(self._labels):  # grow by half again: amortised O(1) a row
            size = max(need, len(self._labels) * 3 // 2, 1024)
            self._labels = np.resize(self._labels, size)
            grown = np.empty((size, self.dimension), np.float32)
            grown[: self._n] = self._vectors[: self._n]
            self._vectors = grown
            self._norms = np.resize(self._norms, size)
        self._labels[self._n:need] = labels
        self._vectors[self._n:need] = vectors
        self._norms[self._n:need] = squared_norms(vectors)
        self._n = need

    def remove(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels, np.int64).reshape(-1)
        if not len(labels) or not self._n:
            return
        keep = ~np.isin(self._labels[: self._n], labels)
        if keep.all():
            return
        n = int(keep.sum())
        self._labels[:n] = self._labels[: self._n][keep]
        self._vectors[:n] = self._vectors[: self._n][keep]
        self._norms[:n] = self._norms[: self._n][keep]
        self._n = n

    def search(self, query: np.ndarray, k: int, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
        rows, distances = exact_nearest(self._vectors[: self._n], self._norms[: self._n], query, k, max_distance)
        return self._labels[rows], distances

    def save(self, path) -> None:  # rebuilt from the store on start: reading it is as fast as reading a file
        raise NotImplementedError("the exact index is not persisted")
