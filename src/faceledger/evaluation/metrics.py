"""Error rates of a face matcher, pure numpy (no I/O, no faceledger imports).

Scores are *distances* (smaller = more alike); a pair or candidate is accepted at threshold ``t`` when
``distance <= t``. Vocabulary (ISO/IEC 19795-1, NIST FRVT/FRTE):

* verification: genuine (mated) and impostor (non-mated) pairs; FMR/FAR = share of impostor pairs
  accepted, FNMR = share of genuine pairs rejected, TAR = 1 - FNMR;
* identification (1:N): FPIR = share of non-mated searches that return any candidate; FNIR = share of
  mated searches whose mate is not returned;
* demographic differential (NISTIR 8280): for a rate measured per group at one threshold, the ratio of
  the highest to the lowest group rate.

Every rate comes with its count and an exact (Clopper-Pearson) 95% interval.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# ---------------------------------------------------------------------------- intervals


def _betacf(a: float, b: float, x: float, itmax: int = 100_000, eps: float = 1e-14) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, itmax + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        de = d * c
        h *= de
        if abs(de - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def _beta_ppf(q: float, a: float, b: float) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(200):  # bisection in log space when small
        mid = math.sqrt(lo * hi) if lo > 0 and hi / max(lo, 1e-300) > 10 else 0.5 * (lo + hi)
        if lo == 0.0:
            mid = hi / 16.0 if hi > 1e-300 else 0.0
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1-alpha) interval for a binomial proportion k/n."""
    k, n = int(k), int(n)
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got {k}, {n}")
    lower = 0.0 if k == 0 else _beta_ppf(alpha / 2, k, n - k + 1)
    upper = 1.0 if k == n else _beta_ppf(1 - alpha / 2, k + 1, n - k)
    return (lower, upper)


def rate(k: int, n: int) -> dict:
    """``{"k", "n", "rate", "ci95"}`` (rate None when n is 0)."""
    lo, hi = clopper_pearson(k, n)
    return {"k": int(k), "n": int(n), "rate": (k / n) if n else None, "ci95": [lo, hi]}


# ---------------------------------------------------------------------------- distances


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)) in float64."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


def pair_distances(vectors: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Distance of each index pair (k, 2) in ``vectors``."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    v = np.asarray(vectors, np.float64)
    return np.sqrt(((v[pairs[:, 0]] - v[pairs[:, 1]]) ** 2).sum(1))


def all_pairs(labels: Sequence, *, block: int = 2048, vectors: np.ndarray | None = None):
    """Genuine and impostor distances over all unordered pairs of ``vectors`` (labels: identities)."""
    labels = np.asarray(labels)
    v = np.asarray(vectors, np.float64)
    gen, imp = [], []
    n = len(labels)
    for s in range(0, n, block):
        d = pairwise_distances(v[s:s + block], v[s:])
        rows = np.arange(s, min(n, s + block))[:, None]
        cols = np.arange(s, n)[None, :]
        upper = cols > rows
        same = labels[s:s + block][:, None] == labels[s:][None, :]
        gen.append(d[upper & same].astype(np.float32))
        imp.append(d[upper & ~same].astype(np.float32))
    return (np.concatenate(gen) if gen else np.zeros(0, np.float32),
            np.concatenate(imp) if imp else np.zeros(0, np.float32))


# ---------------------------------------------------------------------------- verification


def accepted(distances: np.ndarray, threshold: float) -> int:
    return int((np.asarray(distances) <= threshold).sum())


def ten_fold_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    """LFW protocol: for each fold, the threshold with the best accuracy on the other folds, tested on it.

    Every pair is decided, as the standard protocol requires: a pair whose distance is not finite (``inf``:
    one of its images gave no face, a *failure to enrol*) is decided "different" (right for a mismatched
    pair, an error for a matched one); thresholds are chosen among the finite distances. ``mean``, ``std``
    and ``folds`` are that (the headline); with the same thresholds, ``enrolled`` is the accuracy over the
    pairs whose images both enrolled (failures left out: the figure before this rule) and ``fte_as_error``
    counts every pair with a failure to enrol as an error (the strictest reading).
    """
    d = np.asarray(distances, np.float64)
    same = np.asarray(same, bool)
    folds = np.asarray(folds)
    enrolled = np.isfinite(d)
    per_fold, thresholds, only_enrolled, strict = [], [], [], []
    for f in np.unique(folds):
        train, test = (folds != f) & enrolled, folds == f
        t = best_threshold(d[train], same[train])
        thresholds.append(t)
        correct = (np.where(enrolled[test], d[test], np.inf) <= t) == same[test]
        per_fold.append(float(correct.mean()))
        e = enrolled[test]
        only_enrolled.append(float(correct[e].mean()) if e.any() else float("nan"))
        strict.append(float((correct & e).mean()))

    def summary(values: list[float]) -> dict:
        acc = np.array(values)
        return {"mean": float(np.nanmean(acc)) if acc.size else float("nan"),
                "std": float(np.nanstd(acc, ddof=1)) if np.isfinite(acc).sum() > 1 else 0.0, "folds": values}

    return {**summary(per_fold), "thresholds": [float(t) for t in thresholds],
            "pairs": int(d.size), "failures_to_enrol": int((~enrolled).sum()),
            "failures_to_enrol_matched": int((~enrolled & same).sum()),
            "enrolled": summary(only_enrolled), "fte_as_error": summary(strict)}


def best_threshold(d: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold (a midpoint between sorted scores) with the highest accuracy; ties: the
    middle one of the best run."""
    order = np.argsort(d, kind="stable")
    ds, ss = d[order], same[order]
    # accepting the first i pairs (threshold between ds[i-1] and ds[i]): correct = genuine in [:i] + impostors after
    gen_cum = np.concatenate([[0], np.cumsum(ss)])
    imp_total = int((~ss).sum())
    imp_cum = np.concatenate([[0], np.cumsum(~ss)])
    correct = gen_cum + (imp_total - imp_cum)
    # only cut between distinct values
    valid = np.ones(ds.size + 1, bool)
    valid[1:-1] = ds[1:] > ds[:-1]
    correct = np.where(valid, correct, -1)
    best = np.flatnonzero(correct == correct.max())
    i = int(best[len(best) // 2])
    if i == 0:
        return float(ds[0] - 1e-9) if ds.size else 0.0
    if i == ds.size:
        return float(ds[-1])
    return float(0.5 * (ds[i - 1] + ds[i]))


def roc(genuine: np.ndarray, impostor: np.ndarray, max_points: int | None = 2000) -> dict:
    """FMR and FNMR at every distinct score (thresholds ascending), thinned to ``max_points`` for plots."""
    g = np.sort(np.asarray(genuine, np.float64))
    i = np.sort(np.asarray(impostor, np.float64))
    t = np.unique(np.concatenate([g, i]))
    fmr = np.searchsorted(i, t, side="right") / max(i.size, 1)
    fnmr = 1.0 - np.searchsorted(g, t, side="right") / max(g.size, 1)
    if max_points and t.size > max_points:
        # keep points evenly spaced in log FMR, plus the ends
        with np.errstate(divide="ignore"):
            lf = np.log10(np.maximum(fmr, 1e-12))
        grid = np.linspace(lf.min(), lf.max(), max_points)
        idx = np.unique(np.concatenate([[0, t.size - 1], np.searchsorted(lf, grid).clip(0, t.size - 1)]))
        t, fmr, fnmr = t[idx], fmr[idx], fnmr[idx]
    return {"threshold": t, "fmr": fmr, "fnmr": fnmr, "tar": 1.0 - fnmr}


def eer(genuine: np.ndarray, impostor: np.ndarray) -> dict:
    """Equal error rate: where FMR(t) = FNMR(t), linearly interpolated between distinct scores."""
    r = roc(genuine, impostor, max_points=None)
    t, fmr, fnmr = r["threshold"], r["fmr"], r["fnmr"]
    diff = fmr - fnmr  # increasing in t
    k = int(np.searchsorted(diff, 0.0, side="left"))
    if k >= t.size:
        return {"eer": float(fnmr[-1]), "threshold": float(t[-1])}
    if diff[k] == 0.0 or k == 0:
        return {"eer": float(0.5 * (fmr[k] + fnmr[k])), "threshold": float(t[k])}
    # crossing between k-1 (fmr < fnmr) and k (fmr > fnmr)
    a, b = diff[k - 1], diff[k]
    w = -a / (b - a)
    e = (1 - w) * fmr[k - 1] + w * fmr[k]
    e2 = (1 - w) * fnmr[k - 1] + w * fnmr[k]
    return {"eer": float(0.5 * (e + e2)), "threshold": float((1 - w) * t[k - 1] + w * t[k])}


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> dict:
    """TAR at the loosest threshold whose FAR is at most ``far`` on these impostors.

    With n impostor pairs the threshold admits at most floor(far*n) of them; when far*n < 1 the target
    cannot be measured (``measurable`` false: the threshold is below every impostor).
    """
    g = np.asarray(genuine, np.float64)
    i = np.sort(np.asarray(impostor, np.float64))
    n = i.size
    allowed = int(math.floor(far * n + 1e-9))
    if allowed >= n:
        threshold = math.inf
        far_k = n
        tar_k = g.size
    else:
        cut = i[allowed]  # accept strictly below the (allowed+1)-th smallest impostor
        far_k = int(np.searchsorted(i, cut, side="left"))
        tar_k = int((g < cut).sum())
        below = i[far_k - 1] if far_k > 0 else (g[g < cut].max() if tar_k else cut)
        threshold = float(0.5 * (below + cut)) if far_k > 0 or tar_k else float(cut)
        threshold = min(threshold, float(np.nextafter(cut, -np.inf)))
    return {"far_target": far, "measurable": far * n >= 1.0, "threshold": threshold,
            "tar": rate(tar_k, g.size), "far": rate(far_k, n)}


def rates_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> dict:
    """FMR and FNMR at one distance threshold."""
    g = np.asarray(genuine)
    i = np.asarray(impostor)
    return {"fmr": rate(accepted(i, threshold), i.size),
            "fnmr": rate(int(g.size - accepted(g, threshold)), g.size)}


# ---------------------------------------------------------------------------- identification


def search(gallery: np.ndarray, gallery_labels: Sequence, probes: np.ndarray, block: int = 1024):
    """Exhaustive 1:N search in blocks: yields (first probe index, distances of the block to the gallery)."""
    for s in range(0, len(probes), block):
        yield s, pairwise_distances(probes[s:s + block], gallery)


def identification(gallery: np.ndarray, gallery_labels: Sequence, mated: np.ndarray, mated_labels: Sequence,
                   nonmated: np.ndarray, thresholds: dict[str, float]) -> dict:
    """FNIR and FPIR at each named distance threshold; observed false matches.

    * a mated search is a *miss* (FNIR) when its mate's distance is above the threshold (the mate would
      not be in the candidate list); ``fnir_rank1`` also counts it a miss when another identity is closer;
    * a non-mated search is a false positive (FPIR) when any gallery face is within the threshold;
      ``false_matches`` is the number of (search, gallery face) pairs within it.
    """
    gl = np.asarray(gallery_labels)
    ml = np.asarray(mated_labels)
    mate_d, top_d_other, nonmated_top = [], [], []
    for s, d in search(gallery, gl, np.asarray(mated)):
        lab = ml[s:s + d.shape[0]]
        is_mate = gl[None, :] == lab[:, None]
        mate_d.append(np.where(is_mate, d, np.inf).min(1))
        top_d_other.append(np.where(is_mate, np.inf, d).min(1) if d.shape[1] else np.full(d.shape[0], np.inf))
    nm_counts = {name: [] for name in thresholds}
    for s, d in search(gallery, gl, np.asarray(nonmated)):
        nonmated_top.append(d.min(1) if d.shape[1] else np.full(d.shape[0], np.inf))
        for name, t in thresholds.items():
            nm_counts[name].append((d <= t).sum(1))
    mate_d = np.concatenate(mate_d) if mate_d else np.zeros(0)
    other = np.concatenate(top_d_other) if top_d_other else np.zeros(0)
    top = np.concatenate(nonmated_top) if nonmated_top else np.zeros(0)
    out = {"gallery_size": int(len(gl)), "mated_searches": int(mate_d.size), "nonmated_searches": int(top.size),
           "thresholds": {}}
    for name, t in thresholds.items():
        counts = np.concatenate(nm_counts[name]) if nm_counts[name] else np.zeros(0, int)
        miss = int((mate_d > t).sum())
        miss1 = int(((mate_d > t) | (other < mate_d)).sum())
        out["thresholds"][name] = {
            "distance": float(t),
            "fnir": rate(miss, mate_d.size),
            "fnir_rank1": rate(miss1, mate_d.size),
            "fpir": rate(int((top <= t).sum()), top.size),
            "false_matches": int(counts.sum()),
        }
    out["_mate_distance"] = mate_d
    out["_other_distance"] = other
    out["_nonmated_top"] = top
    return out


def fpir_fnir_curve(mate_distance: np.ndarray, nonmated_top: np.ndarray, points: int = 400) -> dict:
    """FNIR against FPIR over thresholds (for the DET-style identification plot)."""
    t = np.unique(np.quantile(np.concatenate([mate_distance, nonmated_top]), np.linspace(0, 1, points)))
    m = np.sort(mate_distance)
    nm = np.sort(nonmated_top)
    fnir = 1.0 - np.searchsorted(m, t, side="right") / max(m.size, 1)
    fpir = np.searchsorted(nm, t, side="right") / max(nm.size, 1)
    return {"threshold": t, "fpir": fpir, "fnir": fnir}


# ---------------------------------------------------------------------------- groups


def differential(rates: dict[str, float | None]) -> dict:
    """NISTIR 8280's differential: highest / lowest group rate (None rates ignored).

    ``ratio`` is None when fewer than two groups have a rate, and ``inf`` when the lowest is 0 while the
    highest is not (then read the counts: a zero count is often a small sample, not a zero rate).
    """
    vals = {g: r for g, r in rates.items() if r is not None}
    if len(vals) < 2:
        return {"ratio": None, "max_group": None, "min_group": None}
    hi_g = max(vals, key=lambda g: vals[g])
    lo_g = min(vals, key=lambda g: vals[g])
    hi, lo = vals[hi_g], vals[lo_g]
    ratio = (hi / lo) if lo > 0 else (math.inf if hi > 0 else 1.0)
    return {"ratio": ratio, "max_group": hi_g, "max": hi, "min_group": lo_g, "min": lo}


def within_group_pairs(labels: Sequence, groups: Sequence, vectors: np.ndarray, group: str, *,
                       max_impostors: int = 30_000_000, rng: np.random.Generator | None = None):
    """Genuine and impostor distances among the images of one group (NIST: impostors within the group)."""
    groups = np.asarray(groups)
    idx = np.flatnonzero(groups == group)
    labels = np.asarray(labels)[idx]
    v = np.asarray(vectors)[idx]
    if idx.size * (idx.size - 1) // 2 <= max_impostors:
        return all_pairs(labels, vectors=v)
    rng = rng or np.random.default_rng(0)  # too many: all genuine pairs, a uniform sample of impostor pairs
    a = rng.integers(0, idx.size, max_impostors)
    b = rng.integers(0, idx.size, max_impostors)
    keep = labels[a] != labels[b]
    imp = pair_distances(v, np.stack([a[keep], b[keep]], 1)).astype(np.float32)
    gi = [(x, y) for lab in np.unique(labels) for k, x in enumerate(np.flatnonzero(labels == lab))
          for y in np.flatnonzero(labels == lab)[k + 1:]]
    gen = pair_distances(v, np.array(gi, np.int64).reshape(-1, 2)).astype(np.float32)
    return gen, imp


def expected_false_matches(fmr: float, gallery_size: int, searches: int = 1) -> float:
    """Expected false matches: FMR at the threshold x faces searched x searches."""
    return float(fmr) * int(gallery_size) * int(searches)
