#!/usr/bin/env python3
"""Calibrate faceledger's Similarity scale (distance -> 0..100) on LFW (lfw_dev).

Steps (each re-runnable; embeddings are cached and resumable):

    python bench/calibrate_similarity.py embed       # a few minutes, cache in .cache/
    python bench/calibrate_similarity.py calibrate   # split-half check, pairs_dev, final table
    python bench/calibrate_similarity.py all         # both

The embedding pipeline is the service's: ``faceledger.vision.image.decode_image`` and
``faceledger.vision.default_engine().analyze(img, max_faces=1)`` (the default "onnx"
engine: BlazeFace on tiles checked by HOG, dlib's 5-point predictor, dlib's ResNet v1 run
by onnxruntime), largest face; no face = failure to enrol.  The cache is named after the
engine's detector and embedder, so a change of pipeline starts a new one.
(Until 2026-11 the table was built with dlib's HOG at upsample 1, retried at 2, in
``.cache/lfw_dev_dlib.npz``.)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (ROOT / ".." / "shared" / "data" / "lfw_dev").resolve()
if not DEFAULT_DATA.exists():
    DEFAULT_DATA = Path("/work/shared/data/lfw_dev")
CACHE = ROOT / ".cache" / "lfw_dev_default_engine.npz"  # renamed per engine in main()
TABLE_OUT = ROOT / "src" / "faceledger" / "data" / "similarity-dlib-resnet-v1.json"
REPORT_OUT = ROOT / ".cache" / "similarity_calibration_report.json"
DETECTOR = "?"  # the default engine's detector name, set in main()
LANDMARKS = "?"  # ... and its landmark model's
DIM = 128  # the face model's vector length, set in main()


# ----------------------------------------------------------------------------- embedding

class Embedder:
    """The service's pipeline, through the service's own objects: ``decode_image`` and
    ``faceledger.vision.default_engine()`` (the default engine: whatever detector,
    landmarks and embedder IndexFaces and SearchFacesByImage use), largest face."""

    def __init__(self, face_model: str | None = None):
        sys.path.insert(0, str(ROOT / "src"))
        from faceledger.vision import default_engine

        self.engine = default_engine(face_model=face_model)

    @staticmethod
    def load_image(path) -> np.ndarray:
        sys.path.insert(0, str(ROOT / "src"))
        from faceledger.vision.image import decode_image

        return decode_image(Path(path).read_bytes()).pixels

    def embed(self, img: np.ndarray):
        """Return the float32 descriptor of the largest face, or None (failure to enrol)."""
        faces = self.engine.analyze(img, embed=True, max_faces=1)
        if not faces:
            return None
        return np.asarray(faces[0].embedding, dtype=np.float32)


def list_images(data: Path) -> list[str]:
    out = []
    for person in sorted(p for p in data.iterdir() if p.is_dir()):
        for f in sorted(person.iterdir()):
            if f.suffix.lower() in (".jpg", ".jpeg", ".png"):
                out.append(f"{person.name}/{f.name}")
    return out


def load_cache(path: Path | None = None):
    path = path or CACHE
    if not path.exists():
        return [], np.zeros((0, DIM), np.float32), []
    z = np.load(path, allow_pickle=False)
    return list(z["paths"]), z["vectors"].astype(np.float32), list(z["failures"])


def save_cache(paths, vectors, failures, path: Path | None = None):
    path = path or CACHE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, paths=np.array(paths, dtype=str), vectors=np.asarray(vectors, np.float32).reshape(-1, DIM),
             failures=np.array(failures, dtype=str))
    os.replace(tmp, path)


def cmd_embed(data: Path, every: int = 100):
    images = list_images(data)
    paths, vecs, failures = load_cache()
    done = set(paths) | set(failures)
    todo = [p for p in images if p not in done]
    print(f"[embed] {len(images)} images under {data}; cached {len(paths)} ok + {len(failures)} failures; "
          f"{len(todo)} to do", flush=True)
    if not todo:
        return
    emb = Embedder(MODEL)
    vec_list = [v for v in vecs]
    t0 = time.time()
    # analyze_many: both cores, the same vectors as analyze() (tests/test_pipeline.py)
    results = emb.engine.analyze_many(todo, load=lambda rel: emb.load_image(data / rel), max_faces=1)
    for k, (rel, faces) in enumerate(zip(todo, results), 1):
        if isinstance(faces, Exception):
            raise faces
        v = np.asarray(faces[0].embedding, dtype=np.float32) if faces else None
        if v is None:
            failures.append(rel)
        else:
            paths.append(rel)
            vec_list.append(v)
        if k % every == 0 or k == len(todo):
            save_cache(paths, np.array(vec_list, np.float32), failures)
            el = time.time() - t0
            eta = el / k * (len(todo) - k)
            print(f"[embed] {k}/{len(todo)}  ok={len(paths)} fte={len(failures)}  "
                  f"{el:.0f}s elapsed, ETA {eta:.0f}s", flush=True)
    print(f"[embed] done: {len(paths)} descriptors, {len(failures)} failures to enrol", flush=True)



# ----------------------------------------------------------------------------- statistics

def _log_binom_pmf(i: np.ndarray, n: int, p: float) -> np.ndarray:
    from math import lgamma

    lg = np.vectorize(lgamma, otypes=[float])
    return (lgamma(n + 1) - lg(i + 1) - lg(n - i + 1)) + i * math.log(p) + (n - i) * math.log1p(-p)


def _binom_cdf(k: int, n: int, p: float) -> float:
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp = _log_binom_pmf(np.arange(k + 1, dtype=np.float64), n, p)
    m = lp.max()
    return float(min(1.0, math.exp(m) * np.exp(lp - m).sum()))


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1-alpha) binomial interval for k successes out of n."""
    if n <= 0:
        return (0.0, 1.0)
    if k > n / 2:  # symmetry keeps the sums short
        lo, hi = clopper_pearson(n - k, n, alpha)
        return (1.0 - hi, 1.0 - lo)

    def solve(tail, decreasing):  # bisection on log10 p for tail(p) = alpha/2
        a, b = -16.0, 0.0
        for _ in range(70):
            mid = 0.5 * (a + b)
            v = tail(10.0 ** mid)
            if (v > alpha / 2) == decreasing:
                a = mid
            else:
                b = mid
        return 10.0 ** (0.5 * (a + b))

    # upper: P(X <= k; p) = alpha/2 (decreasing in p); lower: P(X >= k; p) = alpha/2 (increasing in p)
    upper = 1.0 if k == n else solve(lambda p: _binom_cdf(k, n, p), True)
    lower = 0.0 if k == 0 else solve(lambda p: 1.0 - _binom_cdf(k - 1, n, p), False)
    return (lower, upper)


# ----------------------------------------------------------------------------- pairs

SEED = 20240611          # identity split (calibration half / held-out half)
MIN_TAIL_COUNT = 20      # a quantile point needs at least this many impostor pairs at or below it
TAIL_START_LOG10 = -5.0  # measured points below this FMR are replaced by a fitted straight line
TABLE_END_LOG10 = -9.0   # extrapolate to here (Similarity 100)
BODY_STEP = 0.05         # log10(FMR) grid of the measured part of the table
TAIL_STEP = 0.25         # grid of the fitted/extrapolated part (it is a straight line anyway)

from faceledger.evaluation.label_errors import SAME_PERSON, excluded_index_pairs, is_excluded  # noqa: E402,F401


def person_of(rel: str) -> str:
    return rel.split("/", 1)[0]


def pair_distances(X: np.ndarray, labels: np.ndarray, rels: list[str], block: int = 1024, closest: int = 30,
                   close_cap: float | None = None):
    """All i<j pairs among rows of X: impostor distances, genuine distances, the closest impostor pairs.

    labels: int identity per row; rels: image path per row (for the SAME_PERSON exclusions).
    Returns (impostor float32 [N], genuine float32 [M], closest [(d, i, j)], n_excluded), plus, when
    close_cap is given, (distance, label_i, label_j) arrays of every impostor pair with distance <= close_cap.
    """
    X = np.asarray(X, np.float64)
    sq = (X * X).sum(1)
    n = len(X)
    ex = excluded_index_pairs(rels)
    ex = ex[labels[ex[:, 0]] != labels[ex[:, 1]]] if ex.size else ex
    imp, gen, best = [], [], []
    cd, cli, clj = [], [], []
    for s in range(0, n, block):
        e = min(n, s + block)
        D = sq[s:e, None] + sq[None, :] - 2.0 * (X[s:e] @ X.T)
        np.maximum(D, 0.0, out=D)
        np.sqrt(D, out=D)
        upper = np.arange(n)[None, :] > np.arange(s, e)[:, None]
        same = labels[s:e, None] == labels[None, :]
        diff = upper & ~same
        if ex.size:
            sel = (ex[:, 0] >= s) & (ex[:, 0] < e)
            diff[ex[sel, 0] - s, ex[sel, 1]] = False
        gen.append(D[upper & same].astype(np.float32))
        dv = D[diff]
        imp.append(dv.astype(np.float32))
        if close_cap is not None:
            ii, jj = np.nonzero(diff & (D <= close_cap))
            cd.append(D[ii, jj])
            cli.append(labels[ii + s])
            clj.append(labels[jj])
        if closest and dv.size:
            k = min(closest, dv.size)
            part = np.argpartition(dv, k - 1)[:k]
            ii, jj = np.nonzero(diff)
            best.extend((float(dv[t]), int(ii[t] + s), int(jj[t])) for t in part)
            best = sorted(best)[:closest]
    out = (np.concatenate(imp), np.concatenate(gen), best, int(len(ex)))
    if close_cap is not None:
        out += ((np.concatenate(cd), np.concatenate(cli), np.concatenate(clj)),)
    return out


def identity_bootstrap_fmr(close, labels: np.ndarray, thresholds: list[float], n_boot: int = 1000,
                           seed: int = 1) -> list[tuple[float, float]]:
    """95% percentile intervals of FMR at each distance threshold, resampling IDENTITIES with replacement.

    Impostor pairs are not independent (pairs share people, and some people attract close impostors), so the
    binomial interval is too narrow; this resamples the people. Pairs between two copies of one resampled
    identity are not counted (they are the same person). close = (d, label_i, label_j) of the impostor pairs
    with distance <= max(thresholds).
    """
    d, li, lj = close
    ids, n_img = np.unique(labels, return_counts=True)
    pos = np.searchsorted(ids, li), np.searchsorted(ids, lj)
    rng = np.random.default_rng(seed)
    num = np.zeros((n_boot, len(thresholds)))
    den = np.zeros(n_boot)
    sel = [d <= t for t in thresholds]
    for b in range(n_boot):
        w = np.bincount(rng.integers(0, ids.size, ids.size), minlength=ids.size).astype(np.float64)
        wn = w * n_img
        den[b] = (wn.sum() ** 2 - (wn ** 2).sum()) / 2.0
        ww = w[pos[0]] * w[pos[1]]
        for k, m in enumerate(sel):
            num[b, k] = ww[m].sum()
    rates = num / den[:, None]
    return [(float(np.percentile(rates[:, k], 2.5)), float(np.percentile(rates[:, k], 97.5)))
            for k in range(len(thresholds))]


# ----------------------------------------------------------------------------- table

def _quantile_distance(sorted_d: np.ndarray, log10_q: float) -> float:
    """Smallest d with share(<= d) ~= q, interpolating between order statistics."""
    N = sorted_d.size
    pos = (10.0 ** log10_q) * N - 1.0
    pos = min(max(pos, 0.0), N - 1.0)
    lo = int(math.floor(pos))
    hi = min(lo + 1, N - 1)
    w = pos - lo
    return float(sorted_d[lo] * (1 - w) + sorted_d[hi] * w)


def build_table(impostor: np.ndarray) -> dict:
    """The smoothed impostor CDF as a compact (distance, log10 FMR) table.

    * body: empirical quantiles on a log10(FMR) grid (step BODY_STEP) from FMR 1 down to TAIL_START_LOG10;
    * tail: a straight line log10(FMR) = a + b*distance through the TAIL_START_LOG10 point, with b fitted
      (least squares) to the quantile points from TAIL_START_LOG10 down to the last one with
      MIN_TAIL_COUNT pairs, extended to TABLE_END_LOG10.
    """
    d = np.sort(np.asarray(impostor, np.float64))
    N = d.size
    last_log = math.log10(MIN_TAIL_COUNT / N)
    if last_log > TAIL_START_LOG10 - 0.2:
        raise RuntimeError(f"too few impostor pairs ({N}) to measure the tail below 1e-5")
    body_L = np.round(np.arange(0.0, TAIL_START_LOG10 - 1e-9, -BODY_STEP), 6)
    body_L = np.append(body_L, TAIL_START_LOG10)
    body_d = np.array([_quantile_distance(d, L) for L in body_L])
    # fit the tail slope on measured points TAIL_START_LOG10 .. last_log
    fit_L = np.arange(TAIL_START_LOG10, last_log - 1e-9, -BODY_STEP)
    fit_L = np.append(fit_L, last_log)
    fit_d = np.array([_quantile_distance(d, L) for L in fit_L])
    d0, L0 = body_d[-1], TAIL_START_LOG10
    dd, LL = fit_d - d0, fit_L - L0
    slope = float((dd * LL).sum() / (dd * dd).sum())  # log10 FMR per unit distance, > 0
    tail_L = np.arange(TAIL_START_LOG10 - TAIL_STEP, TABLE_END_LOG10 - 1e-9, -TAIL_STEP)
    tail_d = d0 + (tail_L - L0) / slope
    dist = np.concatenate([tail_d[::-1], body_d[::-1]])
    logf = np.concatenate([tail_L[::-1], body_L[::-1]])
    dist = np.round(dist, 5)
    logf = np.round(logf, 4)
    keep = np.ones(dist.size, bool)
    for k in range(1, dist.size):  # keep strictly increasing after rounding
        prev = np.nonzero(keep[:k])[0][-1]
        if dist[k] <= dist[prev] or logf[k] <= logf[prev]:
            keep[k] = False
    fit_resid = LL - slope * dd
    return {
        "distance": dist[keep].tolist(),
        "log10_fmr": logf[keep].tolist(),
        "_fit": {
            "slope_log10_fmr_per_distance": slope,
            "anchor": [float(d0), L0],
            "fit_range_log10_fmr": [TAIL_START_LOG10, float(last_log)],
            "fit_points": int(fit_L.size),
            "fit_rms_log10": float(np.sqrt((fit_resid ** 2).mean())),
            "min_impostor_distance": float(d[0]),
            "n": int(N),
        },
    }


def scale_from_table(model: str, table: dict):
    sys.path.insert(0, str(ROOT / "src"))
    from faceledger.vision.similarity import SimilarityScale

    return SimilarityScale(model, table["distance"], table["log10_fmr"])


# ----------------------------------------------------------------------------- pairs_dev

def read_pairs(path: Path):
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    folds, per = int(lines[0][0]), int(lines[0][1])
    out = []
    body = lines[1:]
    for f in range(folds):
        chunk = body[f * 2 * per:(f + 1) * 2 * per]
        for t in chunk:
            if len(t) == 3:
                out.append((f, True, f"{t[0]}/{t[0]}_{int(t[1]):04d}.jpg", f"{t[0]}/{t[0]}_{int(t[2]):04d}.jpg"))
            else:
                out.append((f, False, f"{t[0]}/{t[0]}_{int(t[1]):04d}.jpg", f"{t[2]}/{t[2]}_{int(t[3]):04d}.jpg"))
    return out


# ----------------------------------------------------------------------------- calibrate

LEVELS = [60, 70, 80, 90, 95, 99]
MODEL = "dlib-resnet-v1"


def _fmt_ci(k, n):
    lo, hi = clopper_pearson(k, n)
    return {"k": int(k), "n": int(n), "rate": k / n if n else float("nan"), "ci95": [lo, hi]}


CLOSE_CAP = 0.63  # set in cmd_calibrate: the impostor pairs below it (Similarity ~58) feed the identity bootstrap
CLOSE_CAP_FMR = 0.02  # ... the distance at this FMR, per face model (0.63 was dlib-resnet-v1's; 1.2 is SFace's)


def close_cap(X: np.ndarray, labels: np.ndarray, fmr: float = CLOSE_CAP_FMR, n: int = 400_000,
              seed: int = 0) -> float:
    """The distance below which about ``fmr`` of impostor pairs lie, from ``n`` random pairs, widened by 10%
    so the bootstrap's pairs cover every threshold it is asked about (Similarity 60 and above: FMR <= 1e-2)
    whatever the face model's distance range."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(X), n), rng.integers(0, len(X), n)
    keep = labels[i] != labels[j]
    d = np.linalg.norm(np.asarray(X[i[keep]], np.float64) - np.asarray(X[j[keep]], np.float64), axis=1)
    return float(np.quantile(d, fmr)) * 1.1


def cmd_calibrate(data: Path, n_splits: int = 10):
    paths, X, failures = load_cache()
    images = list_images(data)
    if len(paths) + len(failures) < len(images):
        raise SystemExit(f"embedding cache incomplete ({len(paths)}+{len(failures)} of {len(images)}); run `embed`")
    X = np.asarray(X, np.float64)
    persons = np.array([person_of(p) for p in paths])
    all_ids = sorted({person_of(p) for p in images})
    lab_of = {nm: k for k, nm in enumerate(all_ids)}
    labels = np.array([lab_of[p] for p in persons])
    report: dict = {"images": len(images), "embedded": len(paths), "failures_to_enrol": failures,
                    "identities": len(all_ids), "seed": SEED,
                    "excluded_same_person": [list(t) for t in SAME_PERSON]}
    print(f"[calibrate] {len(paths)} descriptors of {len(all_ids)} identities; {len(failures)} failures to enrol:")
    for f in failures:
        print(f"    FTE {f}")

    # --- split-half check --------------------------------------------------------------
    global CLOSE_CAP
    CLOSE_CAP = close_cap(X, labels)
    print(f"[calibrate] identity bootstrap over the impostor pairs closer than {CLOSE_CAP:.4f}", flush=True)
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(len(all_ids))
    cal_ids = set(perm[: len(all_ids) // 2].tolist())
    in_cal = np.array([l in cal_ids for l in labels])
    halves = {}
    for name, mask in (("calibration", in_cal), ("held_out", ~in_cal)):
        idx = np.nonzero(mask)[0]
        imp, gen, _, nex, close = pair_distances(X[idx], labels[idx], [paths[i] for i in idx], closest=0,
                                                 close_cap=CLOSE_CAP)
        halves[name] = (imp, gen, close, labels[idx])
        report[f"{name}_half"] = {"identities": int(len(np.unique(labels[idx]))), "images": int(idx.size),
                                  "impostor_pairs": int(imp.size), "genuine_pairs": int(gen.size),
                                  "excluded_pairs": nex}
        print(f"[calibrate] {name} half: {len(np.unique(labels[idx]))} identities, {idx.size} images, "
              f"{imp.size} impostor pairs, {gen.size} genuine pairs ({nex} excluded)", flush=True)
    cal_table = build_table(halves["calibration"][0])
    cal_scale = scale_from_table(MODEL, cal_table)
    report["calibration_half"]["fit"] = cal_table["_fit"]
    h_imp, h_gen, h_close, h_labels = halves["held_out"]
    h_boot = identity_bootstrap_fmr(h_close, h_labels, [cal_scale.max_distance(s) for s in LEVELS])
    rows = []
    print("\n[held-out half, table built on the calibration half]")
    print(f"{'Sim':>4} {'dist<=':>8} {'nominal FMR':>12} {'held-out FMR (k/n) [binomial 95% CI]':>52} "
          f"{'[identity-bootstrap 95%]':>24} {'TAR mated':>24}")
    for s, bt in zip(LEVELS, h_boot):
        thr = cal_scale.max_distance(s)
        k = int((h_imp <= thr).sum())
        g = int((h_gen <= thr).sum())
        r = {"similarity": s, "distance": thr, "nominal_fmr": cal_scale.fmr(s),
             "fmr": _fmt_ci(k, h_imp.size), "fmr_identity_bootstrap_ci95": bt, "tar": _fmt_ci(g, h_gen.size)}
        rows.append(r)
        lo, hi = r["fmr"]["ci95"]
        print(f"{s:>4} {thr:8.4f} {r['nominal_fmr']:12.3g} {k:>8}/{h_imp.size} = {k / h_imp.size:9.3g} "
              f"[{lo:.2g}, {hi:.2g}]  [{bt[0]:.2g}, {bt[1]:.2g}]  {g:>6}/{h_gen.size} = {g / h_gen.size:.4f}")
    report["held_out"] = rows

    # --- how much the split matters: more seeds, both directions -----------------------
    if n_splits:
        ratios = {s: [] for s in (80, 90, 95, 99)}
        for seed in range(1, n_splits + 1):
            perm = np.random.default_rng(seed).permutation(len(all_ids))
            half = set(perm[: len(all_ids) // 2].tolist())
            m = np.array([l in half for l in labels])
            imps = []
            for mask in (m, ~m):
                idx = np.nonzero(mask)[0]
                imps.append(pair_distances(X[idx], labels[idx], [paths[i] for i in idx], closest=0)[0])
            for a, b in ((0, 1), (1, 0)):
                sc = scale_from_table(MODEL, build_table(imps[a]))
                for s in ratios:
                    ratios[s].append(float((imps[b] <= sc.max_distance(s)).mean() / sc.fmr(s)))
            print(f"[splits] seed {seed}: held-out FMR / nominal at 80: "
                  f"{ratios[80][-2]:.2f}, {ratios[80][-1]:.2f}", flush=True)
        report["split_spread"] = {str(s): {"min": min(v), "median": float(np.median(v)), "max": max(v), "all": v}
                                  for s, v in ratios.items()}
        print("[splits] held-out FMR / nominal over", 2 * n_splits, "half-splits (min / median / max):")
        for s, v in ratios.items():
            print(f"    {s}: {min(v):.2f} / {np.median(v):.2f} / {max(v):.2f}")

    # --- final table on all of lfw_dev --------------------------------------------------
    imp, gen, best, nex, close = pair_distances(X, labels, paths, closest=30, close_cap=CLOSE_CAP)
    table = build_table(imp)
    scale = scale_from_table(MODEL, table)
    all_boot = identity_bootstrap_fmr(close, labels, [scale.max_distance(s) for s in LEVELS])
    report["all"] = {"impostor_pairs": int(imp.size), "genuine_pairs": int(gen.size), "excluded_pairs": nex,
                     "fit": table["_fit"],
                     "closest_impostors": [{"distance": d, "a": paths[i], "b": paths[j]} for d, i, j in best]}
    print(f"\n[all lfw_dev] {imp.size} impostor pairs ({nex} excluded), {gen.size} genuine pairs; "
          f"tail fit: {table['_fit']}")
    print("closest impostor pairs:")
    for d, i, j in best:
        print(f"    {d:.4f}  {paths[i]:45s} {paths[j]}")
    excl_note = (f" {nex} pairs dropped as the same person by eye (LFW label errors, or an image whose largest "
                 f"face is someone else): " + "; ".join(f"{x} ~ {y}" for x, y, _ in SAME_PERSON) + "." if nex else "")
    out = {
        "model": MODEL,
        "metric": "euclidean",
        "definition": ("FMR(d) = share of impostor pairs (different people) with distance <= d; log10(FMR) is "
                       "linear in distance between points. Similarity = 40 - 10*log10(FMR) for FMR <= 1e-2 "
                       "(clipped to 100 at FMR <= 1e-6), 60*(1-FMR)/(1-1e-2) for FMR > 1e-2."),
        "source": (f"bench/calibrate_similarity.py on lfw_dev (LFW deep-funneled subset, {len(paths)} images of "
                   f"{len(all_ids)} people, {len(failures)} failures to enrol), all {imp.size} impostor pairs; "
                   f"default_engine() detector {DETECTOR}, largest face, "
                   f"landmarks {LANDMARKS}, embedder {MODEL}. Empirical quantiles down to FMR 1e-5; below that a "
                   f"straight line in log10(FMR) through the 1e-5 point, slope fitted down to FMR "
                   f"{10 ** table['_fit']['fit_range_log10_fmr'][1]:.2g} ({MIN_TAIL_COUNT} pairs), extrapolated "
                   f"to 10^{TABLE_END_LOG10}." + excl_note),
        "impostor_pairs": int(imp.size),
        "distance": table["distance"],
        "log10_fmr": table["log10_fmr"],
    }
    TABLE_OUT.parent.mkdir(parents=True, exist_ok=True)
    TABLE_OUT.write_text(json.dumps(out, indent=None, separators=(",", ":")) + "\n")
    print(f"[calibrate] wrote {TABLE_OUT.relative_to(ROOT)} ({len(out['distance'])} points, "
          f"{TABLE_OUT.stat().st_size} bytes)")
    print("\n[shipped table: thresholds]")
    report["shipped_thresholds"] = []
    for s, bt in zip(LEVELS, all_boot):
        thr = scale.max_distance(s)
        k = int((imp <= thr).sum())
        g = int((gen <= thr).sum())
        report["shipped_thresholds"].append({"similarity": s, "distance": thr, "nominal_fmr": scale.fmr(s),
                                             "in_sample_fmr": _fmt_ci(k, imp.size),
                                             "fmr_identity_bootstrap_ci95": bt, "tar_all": _fmt_ci(g, gen.size)})
        print(f"{s:>4} dist<={thr:.4f} nominal {scale.fmr(s):.3g}  in-sample {k}/{imp.size}={k / imp.size:.3g}  "
              f"identity-bootstrap 95% [{bt[0]:.2g}, {bt[1]:.2g}]  TAR(all mated) {g / gen.size:.4f}")

    # --- pairs_dev ----------------------------------------------------------------------
    pairs = read_pairs(data / "pairs_dev.txt")
    pos = {p: k for k, p in enumerate(paths)}
    pd_rows, missing = [], 0
    for f, same, a, b in pairs:
        if a not in pos or b not in pos:
            missing += 1
            continue
        pd_rows.append((f, same, float(np.linalg.norm(X[pos[a]] - X[pos[b]])), a, b))
    fold = np.array([r[0] for r in pd_rows])
    is_same = np.array([r[1] for r in pd_rows])
    dist = np.array([r[2] for r in pd_rows])
    flagged = [r for r in pd_rows if not r[1] and is_excluded(r[3], r[4])]
    acc = ((dist <= 0.6) == is_same)
    fold_acc = np.array([acc[fold == f].mean() for f in np.unique(fold)])
    report["pairs_dev"] = {"pairs": len(pairs), "missing_fte": missing, "matched": int(is_same.sum()),
                           "mismatched": int((~is_same).sum()),
                           "accuracy_at_0.6": float(acc.mean()), "fold_accuracy_mean": float(fold_acc.mean()),
                           "fold_accuracy_std": float(fold_acc.std(ddof=1)),
                           "mismatched_pairs_flagged_same_person": [[r[3], r[4]] for r in flagged],
                           "thresholds": []}
    print(f"\n[pairs_dev] {len(pairs)} pairs, {missing} skipped (failure to enrol); accuracy at distance 0.6: "
          f"{acc.mean():.4f} (10 folds {fold_acc.mean():.4f} +- {fold_acc.std(ddof=1):.4f}); "
          f"TAR@0.6 {(dist[is_same] <= 0.6).mean():.4f}, FMR@0.6 {(dist[~is_same] <= 0.6).mean():.4f}")
    for s in LEVELS:
        thr = scale.max_distance(s)
        k = int((dist[~is_same] <= thr).sum())
        g = int((dist[is_same] <= thr).sum())
        r = {"similarity": s, "distance": thr, "fmr": _fmt_ci(k, int((~is_same).sum())),
             "tar": _fmt_ci(g, int(is_same.sum()))}
        report["pairs_dev"]["thresholds"].append(r)
        lo, hi = r["fmr"]["ci95"]
        print(f"{s:>4} dist<={thr:.4f}  FMR {k}/{(~is_same).sum()} [{lo:.2g}, {hi:.2g}]  "
              f"TAR {g}/{is_same.sum()} = {g / is_same.sum():.4f}  FNMR {1 - g / is_same.sum():.4f}")
    # --- by perceived group (a PROXY: another library's race predictions, majority per identity) -------
    proxy = data.parent / "lfw_deepface_race_predictions" / "lfw_deepface_race_per_identity_majority.csv"
    if proxy.exists():
        import csv

        with open(proxy, newline="") as fh:
            race = {row["person"]: row["majority_race"] for row in csv.DictReader(fh)}
        groups = np.array([race.get(p, "unknown") for p in persons])
        report["by_predicted_group"] = []
        print("\n[within-group impostor pairs at the shipped thresholds; group = DeepFace-predicted race, "
              "majority per identity: a proxy, not ground truth]")
        for g in sorted(set(groups.tolist()), key=lambda g: -(groups == g).sum()):
            idx = np.nonzero(groups == g)[0]
            if np.unique(labels[idx]).size < 20:
                continue
            gi, gg, _, _ = pair_distances(X[idx], labels[idx], [paths[i] for i in idx], closest=0)
            row = {"group": g, "identities": int(np.unique(labels[idx]).size), "images": int(idx.size),
                   "impostor_pairs": int(gi.size), "genuine_pairs": int(gg.size)}
            txt = []
            for s in (70, 80, 90, 99):
                thr = scale.max_distance(s)
                k = int((gi <= thr).sum())
                row[f"fmr_at_{s}"] = _fmt_ci(k, gi.size)
                row[f"tar_at_{s}"] = float((gg <= thr).mean()) if gg.size else None
                txt.append(f"{s}: FMR {k}/{gi.size}={k / gi.size:.2g} ({k / gi.size / scale.fmr(s):.1f}x)"
                           + (f" TAR {(gg <= thr).mean():.3f}" if gg.size else ""))
            report["by_predicted_group"].append(row)
            print(f"  {g:16s} {row['identities']:5d} ids {idx.size:5d} imgs  " + "; ".join(txt))
    REPORT_OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n[calibrate] full report: {REPORT_OUT.relative_to(ROOT)}")


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["embed", "calibrate", "all"])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="lfw_dev folder")
    ap.add_argument("--splits", type=int, default=10, help="extra identity half-splits to measure the spread")
    ap.add_argument("--face-model", default=None, help="face model to calibrate (default: the default engine's)")
    args = ap.parse_args(argv)
    global CACHE, DETECTOR, DIM, LANDMARKS, MODEL, TABLE_OUT
    eng = Embedder(args.face_model).engine
    DETECTOR = eng.detector.name
    LANDMARKS = eng.landmarks.name
    DIM = eng.dim
    MODEL = eng.model_version
    TABLE_OUT = TABLE_OUT.with_name(f"similarity-{MODEL}.json")
    CACHE = ROOT / ".cache" / f"lfw_dev_{eng.detector.name}_{eng.embedder.name}.npz"
    print(f"[engine] detector {eng.detector.name}, landmarks {eng.landmarks.name}, embedder "
          f"{eng.embedder.name}; cache {CACHE.relative_to(ROOT)}", flush=True)
    if args.step in ("embed", "all"):
        cmd_embed(args.data)
    if args.step in ("calibrate", "all"):
        cmd_calibrate(args.data, args.splits)


if __name__ == "__main__":
    main()
