"""Both cores for decode -> detect -> align -> embed: which way measures best (issue 3).

    PYTHONPATH=src .venv/bin/python bench/pipeline.py --n 200 --repeats 3

Passes over the same files (read from disk and decoded inside the timed region, as the CLI's
folder indexing does), interleaved in each repeat, median reported:

  sequential  -- ``engine.analyze(decode(file))`` in a loop (the CLI's loop before this change)
  threads-N   -- the same call on a pool of N threads (what concurrent IndexFaces calls do:
                 the CLI's ``index --workers N`` and the HTTP server's request threads)
  many-N      -- ``engine.analyze_many(files, load=..., workers=N)``: N threads for
                 decode/detect/landmarks/chips, chips of consecutive images embedded in batches
  procs-N     -- a pool of N forked processes, each running ``engine.analyze`` with one
                 onnxruntime thread, results (faces with vectors) pickled back

Every pass must return the same boxes and vectors as ``sequential`` (checked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceledger.vision.engine import default_engine  # noqa: E402
from faceledger.vision.image import decode_image  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def load(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes()).pixels


_engine = None


def _proc_init(engine_name: str) -> None:
    global _engine
    os.environ["FACELEDGER_ONNX_THREADS"] = "1"
    from faceledger.vision import engine as eng_mod

    eng_mod._engines.clear()  # the parent's sessions were made with 2 threads
    eng_mod._onnx = None
    _engine = default_engine(engine=engine_name)


def _proc_analyze(path: Path):
    return _engine.analyze(load(path))


def passes(engine_name: str, workers: int) -> dict:
    eng = default_engine(engine=engine_name)
    out = {
        "sequential": lambda files: [eng.analyze(load(f)) for f in files],
        f"threads-{workers}": lambda files: list(
            ThreadPoolExecutor(workers).map(lambda f: eng.analyze(load(f)), files)),
        f"many-{workers}": lambda files: list(eng.analyze_many(files, load=load, workers=workers)),
    }

    def procs(files):
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers, _proc_init, (engine_name,)) as pool:
            return pool.map(_proc_analyze, files, chunksize=4)

    out[f"procs-{workers}"] = procs
    return out


def same(a: list, b: list) -> float:
    """Largest vector distance between two passes' results (inf if the boxes differ)."""
    worst = 0.0
    for fa, fb in zip(a, b, strict=True):
        if isinstance(fa, Exception) or isinstance(fb, Exception):
            if type(fa) is not type(fb):
                return float("inf")
            continue
        if [f.detection for f in fa] != [f.detection for f in fb]:
            return float("inf")
        for x, y in zip(fa, fb):
            worst = max(worst, float(np.linalg.norm(x.embedding - y.embedding)))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engine", default="onnx")
    ap.add_argument("--sets", nargs="+", default=["lfw", "crowd"])
    args = ap.parse_args()
    sets = {
        "lfw": sorted((DATA / "lfw_dev").glob("*/*.jpg"))[: args.n],
        "crowd": sorted((DATA / "groups" / "widerface_val_subset" / "images").glob("*.jpg"))
        + sorted((DATA / "groups" / "linzaer_imgs").glob("*.jpg")),
    }
    print(f"[machine] {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; engine {args.engine}")
    ps = passes(args.engine, args.workers)
    for f in sets["lfw"][:4]:  # warm up: models, onnx session, a HOG detector per worker
        ps[f"many-{args.workers}"]([f] * args.workers)
    rows = []
    for name, files in sets.items():
        if name not in args.sets:
            continue
        times: dict[str, list[float]] = {k: [] for k in ps}
        results: dict[str, list] = {}
        for r in range(args.repeats):
            order = list(ps) if r % 2 == 0 else list(reversed(ps))
            for k in order:
                t = time.perf_counter()
                results[k] = ps[k](files)
                times[k].append(time.perf_counter() - t)
        faces = sum(len(x) for x in results["sequential"] if not isinstance(x, Exception))
        base = statistics.median(times["sequential"])
        for k, ts in times.items():
            t = statistics.median(ts)
            rows.append((name, k, len(files) / t, faces / t, base / t, same(results["sequential"], results[k])))
        print(f"[{name}] {len(files)} images, {faces} faces; load {os.getloadavg()[0]:.2f}", flush=True)
    print("\n| set | pass | images/s | faces/s | vs sequential | max vector distance to sequential |")
    print("|---|---|---|---|---|---|")
    for name, k, ips, fps, ratio, d in rows:
        print(f"| {name} | {k} | {ips:.1f} | {fps:.1f} | {ratio:.2f}x | {d:.1e} |")


if __name__ == "__main__":
    main()
