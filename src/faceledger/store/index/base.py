"""The interface every vector index of a collection implements.

An index is *derived state*: the store (SQLite, the source of truth) can always rebuild it. Labels are the
store's row numbers of the faces (int64); an index never knows face ids, records or collections. What it
returns are *candidates*: the store re-measures their distances exactly from its own float32 vectors and
drops any that no longer exist, so an approximate index can lose recall but never changes a distance, and
a deleted face never comes back. A vector store outside the process (Milvus) fits the same interface:
``add``/``remove`` by label, ``search`` for candidate labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    #: "exact" or the approximate kind ("faiss-ivf", ...)
    kind: str
    #: True when ``search``'s distances are exact (no re-measuring needed)
    exact: bool
    #: vector length (the collection's face model's)
    dimension: int

    def __len__(self) -> int: ...

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows: ``labels`` (n,) int64, ``vectors`` (n, dimension) float32. Labels are new to the index."""

    def remove(self, labels: np.ndarray) -> None:
        """Remove rows by label; labels not in the index are ignored."""

    def search(self, query: np.ndarray, k: int, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` candidate labels nearest to ``query`` (dimension,), nearest first, with their
        distances (exact when ``exact``, else approximate and possibly beyond ``max_distance``)."""

    def save(self, path: Path) -> None:
        """Write the index to ``path`` (atomically: a crash leaves the old file or the new one)."""
