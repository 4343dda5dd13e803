"""Make 1:N search safe, part 2: which face model and which scoring rule (measurement).

The Congress-style split of lfw_dev used by ``faceledger eval identify --gallery-size 0 --nonmated 500``
(seed 0; the same as bench/identify_safety.py): ~500 identities held out as strangers (one search each),
a gallery of one image per remaining identity, mated probes = the second image of each gallery identity
that has one.  Every model sees the same faces: the default engine's largest face and its 5 landmarks.

For each descriptor / scoring rule it prints mated rank-1 at <= k false matches among the strangers
(k = 1, 2, 5, 10; the threshold is chosen AFTER the fact on the strangers' best scores: optimistic), and
LFW 10-fold verification accuracy on pairs_dev with the same scores.

Descriptors (all from one alignment of each face; "flip" = the mirrored chip's descriptor averaged in):
  dlib            dlib-resnet-v1, Euclidean distance as stored
  dlib-cos-flip   L2-normalised, flip-averaged, cosine
  faceres-pP      faceres (human-models), authors' preprocessing (BGR - ImageNet mean), 224 px chip
                  with dlib padding P, flip-averaged, cosine; --rgb adds the RGB 0-255 variant
  fusion pP wW    cosine of [sqrt(W) * dlib, faceres-pP] / sqrt(W + 1)  (= (W dlib + faceres)/(W + 1)), each
                  L2-normalised: faceledger-fusion-v1 is P 0.5, W 2; "+ flip": both flip-averaged
Scoring rules on top of the fusion: margin (answer only when the top identity beats the second by m),
cohort normalisation, whitening learned on the other half of identities (2-fold cross-fitting).

Landmarks and descriptors are cached in .cache/identify_safety/ (git-ignored); re-runs take seconds.

    python bench/identify_models.py [--paddings 0.25 0.5 0.75] [--weights 1 2 3] [--rgb]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from faceledger.evaluation import metrics as M
from faceledger.evaluation.datasets import person_of, read_pairs
from faceledger.evaluation.embed import embed_dataset, engine_key, list_images
from faceledger.evaluation.label_errors import same_person_mask
from faceledger.evaluation.run import _split_identify

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from identify_safety import top2  # noqa: E402  (best and second-best score per search)

CACHE = ROOT / ".cache" / "identify_safety"


def _progress(k, n, t0, what):
    if k % 200 == 0 or k == n:
        rate = k / max(time.monotonic() - t0, 1e-9)
        print(f"  {what}: {k}/{n}  {rate:.1f}/s  ETA {(n - k) / rate:.0f}s", file=sys.stderr, flush=True)


def landmarks(engine, dataset: Path, rels: list[str], workers: int) -> np.ndarray:
    """(n, 5, 2) landmarks of each image's largest face (the face the eval cache embedded)."""
    mv, det = engine_key(engine)
    f = CACHE / f"{dataset.name}-landmarks-{det}.npz"
    if f.exists():
        z = np.load(f)
        if z["paths"].tolist() == rels:
            return z["points"]
    from faceledger.vision import decode_image

    def one(rel):
        px = decode_image((dataset / rel).read_bytes()).pixels
        faces, shapes = engine._locate(px, 1)
        return shapes[0] if shapes else np.full((5, 2), np.nan)

    out = []
    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as ex:
        for k, pts in enumerate(ex.map(one, rels), 1):
            out.append(pts)
            _progress(k, len(rels), t0, "landmarks")
    pts = np.array(out)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(f, paths=np.array(rels, dtype=str), points=pts)
    return pts


def descriptors(key: str, chipper, net, dataset: Path, rels: list[str], pts: np.ndarray, *,
                mirror_too: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(plain, mirrored) raw descriptors for every image, cached under ``key`` (``mirror_too=False``: no
    mirrored ones, None, at half the cost)."""
    f = CACHE / f"{dataset.name}-{key}.npz"
    if f.exists():
        z = np.load(f)
        if z["paths"].tolist() == rels and (not mirror_too or z["mirror"].size):
            return z["plain"], (z["mirror"] if z["mirror"].size else None)
    from faceledger.vision import decode_image

    plain, mirror = [], []
    t0 = time.monotonic()
    B = 32
    for s in range(0, len(rels), B):
        chips = np.concatenate([chipper(decode_image((dataset / r).read_bytes()).pixels, [p])
                                for r, p in zip(rels[s:s + B], pts[s:s + B])])
        plain.append(net(chips))
        if mirror_too:
            mirror.append(net(np.ascontiguousarray(chips[:, :, ::-1])))
        _progress(min(s + B, len(rels)), len(rels), t0, key)
    plain = np.concatenate(plain)
    mirror = np.concatenate(mirror) if mirror_too else None
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(f, paths=np.array(rels, dtype=str), plain=plain, mirror=mirror if mirror_too else np.zeros(0))
    return plain, mirror


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rank1_at(Sm, mate_col, Sn, k, margin=None):
    tm, s1m, s2m = top2(Sm)
    tn, s1n, s2n = top2(Sn)
    ok = tm == mate_col
    cand = np.ones_like(s1n, bool)
    if margin is not None:
        ok &= (s1m - s2m) >= margin
        cand = (s1n - s2n) >= margin
    ns = np.sort(s1n[cand])[::-1]
    t = ns[k] if ns.size > k else -np.inf
    return float((ok & (s1m > t)).mean())


def lfw_accuracy(score_of, pairs_file: Path, pos: dict[str, int]) -> float:
    """LFW 10-fold accuracy on pairs_dev (faceledger.evaluation's own protocol: threshold chosen on 9 folds);
    pairs with a missing face count wrong (an infinite distance)."""
    pairs = read_pairs(pairs_file)
    d = np.array([-score_of(pos[p.a], pos[p.b]) if p.a in pos and p.b in pos else np.inf for p in pairs])
    return M.ten_fold_accuracy(d, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))["mean"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "lfw_dev")
    ap.add_argument("--nonmated", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--paddings", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    ap.add_argument("--rgb", action="store_true", help="also faceres on RGB 0-255 input (its JS host's)")
    args = ap.parse_args()

    from faceledger.vision import default_engine
    from faceledger.vision.dlib_models import aligned_chips
    from faceledger.vision.faceres import FaceresEmbedder
    from faceledger.vision.onnx_models import OnnxResNetEmbedder

    engine = default_engine()
    mv, det = engine_key(engine)
    emb = embed_dataset(args.dataset, list_images(args.dataset), engine=engine, progress=True)
    gal, mat, non = _split_identify(emb, 0, args.nonmated, args.seed)
    people = np.array([person_of(p) for p in emb.paths])
    print(f"engine {mv} / {det}; gallery {len(gal)} identities, {len(mat)} mated searches, "
          f"{len(non)} strangers", flush=True)
    pts = landmarks(engine, args.dataset, emb.paths, args.workers)
    dl = OnnxResNetEmbedder()
    Dp, Dm = descriptors(f"chipflip-{mv}-{det}", dl.chips, dl.embed_chips, args.dataset, emb.paths, pts)
    fr = FaceresEmbedder(flip=False)
    F = {}
    for p in args.paddings:
        F[p] = descriptors(f"faceres-p{p:g}-{det}", lambda im, l, p=p: aligned_chips(im, l, 224, p),
                           fr._raw, args.dataset, emb.paths, pts)
    if args.rgb:
        sess = fr._session()
        rgbnet = lambda c: sess.run([fr._output], {fr._input: c.astype(np.float32)})[0]  # noqa: E731
        F_rgb = descriptors(f"faceres-rgb-p{args.paddings[0]:g}-{det}",
                            lambda im, l: aligned_chips(im, l, 224, args.paddings[0]), rgbnet,
                            args.dataset, emb.paths, pts)

    G_id = people[gal]
    col = {p: k for k, p in enumerate(G_id)}
    mate_col = np.array([col[people[i]] for i in mat])
    pos = {p: i for i, p in enumerate(emb.paths)}
    pairs = args.dataset / "pairs_dev.txt"
    known = same_person_mask([emb.paths[i] for i in non], [emb.paths[i] for i in gal])
    print(f"known LFW label errors among strangers x gallery: {int(known.sum())} (not counted as false matches)")

    variants: dict[str, tuple[np.ndarray, str]] = {}
    variants["dlib (Euclidean, as face_recognition)"] = (Dp, "euclid")
    variants["dlib cos"] = (unit(Dp), "cos")
    dflip = unit(unit(Dp) + unit(Dm))
    variants["dlib cos + flip"] = (dflip, "cos")
    for p, (a, b) in F.items():
        variants[f"faceres p{p:g} (no flip)"] = (unit(a), "cos")
        variants[f"faceres p{p:g} + flip"] = (unit(unit(a) + unit(b)), "cos")
    if args.rgb:
        variants[f"faceres RGB 0-255 p{args.paddings[0]:g} + flip"] = (unit(unit(F_rgb[0]) + unit(F_rgb[1])), "cos")
    for p, (a, b) in F.items():
        fflip = unit(unit(a) + unit(b))
        for w in args.weights:
            variants[f"fusion p{p:g} w{w:g} + flip"] = (np.hstack([np.sqrt(w) * dflip, fflip]) / np.sqrt(w + 1), "cos")
            variants[f"fusion p{p:g} w{w:g}"] = (np.hstack([np.sqrt(w) * unit(Dp), unit(a)]) / np.sqrt(w + 1), "cos")

    ks = (1, 2, 5, 10)
    print(f"\n{'descriptor':34s} " + " ".join(f"{'k=' + str(k):>7s}" for k in ks) + "   LFW acc")
    results = {}
    for name, (V, kind) in variants.items():
        if kind == "euclid":
            sq = (V * V).sum(1)
            S = lambda A, B: -np.sqrt(np.maximum(sq[A][:, None] + sq[B][None, :] - 2 * V[A] @ V[B].T, 0))  # noqa: E731
            pair = lambda i, j: -float(np.linalg.norm(V[i] - V[j]))  # noqa: E731
        else:
            S = lambda A, B, V=V: V[A] @ V[B].T  # noqa: E731
            pair = lambda i, j, V=V: float(V[i] @ V[j])  # noqa: E731
        Sm, Sn = S(mat, gal), S(non, gal)
        Sn[known] = -np.inf  # a known LFW label error: the "stranger" is in the gallery under another name
        results[name] = (Sm, Sn)
        acc = lfw_accuracy(pair, pairs, pos)
        print(f"{name:34s} " + " ".join(f"{rank1_at(Sm, mate_col, Sn, k):7.3f}" for k in ks) + f"   {acc:.4f}",
              flush=True)
    best = max((n for n in results if n.startswith("fusion")), key=lambda n: rank1_at(*results[n][:1], mate_col,
                                                                                      results[n][1], 1), default=None)
    if best:
        Sm, Sn = results[best]
        print(f"\nmargin rule on {best}:")
        for m in (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04):
            print(f"  margin {m:.3f}: " + " ".join(f"{rank1_at(Sm, mate_col, Sn, k, margin=m):7.3f}" for k in ks))
        tn, s1n, _ = top2(Sn)
        o = np.argsort(-s1n)[:6]
        print("  closest strangers (check by eye): " + "; ".join(
            f"{emb.paths[non[j]]} -> {emb.paths[gal[tn[j]]]} ({s1n[j]:.4f})" for j in o))
    np.savez(CACHE / "last_split.npz", gal=gal, mat=mat, non=non)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
