"""The store's IVF build (train on a sample, then add every vector) with 1 and 2 OpenMP threads: wall and CPU time.

    PYTHONPATH=src python bench/ivf_threads.py VECTORS.npy [--threads 1 2]

VECTORS.npy: an (N, d) float32 array, as the collection exports of bench/search_scale.py write them
(``--work WORK --keep`` leaves ``WORK/<model>-<N>/export/vectors.npy``). The index is built as the store builds it
(store/index/faiss_ivf.py: ``lists_for(N)`` lists, trained on 64 vectors a list sampled without replacement,
vectors added 50,000 at a time), once per thread count given, and the wall seconds of training and adding, the
process CPU seconds and the load average are printed, so that whether a second thread buys wall time on this
machine can be read in one run (docs/scale.md, import speed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from faceledger.store.index.faiss_ivf import IVFIndex, lists_for  # noqa: E402

CHUNK = 50_000


def main() -> None:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("vectors", type=Path, help="an (N, d) float32 .npy file")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="OpenMP thread counts (default: 1 2)")
    args = ap.parse_args()
    v = np.load(args.vectors, mmap_mode="r")
    n = len(v)
    want = min(n, 64 * lists_for(n))
    sample = np.asarray(v[np.sort(np.random.default_rng(0).choice(n, want, replace=False))], np.float32)
    full = np.ascontiguousarray(v, dtype=np.float32)
    labels = np.arange(n, dtype=np.int64)
    print(f"{n} vectors of {v.shape[1]}, {lists_for(n)} lists, trained on {want}")
    for threads in args.threads:
        faiss.omp_set_num_threads(threads)
        t0, c0 = time.monotonic(), time.process_time()
        index = IVFIndex.train(sample, expected=n)
        t1 = time.monotonic()
        for s in range(0, n, CHUNK):
            index.add(labels[s:s + CHUNK], full[s:s + CHUNK])
        t2 = time.monotonic()
        print(f"threads {threads}: train {t1 - t0:.1f} s, add {t2 - t1:.1f} s, CPU {time.process_time() - c0:.1f} s, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
