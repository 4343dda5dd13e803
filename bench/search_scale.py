"""SearchFaces at scale: N faces in one collection, built through the import path, searched through the service.

    python bench/search_scale.py --faces 100000 1000000 --model dlib [--queries 200] [--work DIR] [--json OUT]

For each N:

* **vectors**: synthetic identities fitted to the real embeddings of ``../shared/data/lfw_dev`` (cached by
  ``faceledger eval``: ``--embeddings``, default the largest lfw_dev cache of 1152-d fusion vectors): identity
  centres ~ N(mean, S_between) and faces ~ centre + N(0, S_within), both full covariance fitted on LFW
  (S_between from every identity's mean, S_within from the identities with 2+ images), unit-normalised; 80%
  of the synthetic faces come in pairs (mated probes: a face whose mate is stored), 20% alone (strangers:
  no mate stored), and every real lfw_dev face is mixed in (real probes: a person with 2+ photos). ``--model
  dlib`` uses the dlib-resnet-v1 block of the fusion vectors (its first 128 values, renormalised: exactly
  dlib-resnet-v1's descriptor), ``--model fusion`` the 1152-d vectors, ``--model sface`` a cache of 128-d SFace vectors (faceledger-sface-v2, the default model).
* **import**: the vectors are written as a collection export (collection.json, faces.jsonl, vectors.npy) and
  imported with ``Faceledger.ImportCollection`` (one transaction, then the index build), timed.
* **serving**, in a fresh process on the data folder (so its memory is what a server would hold):
  restart to first answer, then SearchFaces(FaceId) one at a time through ``Service.call`` (validation,
  policy, search, ledger entry with its fsync; no embedding): p50/p99; the store's search alone; recall@1
  and @10 of the store's top 10 against exact search computed here on the same vectors; for the real
  probes, the default search policy's answer (matches, threshold used, ambiguous) against the same service
  searching exactly (``FACELEDGER_INDEX=exact``, where it fits in memory).
* **today's search** (the N x D temporary per query, before this change) and the exact matrix-vector
  search, timed on a few queries at the sizes where they fit (``--exhaustive-max-gb``).

Prints one table row per N beside those baselines, and writes everything to ``--json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"dlib": ("dlib-resnet-v1", 128), "fusion": ("faceledger-fusion-v1", 1152),
          "sface": ("faceledger-sface-v2", 128)}
DLIB_WEIGHT = 2.0  # vision/fusion.py: [sqrt(w) d, f] / sqrt(w + 1)


def face_id(i: int) -> str:
    return f"{i >> 16 & 0xffffffff:08x}-{i & 0xffff:04x}-4000-8000-{i:012x}"


def real_embeddings(path: str | None, model: str) -> tuple[np.ndarray, list[str]]:
    """lfw_dev's real vectors of ``model`` and each one's person. ``dlib`` and ``fusion`` read a cache of
    1152-d fusion vectors (dlib is its first block); ``sface`` a cache of 128-d faceledger-sface-v2 vectors
    (``faceledger eval verify ../shared/data/lfw_dev --face-model faceledger-sface-v2``)."""
    width = 128 if model == "sface" else 1152
    if path is None:
        cache = Path(os.environ.get("FACELEDGER_CACHE", Path.home() / ".cache/faceledger/embeddings"))
        files = [f for f in sorted(glob.glob(str(cache / "lfw_dev-*.npz")), key=os.path.getsize)
                 if np.load(f)["vectors"].shape[1] == width]
        if not files:
            sys.exit(f"no lfw_dev embeddings of {width} values cached: run `faceledger eval verify "
                     "../shared/data/lfw_dev` with the model first")
        path = files[-1]
    z = np.load(path)
    vectors, paths = z["vectors"].astype(np.float32), [str(p) for p in z["paths"]]
    if vectors.shape[1] != width:
        sys.exit(f"{path}: expected {width}-d vectors for --model {model}, got {vectors.shape[1]}-d")
    if model == "dlib":
        vectors = vectors[:, :128] * np.sqrt((DLIB_WEIGHT + 1) / DLIB_WEIGHT)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, [p.split("/", 1)[0] for p in paths]


class Fitted:
    """Between- and within-identity Gaussians (full covariance) fitted to real vectors."""

    def __init__(self, vectors: np.ndarray, people: list[str]) -> None:
        ids = {}
        labels = np.array([ids.setdefault(p, len(ids)) for p in people])
        counts = np.bincount(labels)
        sums = np.zeros((len(ids), vectors.shape[1]), np.float64)
        np.add.at(sums, labels, vectors)
        centres = sums / counts[:, None]
        multi = counts[labels] >= 2
        residuals = (vectors - centres[labels])[multi]
        # a k-image mean has the within spread / k in it; the residuals lose a factor (k-1)/k
        k = counts[labels][multi]
        residuals = residuals * np.sqrt(k / (k - 1))[:, None]
        self.mean = centres.mean(axis=0)
        self.between = self._root(np.cov(centres, rowvar=False))
        self.within = self._root(np.cov(residuals, rowvar=False))
        self.dim = vectors.shape[1]

    @staticmethod
    def _root(cov: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(cov)
        return (v * np.sqrt(np.clip(w, 0, None))).astype(np.float32)

    def centres(self, rng, n: int) -> np.ndarray:
        return self.mean.astype(np.float32) + rng.standard_normal((n, self.dim), np.float32) @ self.between.T

    def faces(self, rng, centres: np.ndarray) -> np.ndarray:
        v = centres + rng.standard_normal(centres.shape, np.float32) @ self.within.T
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def write_export(out: Path, n: int, real: np.ndarray, people: list[str], fit: Fitted, model: str, seed: int):
    """An export of ``n`` faces: the real ones first, then synthetic pairs, then synthetic singletons.
    Returns the row ranges {real, pairs, singles}."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    n_real = len(real)
    n_syn = n - n_real
    n_pairs = int(n_syn * 0.8) // 2
    n_single = n_syn - 2 * n_pairs
    matrix = np.lib.format.open_memmap(out / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, fit.dim))
    matrix[:n_real] = real
    row = n_real
    chunk = 50000
    for start in range(0, n_pairs, chunk):
        m = min(chunk, n_pairs - start)
        c = fit.centres(rng, m)
        matrix[row:row + 2 * m:2] = fit.faces(rng, c)
        matrix[row + 1:row + 2 * m:2] = fit.faces(rng, c)
        row += 2 * m
    for start in range(0, n_single, chunk):
        m = min(chunk, n_single - start)
        matrix[row:row + m] = fit.faces(rng, fit.centres(rng, m))
        row += m
    matrix.flush()
    del matrix
    with open(out / "faces.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"FaceId": face_id(i), "ImageId": face_id(i), "ExternalImageId": None,
                                "UserId": None, "BoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.25, "Top": 0.25},
                                "Confidence": 99.9, "IndexFacesModelVersion": model,
                                "CreationTimestamp": "2026-11-30T00:00:00Z"}) + "\n")
    (out / "collection.json").write_text(json.dumps({"CollectionId": "scale", "FaceModelVersion": model,
                                                     "Tags": {}, "Policy": None}))
    return {"real": (0, n_real), "pairs": (n_real, n_real + 2 * n_pairs), "singles": (n_real + 2 * n_pairs, n)}


def progress(message: str) -> bool:
    """A progress line on stderr (a 10M run takes most of an hour)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
    return True


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


SERVE = r"""
import json, sys, time, resource
t0 = time.monotonic()
from faceledger.client import Client
from faceledger.service import RequestContext
args = json.loads(sys.argv[1])
client = Client(args["data"], context=RequestContext(transport="python"))
svc = client._service
probes = args["probes"]
first = svc.call("SearchFaces", {"CollectionId": "scale", "FaceId": probes[0]})
restart = time.monotonic() - t0
out = {"restart_s": restart, "builds_at_start": svc.store.indexes.builds}
state = svc.store.indexes.current("scale")
out["kind"] = state.index.kind
if hasattr(state.index, "nlist"):
    if args.get("nprobe"):
        state.index.nprobe = args["nprobe"]
    out["nlist"], out["nprobe"] = state.index.nlist, state.index.nprobe
service_ms, store_ms, top10, answers = [], [], {}, {}
for fid in probes:
    t = time.perf_counter()
    r, meta = svc.call_with_meta("SearchFaces", {"CollectionId": "scale", "FaceId": fid})
    service_ms.append((time.perf_counter() - t) * 1e3)
    answers[fid] = {"matches": [m["Face"]["FaceId"] for m in r["FaceMatches"]],
                    "threshold": meta.get("ThresholdUsed"), "ambiguous": bool(meta.get("Ambiguous"))}
    vec = svc.store.get_faces("scale", [fid], with_embeddings=True)[fid].embedding
    t = time.perf_counter()
    hits = svc.store.nearest("scale", vec, limit=10, max_distance=4.0, exclude_face_ids=[fid])
    store_ms.append((time.perf_counter() - t) * 1e3)
    top10[fid] = [h.face.face_id for h in hits]
out.update(service_ms=service_ms, store_ms=store_ms, top10=top10, answers=answers,
           rss_mb=int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024,
           maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
client._service.store.close()
print(json.dumps(out))
"""


def serve(data: Path, probes: list[str], env_extra: dict | None = None, nprobe: int | None = None) -> dict:
    import faceledger

    env = dict(os.environ, PYTHONPATH=str(Path(faceledger.__file__).parents[1]), **(env_extra or {}))
    r = subprocess.run([sys.executable, "-c", SERVE, json.dumps({"data": str(data), "probes": probes,
                                                                 "nprobe": nprobe})],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"serving process failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def exact_truth(matrix: np.ndarray, rows: np.ndarray, k: int = 10, chunk: int = 250000) -> dict[str, list[str]]:
    """Each row's exact top ``k`` (squared L2, the query itself left out), all queries at once: one matrix
    product per chunk of the collection (per query, a matrix-vector product over 10M faces is ~1 s here)."""
    queries = np.ascontiguousarray(matrix[rows], dtype=np.float32)
    qn = (queries ** 2).sum(axis=1)
    best_d = np.full((len(rows), 0), np.inf, np.float32)
    best_i = np.zeros((len(rows), 0), np.int64)
    for start in range(0, len(matrix), chunk):
        block = np.asarray(matrix[start:start + chunk], dtype=np.float32)
        d = qn[:, None] + (block ** 2).sum(axis=1)[None, :] - 2 * queries @ block.T
        d[(rows[:, None] - start) == np.arange(len(block))[None, :]] = np.inf  # the query itself
        top = np.argpartition(d, min(k, d.shape[1] - 1), axis=1)[:, :k + 1]
        best_d = np.concatenate([best_d, np.take_along_axis(d, top, axis=1)], axis=1)
        best_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(best_d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(best_d, keep, axis=1), np.take_along_axis(best_i, keep, axis=1)
    return {face_id(int(r)): [face_id(int(i)) for i, dd in zip(ii, dd_) if np.isfinite(dd)]
            for r, ii, dd_ in zip(rows, best_i, best_d)}


def todays_search_ms(matrix: np.ndarray, queries: np.ndarray) -> float:
    """The search before this change: a second N x D matrix per query, sqrt, filter, stable sort."""
    times = []
    for q in queries:
        t = time.perf_counter()
        d = np.sqrt(np.maximum(((matrix - q) ** 2).sum(axis=1), 0.0))
        c = np.flatnonzero(d <= 0.9)
        c[np.argsort(d[c], kind="stable")][:130]
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def matvec_search_ms(matrix: np.ndarray, queries: np.ndarray) -> float:
    from faceledger.store.index.exact import exact_nearest, squared_norms

    norms = squared_norms(matrix)
    times = []
    for q in queries:
        t = time.perf_counter()
        exact_nearest(matrix, norms, q, 130, 0.9)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def recall(top: dict, truth: dict, ids: list[str]) -> tuple[float, float]:
    r1 = np.mean([top[i][:1] == truth[i][:1] for i in ids])
    r10 = np.mean([len(set(top[i][:10]) & set(truth[i][:10])) / max(1, min(10, len(truth[i]))) for i in ids])
    return float(r1), float(r10)


def run(n: int, args, real, people, fit) -> dict:
    from faceledger.client import Client

    model, dim = MODELS[args.model]
    work = Path(args.work) / f"{args.model}-{n}"
    made = {"faces": n, "model": model, "seed": args.seed, "real": len(real)}
    done = work / "export" / "made.json"
    if args.keep and done.exists() and json.loads(done.read_text()).get("made") == made:
        ranges = {k: tuple(v) for k, v in json.loads(done.read_text())["ranges"].items()}
        generated = None  # reused (--keep): made by an earlier run
        shutil.rmtree(work / "data", ignore_errors=True)
        progress(f"{n}: reusing the export in {work / 'export'}")
    else:
        shutil.rmtree(work, ignore_errors=True)
        t = time.monotonic()
        ranges = write_export(work / "export", n, real, people, fit, model, args.seed)
        generated = time.monotonic() - t
        done.write_text(json.dumps({"made": made, "ranges": ranges}))
        progress(f"{n}: export written in {generated:.0f} s")
    if args.generate_only:
        return {"faces": n, "generate_s": generated}
    data = work / "data"
    client = Client(data)
    t = time.monotonic()
    from faceledger.service.transfer import PROGRESS

    step = max(n // 20, 1)
    token = PROGRESS.set(lambda phase, k, total: k % step < 10000 and progress(f"{n}: import {phase} {k}/{total} "
                                                                              f"({time.monotonic() - t:.0f} s)"))
    try:
        client._service.call("ImportCollection", {"Directory": str(work / "export")})
    finally:
        PROGRESS.reset(token)
    imported = time.monotonic() - t
    progress(f"{n}: imported in {imported:.0f} s (index build {client._service.store.indexes.last_build_seconds:.0f} s)")
    build = client._service.store.indexes.last_build_seconds
    client._service.store.close()
    del client
    disk = {"sqlite": sum(p.stat().st_size for p in data.glob("faceledger.db*") if p.is_file()),
            "index": du(data / "faceledger.db.index") if (data / "faceledger.db.index").exists() else 0}

    rng = np.random.default_rng(args.seed + 1)
    q = args.queries
    pair_rows = rng.choice(np.arange(*ranges["pairs"]), q, replace=False)
    single_rows = rng.choice(np.arange(*ranges["singles"]), q, replace=False)
    counts = {p: people.count(p) for p in set(people)}
    real_rows = np.array([i for i, p in enumerate(people) if counts[p] >= 2])
    real_rows = rng.choice(real_rows, min(q, len(real_rows)), replace=False)
    probe_sets = {"mated": [face_id(int(r)) for r in pair_rows], "strangers": [face_id(int(r)) for r in single_rows],
                  "real": [face_id(int(r)) for r in real_rows]}
    probes = [f for ids in probe_sets.values() for f in ids]
    served = serve(data, probes, nprobe=args.nprobe)
    progress(f"{n}: served {len(probes)} probes (restart {served['restart_s']:.1f} s, service p50 "
             f"{np.percentile(served['service_ms'], 50):.1f} ms)")

    matrix = np.load(work / "export" / "vectors.npy", mmap_mode="r")
    matrix = np.ascontiguousarray(matrix)
    truth = exact_truth(matrix, np.concatenate([pair_rows, single_rows, real_rows]))
    progress(f"{n}: exact truth computed")
    row = {"faces": n, "model": model, "dim": dim, "generate_s": generated, "import_s": imported,
           "index_build_s": build, "disk_bytes": disk, "restart_s": served["restart_s"],
           "builds_at_start": served["builds_at_start"], "kind": served["kind"],
           "nlist": served.get("nlist"), "nprobe": served.get("nprobe"),
           "rss_mb": served["rss_mb"], "maxrss_mb": served["maxrss_mb"],
           "service_p50_ms": float(np.percentile(served["service_ms"], 50)),
           "service_p99_ms": float(np.percentile(served["service_ms"], 99)),
           "store_p50_ms": float(np.percentile(served["store_ms"], 50)),
           "store_p99_ms": float(np.percentile(served["store_ms"], 99))}
    for name, ids in probe_sets.items():
        row[f"recall1_{name}"], row[f"recall10_{name}"] = recall(served["top10"], truth, ids)
    queries = matrix[pair_rows[:5]]
    row["matvec_exact_ms"] = matvec_search_ms(matrix, queries)
    if n * dim * 4 / 2**30 <= args.exhaustive_max_gb:
        row["todays_search_ms"] = todays_search_ms(matrix, queries)
    del matrix  # (before the exact pass below: both would hold every vector)
    # the default search policy on the real probes against the same service searching exactly
    if args.json:  # what is known so far, in case the rest is stopped
        Path(args.json).write_text(json.dumps(args.rows + [row], indent=1))
    if n * dim * 4 / 2**30 <= args.exhaustive_max_gb * 2:
        progress(f"{n}: serving the real probes with exact search (the policy's answers)")
        exact = serve(data, probe_sets["real"], {"FACELEDGER_INDEX": "exact"})
        same = [served["answers"][f] == exact["answers"][f] for f in probe_sets["real"]]
        row["policy_same_as_exact_real"] = float(np.mean(same))
        row["exact_service_p50_ms"] = float(np.percentile(exact["service_ms"], 50))
        row["exact_rss_mb"] = exact["rss_mb"]
        row["real_answers"] = {"matched": sum(bool(served["answers"][f]["matches"]) for f in probe_sets["real"]),
                               "ambiguous": sum(served["answers"][f]["ambiguous"] for f in probe_sets["real"]),
                               "exact_matched": sum(bool(exact["answers"][f]["matches"]) for f in probe_sets["real"]),
                               "exact_ambiguous": sum(exact["answers"][f]["ambiguous"] for f in probe_sets["real"]),
                               "threshold_used": served["answers"][probe_sets["real"][0]]["threshold"]}
        if args.json:  # each real probe's answers, both ways (which decisions differ, and why)
            Path(args.json).with_suffix(f".answers-{n}.json").write_text(json.dumps(
                {f: {"index": served["answers"][f], "exact": exact["answers"][f], "top10": served["top10"][f],
                     "truth": truth[f]} for f in probe_sets["real"]}))
    if not args.keep:
        shutil.rmtree(work / "export", ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, nargs="+", required=True)
    ap.add_argument("--model", choices=sorted(MODELS), default="dlib")
    ap.add_argument("--embeddings", default=None, help="lfw_dev embeddings cache (.npz of 1152-d fusion vectors)")
    ap.add_argument("--queries", type=int, default=200, help="probes of each kind (mated, strangers, real)")
    ap.add_argument("--nprobe", type=int, default=None, help="IVF lists searched (default: the index's)")
    ap.add_argument("--work", default="/tmp/faceledger-search-scale")
    ap.add_argument("--exhaustive-max-gb", type=float, default=2.5,
                    help="time today's search where the N x D matrix is at most this size")
    ap.add_argument("--keep", action="store_true", help="keep the export folders, and reuse one made by an "
                    "earlier run with the same --faces, --model and --seed (only the import and after are run)")
    ap.add_argument("--generate-only", action="store_true", help="write the exports and stop (with --keep: "
                    "generate a large one ahead of the run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    real, people = real_embeddings(args.embeddings, args.model)
    fit = Fitted(real, people)
    print(f"{args.model}: {len(real)} real lfw_dev faces of {len(set(people))} people; mean |v| of identity "
          f"centres {np.linalg.norm(fit.mean):.3f}", flush=True)
    rows = args.rows = []
    for n in args.faces:
        row = run(n, args, real, people, fit)
        if args.generate_only:
            continue
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    print()
    head = ("faces", "model", "import_s", "index_build_s", "restart_s", "service_p50_ms", "service_p99_ms",
            "store_p50_ms", "matvec_exact_ms", "todays_search_ms", "recall1_mated", "recall10_mated",
            "recall1_strangers", "recall10_strangers", "recall1_real", "recall10_real",
            "policy_same_as_exact_real", "rss_mb")
    print(" | ".join(head))
    for r in rows:
        print(" | ".join(f"{r[h]:.3g}" if isinstance(r.get(h), float) else str(r.get(h, "-")) for h in head),
              "| disk GB", round(sum(r["disk_bytes"].values()) / 2**30, 2))


if __name__ == "__main__":
    main()
