"""Make 1:N search safe: how much do cosine, mirrored-face averaging and a margin rule help? (measurement only)

Congress-style split of lfw_dev, the same as ``faceledger eval identify --gallery-size 0 --nonmated 500``
(seed 0): ~500 identities held out as strangers (one search each), a gallery of one image per remaining
identity, mated probes = the second image of each gallery identity that has one.

For each scoring variant it prints
* mated rank-1 identification rate at <= 1 false match among the strangers (threshold chosen AFTER the fact
  on the strangers' best scores: optimistic, an upper bound of what a fixed threshold would give);
* for (a), the service's own figures at the default Similarity 80 (FNIR, FPIR), for reference;
* for (b)-(d), FPIR at the distance of Similarity 80 mapped to cosine by the same FMR on impostor pairs
  (see ``_matched_fmr_threshold``) - the packaged table only knows Euclidean distances.

Variants:
  (a) current pipeline: Euclidean distance on dlib-resnet-v1 vectors as stored
  (b) L2-normalised vectors, cosine similarity
  (c) (b) with the horizontally mirrored image's embedding averaged in (flip decoded pixels, analyze, largest
      face), then re-normalised
  (d) (c) plus a margin rule: a search answers its top identity only when its score beats the second-best
      identity's by >= margin; best margin on a coarse grid (in-sample selection)

Unflipped embeddings come from the faceledger eval cache ($FACELEDGER_CACHE or ~/.cache/faceledger/embeddings);
mirrored ones are cached in .cache/identify_safety/ (git-ignored). Re-runs take seconds.

    python bench/identify_safety.py [--dataset ../shared/data/lfw_dev] [--nonmated 500] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from faceledger.evaluation.datasets import person_of
from faceledger.evaluation.embed import embed_dataset, list_images, engine_key
from faceledger.evaluation.run import DEFAULT_THRESHOLD, _split_identify

ROOT = Path(__file__).resolve().parents[1]


def flipped_embeddings(engine, dataset: Path, rels: list[str], cache: Path, workers: int) -> dict[str, np.ndarray | None]:
    from faceledger.vision import ImageError, decode_image

    cache.parent.mkdir(parents=True, exist_ok=True)
    have: dict[str, np.ndarray | None] = {}
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        for p, v in zip(z["paths"].tolist(), z["vectors"]):
            have[p] = v
        for p in z["fail"].tolist():
            have[p] = None
    todo = [r for r in rels if r not in have]

    def save():
        ok = [(p, v) for p, v in have.items() if v is not None]
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, paths=np.array([p for p, _ in ok], dtype=str),
                 vectors=np.array([v for _, v in ok], np.float32).reshape(-1, 128),
                 fail=np.array([p for p, v in have.items() if v is None], dtype=str))
        os.replace(tmp, cache)

    def one(rel):
        try:
            px = decode_image((dataset / rel).read_bytes()).pixels
        except ImageError:
            return rel, None
        faces = engine.analyze(np.ascontiguousarray(px[:, ::-1]), embed=True, max_faces=1)
        return rel, (None if not faces else np.asarray(faces[0].embedding, np.float32))

    if todo:
        t0 = last = time.monotonic()
        with ThreadPoolExecutor(workers) as ex:
            for k, (rel, v) in enumerate(ex.map(one, todo), 1):
                have[rel] = v
                now = time.monotonic()
                if k % 100 == 0 or k == len(todo):
                    rate = k / (now - t0)
                    print(f"  mirrored: {k}/{len(todo)}  {rate:.1f} img/s  ETA {(len(todo) - k) / rate:.0f}s",
                          file=sys.stderr, flush=True)
                if now - last > 30:
                    save()
                    last = now
        save()
    return {r: have[r] for r in rels}


def l2n(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def scores_matrix(G, P, kind):
    """Higher = more alike. Euclidean is returned negated."""
    if kind == "euclid":
        d2 = (P * P).sum(1)[:, None] + (G * G).sum(1)[None, :] - 2 * P @ G.T
        return -np.sqrt(np.maximum(d2, 0))
    return P @ G.T


def top2(S):
    idx = np.argpartition(-S, 1, axis=1)[:, :2]
    a = np.take_along_axis(S, idx, 1)
    order = np.argsort(-a, axis=1)
    a = np.take_along_axis(a, order, 1)
    idx = np.take_along_axis(idx, order, 1)
    return idx[:, 0], a[:, 0], a[:, 1]


def evaluate(S_mat, mate_col, S_non, margin=None, max_false=1):
    """Rank-1 rate at <= max_false strangers answered (threshold on top score chosen after the fact)."""
    top_m, s1_m, s2_m = top2(S_mat)
    top_n, s1_n, s2_n = top2(S_non)
    ok_m = top_m == mate_col
    if margin is not None:
        ok_m &= (s1_m - s2_m) >= margin
        cand_n = (s1_n - s2_n) >= margin
    else:
        cand_n = np.ones_like(s1_n, bool)
    ns = np.sort(s1_n[cand_n])[::-1]
    # threshold: answer when score > t; t = the (max_false+1)-th highest eligible stranger score
    t = ns[max_false] if ns.size > max_false else -np.inf
    hits = ok_m & (s1_m > t)
    fp = int((s1_n[cand_n] > t).sum())
    return float(hits.mean()), int(hits.sum()), fp, float(t)


def fpir_at(S_non, t):
    return int((S_non.max(1) > t).sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "lfw_dev")
    ap.add_argument("--nonmated", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from faceledger.vision import default_engine
    from faceledger.vision.similarity import SimilarityScale

    engine = default_engine()
    mv, det = engine_key(engine)
    print(f"engine: {mv} / {det}", flush=True)
    emb = embed_dataset(args.dataset, list_images(args.dataset), engine=engine, progress=True)
    gal, mat, non = _split_identify(emb, 0, args.nonmated, args.seed)
    people = np.array([person_of(p) for p in emb.paths])
    print(f"gallery {len(gal)} identities, {len(mat)} mated searches, {len(non)} strangers "
          f"({len(emb.failures)} failures to enrol)", flush=True)

    need = [emb.paths[i] for i in gal + mat + non]
    flip = flipped_embeddings(engine, args.dataset, need,
                              ROOT / ".cache" / "identify_safety" / f"{args.dataset.name}-mirrored-{mv}-{det}.npz",
                              args.workers)
    X = emb.vectors
    pos = {p: i for i, p in enumerate(emb.paths)}
    nflipfail = sum(1 for r in need if flip[r] is None)
    XF = X.copy()
    for r in need:
        if flip[r] is not None:
            XF[pos[r]] = flip[r]
    # a mirrored image without a face keeps its unflipped vector (counted below)

    G_id = people[gal]
    col = {p: k for k, p in enumerate(G_id)}
    mate_col = np.array([col[people[i]] for i in mat])

    scale = SimilarityScale.load(mv)
    d80 = scale.max_distance(DEFAULT_THRESHOLD)
    fmr80 = scale.fmr(DEFAULT_THRESHOLD)

    Xn = l2n(X)
    Xc = l2n(l2n(X) + l2n(XF))
    variants = {
        "(a) euclidean, as stored": (X, "euclid"),
        "(b) L2-norm + cosine": (Xn, "cos"),
        "(c) (b) + mirrored average": (Xc, "cos"),
    }
    # impostor pairs among the gallery (different identities) to map Similarity 80's FMR onto each score
    rng = np.random.default_rng(1)
    ia = rng.integers(0, len(gal), 400000)
    ib = rng.integers(0, len(gal), 400000)
    keep = ia != ib
    ia, ib = np.asarray(gal)[ia[keep]], np.asarray(gal)[ib[keep]]

    print(f"\nSimilarity {DEFAULT_THRESHOLD:.0f} = Euclidean distance {d80:.4f} (nominal FMR {fmr80:.1e})")
    print(f"mirrored images with no face found: {nflipfail} of {len(need)} (they keep the unflipped vector)\n")
    rows = []
    results = {}
    t80s: dict[str, float] = {}
    for name, (V, kind) in variants.items():
        Sm = scores_matrix(V[gal], V[mat], kind)
        Sn = scores_matrix(V[gal], V[non], kind)
        r, hits, fp, t = evaluate(Sm, mate_col, Sn)
        if kind == "euclid":
            t80 = -d80
            label = "Sim 80"
        else:
            imp = (V[ia] * V[ib]).sum(1)
            t80 = float(np.quantile(imp, 1 - fmr80))  # same impostor FMR as Similarity 80
            label = "FMR-matched Sim 80"
        fp80 = fpir_at(Sn, t80)
        top_m, s1_m, _ = top2(Sm)
        fnir80 = 1 - float(((top_m == mate_col) & (s1_m > t80)).mean())
        results[name] = (Sm, Sn)
        t80s[name] = t80
        thr = f"{-t:.4f} dist" if kind == "euclid" else f"{t:.4f} cos"
        rows.append((name, r, hits, fp, thr, fp80, fnir80, label))
    # (d) margin on top of (c)
    Sm, Sn = results["(c) (b) + mirrored average"]
    best = None
    best2 = None
    for m in [0.0, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04]:
        r, hits, fp, t = evaluate(Sm, mate_col, Sn, margin=m)
        r2, hits2, fp2, t2 = evaluate(Sm, mate_col, Sn, margin=m, max_false=2)
        print(f"  margin {m:.4f}: rank-1 {r:.3f} ({hits}/{len(mat)}) at <=1 false (cos > {t:.4f}); "
              f"{r2:.3f} ({hits2}) at <=2 false (cos > {t2:.4f})")
        if best is None or r > best[1]:
            best = (m, r, hits, fp, t)
        if best2 is None or r2 > best2[1]:
            best2 = (m, r2, hits2, fp2, t2)
    print(f"  best margin at <=1 false: {best[0]:.4f}; at <=2 false: {best2[0]:.4f} (in-sample choices)")
    tc = t80s["(c) (b) + mirrored average"]
    for m, r, hits, fp, t in sorted({best, best2}):
        top_m, s1_m, s2_m = top2(Sm)
        top_n, s1_n, s2_n = top2(Sn)
        fp80 = int(((s1_n > tc) & (s1_n - s2_n >= m)).sum())
        fnir80 = 1 - float(((top_m == mate_col) & (s1_m > tc) & (s1_m - s2_m >= m)).mean())
        rows.append((f"(d) (c) + margin {m:.4f} (in-sample)", r, hits, fp, f"{t:.4f} cos", fp80, fnir80,
                     "FMR-matched Sim 80 + margin"))

    print(f"\n{'variant':40s} {'rank-1 @<=1 FM/' + str(len(non)):>18s} {'FM':>3s} {'threshold':>14s}   at Sim 80")
    for name, r, hits, fp, thr, fp80, fnir80, label in rows:
        extra = "" if fp80 is None else f"FPIR {fp80}/{len(non)} = {fp80 / len(non):.3f}, FNIR {fnir80:.3f} ({label})"
        print(f"{name:40s} {r:>10.3f} ({hits:3d}/{len(mat)}) {fp:>3d} {thr:>14s}   {extra}")
    print("\nrobustness (the <=1 point rests on the 2nd-best stranger): rank-1 at <= k false matches / "
          f"{len(non)} strangers")
    print(f"{'variant':40s} " + " ".join(f"{'k=' + str(k):>7s}" for k in (1, 2, 5, 10, 25)))
    for name, (Sm, Sn) in results.items():
        print(f"{name:40s} " + " ".join(f"{evaluate(Sm, mate_col, Sn, max_false=k)[0]:7.3f}" for k in (1, 2, 5, 10, 25)))
    for mm in sorted({best[0], best2[0]}):
        print(f"{'(d) (c) + margin ' + format(mm, '.4f'):40s} " +
              " ".join(f"{evaluate(Sm, mate_col, Sn, margin=mm, max_false=k)[0]:7.3f}" for k in (1, 2, 5, 10, 25)))
    for name, (Sm_, Sn_) in results.items():
        top_n, s1_n, _ = top2(Sn_)
        o = np.argsort(-s1_n)[:3]
        print(f"{name}: closest strangers: " + "; ".join(
            f"{people[non[j]]} -> {G_id[top_n[j]]} ({s1_n[j]:.4f})" for j in o))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
