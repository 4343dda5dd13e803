"""An inverted-file index (faiss IVF) over float16 vectors, optionally PCA-reduced: the approximate first
stage of a large collection's search.

Why IVF (docs/scale.md has the figures): it trains in seconds (k-means on a sample) where a graph index
(HNSW) takes hours to build at 10M faces on 2 cores; adds are appends to a list (a face is searchable as
soon as it is stored); removals are exact (``remove_ids``). Each vector is kept as float16 (half of
float32; ranking candidates only: the store re-measures the final distances from its float32 vectors), and
models wider than :data:`REDUCE_ABOVE` dimensions are first projected by PCA to :data:`REDUCED`
dimensions (a 1152-d fusion vector: 512 bytes instead of 4,608). Search width: ``nprobe`` of ``nlist``
lists.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..files import FILE_MODE

#: models wider than this are PCA-reduced to REDUCED dimensions for the first stage
REDUCE_ABOVE = 384
REDUCED = 256
#: share of the lists searched: recall@1 0.985-1.0 (strangers, mated) at 200k faces fitted to LFW's dlib
#: vectors, where 1/16 gave 0.84-0.97 (docs/scale.md)
NPROBE_FRACTION = 1 / 4
#: the same for PCA-reduced models: the fusion's vectors sit in a narrow cone (every impostor near cosine
#: 0.68), so more lists must be searched: recall@1 0.985 at 1/4, 0.99 at 1/2, 1.0 at all lists, on 200
#: faces of 100k fitted to LFW's fusion vectors (docs/scale.md)
NPROBE_FRACTION_REDUCED = 1 / 2


def lists_for(n: int) -> int:
    """Number of inverted lists for ``n`` vectors: about 2 sqrt(n), 64 to 65,536."""
    return int(min(65536, max(64, 2 * math.sqrt(max(n, 1)))))


class IVFIndex:
    kind = "faiss-ivf"
    exact = False

    def __init__(self, index, dimension: int, nprobe: int, trained_on: int) -> None:
        self._index = index
        self.dimension = dimension
        self.trained_on = trained_on
        self.nprobe = nprobe

    @property
    def nprobe(self) -> int:
        return int(self._ivf.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._ivf.nprobe = max(1, min(int(value), self.nlist))

    @classmethod
    def train(cls, sample: np.ndarray, *, expected: int | None = None, nprobe_fraction: float | None = None,
              seed: int = 0) -> "IVFIndex":
        """An empty index trained on ``sample`` (n x D float32: the collection's vectors, or a random
        subset of at least 40 per list); ``expected``: the collection's size (sets the number of lists)."""
        import faiss

        n, dim = sample.shape
        nlist = lists_for(expected or n)
        nlist = max(1, min(nlist, n // 39))
        quantizer = faiss.IndexFlatL2(REDUCED if dim > REDUCE_ABOVE else dim)
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, quantizer.d, nlist, faiss.ScalarQuantizer.QT_fp16,
                                            faiss.METRIC_L2)
        ivf.cp.niter = 10
        ivf.cp.seed = seed
        index = faiss.IndexPreTransform(faiss.PCAMatrix(dim, REDUCED), ivf) if dim > REDUCE_ABOVE else ivf
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        if nprobe_fraction is None:
            nprobe_fraction = NPROBE_FRACTION_REDUCED if dim > REDUCE_ABOVE else NPROBE_FRACTION
        nprobe = max(1, min(nlist, int(round(nlist * nprobe_fraction))))
        return cls(index, dim, nprobe, n)

    @property
    def _ivf(self):
        import faiss

        return faiss.extract_index_ivf(self._index)

    @property
    def nlist(self) -> int:
        return self._ivf.nlist

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        labels = np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)
        if len(labels):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(labels), -1),
                                     labels)

    def remove(self, labels: np.ndarray) -> None:
        import faiss

        labels = np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)
        if len(labels):
            self._index.remove_ids(faiss.IDSelectorBatch(labels))

    def search(self, query: np.ndarray, k: int, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0 or not len(self):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        d2, labels = self._index.search(np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1), int(k))
        keep = labels[0] >= 0
        return labels[0][keep], np.sqrt(np.maximum(d2[0][keep], 0))

    def params(self) -> dict:
        """What :meth:`load` needs beside the file."""
        return {"nprobe": self.nprobe, "trained_on": self.trained_on}

    def save(self, path: Path) -> None:
        import faiss

        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        os.chmod(tmp, FILE_MODE)  # the collection's face vectors: private, as faceledger.db (store/files.py)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, params: dict) -> "IVFIndex":
        import faiss

        index = faiss.read_index(str(path))
        return cls(index, index.d, int(params["nprobe"]), int(params["trained_on"]))
