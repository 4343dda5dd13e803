#!/usr/bin/env python3
"""How Similarity's false match rate moves on degraded photos, before and after the quality rules.

On a seeded sample of lfw_dev (``--people`` identities with 2+ images, two images each: one mated pair per
person, and every different-person pair as an impostor pair), each image is degraded the ways cameras
degrade faces (CONDITIONS: Gaussian blur, faces downscaled to 20-40 px, JPEG compression, sensor noise,
low light, a band over the eyes or the lower face), then run through the service's own pipeline
(``decode_image`` of the encoded photo, ``default_engine(face_model=M).analyze_many``, largest face) and
measured by ``faceledger.vision.face_quality``. For each condition, with both photos degraded and with one
sharp and one degraded, it prints:

* before: FMR and TAR at Similarity 80, 90, 99 of the model's shipped table (every face as the service
  scored it until now, QualityFilter NONE), and the FMR's ratio to nominal (flagged ``!`` over 3x);
* after: the faces AUTO now refuses (``service.quality`` / ``vision.face_quality.degradations``), and
  for the pairs searched anyway (QualityFilter NONE) FMR at the Similarity of the pair's quality band
  (``SimilarityScale.load(model, band)``), measured on the held-out half of the identities when the band
  tables are built here (``calibrate``).

Off-angle pose cannot be made from a frontal photo without a 3-D model, so it is not synthesised: the
``pose`` rows use LFW's own turned faces (sharp images with |yaw| >= POSE_YAW from the landmarks).

    python bench/degradation.py embed      [--face-model M] [--people 600]  # ~20k analyses, resumable
    python bench/degradation.py remeasure  [--face-model M]   # the quality measures again, not the vectors
    python bench/degradation.py calibrate  [--face-model M]   # band tables -> src/faceledger/data/
    python bench/degradation.py report     [--face-model M]   # before/after tables, JSON under .cache/
    python bench/degradation.py all        [--face-model M]
    python bench/degradation.py checkset   [--face-model M] [--images 100]  # COVERED: clean vs covered photos
    python bench/degradation.py tails      [--face-model M]   # the covered tables' tails compared
    python bench/degradation.py turned     [--face-model M]   # turned faces in degraded-one pairs

``--out DIR`` also writes the printed report and its JSON there.
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
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from calibrate_similarity import clopper_pearson, list_images, person_of  # noqa: E402

from faceledger.evaluation.degradations import CONDITIONS, as_camera_would, degrade  # noqa: E402
from faceledger.evaluation.label_errors import is_excluded  # noqa: E402

DEFAULT_DATA = (ROOT / ".." / "shared" / "data" / "lfw_dev").resolve()
if not DEFAULT_DATA.exists():
    DEFAULT_DATA = Path("/work/shared/data/lfw_dev")
SEED = 20261130
LEVELS = (80, 90, 99)
FLAG = 3.0
POSE_YAW = 20.0


# ----------------------------------------------------------------------------- embedding

def cache_dir(model: str) -> Path:
    return ROOT / ".cache" / f"degradation-{model}"


def sample(data: Path, people: int) -> list[str]:
    images = list_images(data)
    by = {}
    for rel in images:
        by.setdefault(person_of(rel), []).append(rel)
    multi = sorted(p for p, v in by.items() if len(v) >= 2)
    rng = np.random.default_rng(SEED)
    chosen = rng.choice(len(multi), size=min(people, len(multi)), replace=False)
    out = []
    for k in sorted(chosen):
        v = by[multi[k]]
        out.extend(v[i] for i in sorted(rng.choice(len(v), 2, replace=False)))
    return out


def cmd_embed(data: Path, model: str, people: int, reverse: bool = False, only: list[str] | None = None):
    from faceledger.vision import default_engine
    from faceledger.vision.face_quality import measure

    eng = default_engine(face_model=model)
    d = cache_dir(model)
    d.mkdir(parents=True, exist_ok=True)
    rels = sample(data, people)
    (d / "sample.json").write_text(json.dumps({"people": people, "seed": SEED, "images": rels}))
    sharp_faces: dict[str, object] = {}
    names = list(CONDITIONS) if not only else ["sharp"] + list(only)
    if reverse:  # a second process can take the list from the other end (claims keep them apart)
        names = names[:1] + names[:0:-1]
    sharp_npz = d / "sharp.npz"
    if sharp_npz.exists() and all(CONDITIONS[c][0] not in ("small", "occlude") for c in names[1:]):
        # these degradations need only to know that the sharp photo had a face, not where
        found = np.isfinite(np.load(sharp_npz)["vectors"][:, 0])
        sharp_faces = {rel: True for rel, ok in zip(rels, found) if ok}
        names = names[1:]
    for cname in names:
        kind, p = CONDITIONS[cname]
        out = d / f"{cname.replace(' ', '_')}.npz"
        claim = out.with_suffix(".claim")
        if cname != "sharp" and (out.exists() or claim.exists()):
            print(f"[embed] {cname}: cached or claimed", flush=True)
            continue
        if cname != "sharp":
            claim.write_text(str(os.getpid()))
        t0 = time.time()
        load = _loader(data, rels, cname, sharp_faces)
        vecs = np.full((len(rels), eng.dim), np.nan, np.float32)
        feats = np.full((len(rels), len(FEATURES)), np.nan, np.float64)
        points = np.full((len(rels), 5, 2), np.nan, np.float64)
        for k, faces in enumerate(eng.analyze_many(range(len(rels)), load=lambda k: _keep(k, load(k)),
                                                   max_faces=1)):
            if isinstance(faces, Exception):
                raise faces
            if not faces:
                continue
            f = faces[0]
            if kind == "none":
                sharp_faces[rels[k]] = f
            img = _kept.pop(k)
            det = f.detection
            q = measure(img, (det.left, det.top, det.right, det.bottom), f.points)
            points[k] = f.points
            vecs[k] = f.embedding
            feats[k] = [q.face_px, q.detail, q.noise, q.blockiness, q.contrast, q.flat, q.brightness,
                        f.quality.sharpness, det.confidence, f.pose.yaw, f.pose.pitch, f.pose.roll,
                        det.left, det.top, det.right, det.bottom]
            _kept.pop(k, None)
        _kept.clear()
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=vecs, features=feats, points=points)
        os.replace(tmp, out)
        if claim.exists():
            claim.unlink()
        ok = int(np.isfinite(vecs[:, 0]).sum())
        print(f"[embed] {cname}: {ok}/{len(rels)} faces, {time.time() - t0:.0f}s", flush=True)


_kept: dict[int, np.ndarray] = {}


def _keep(k: int, img: np.ndarray) -> np.ndarray:
    _kept[k] = img
    return img


def _loader(data: Path, rels: list[str], cname: str, sharp_faces: dict):
    """load(k): the k-th sample photo degraded as condition ``cname`` (deterministic: seeded by k and the
    condition), as the camera would send it; ``sharp_faces``: rel -> the sharp photo's FaceAnalysis (or True
    where the degradation needs only to know that it had a face)."""
    from faceledger.vision.image import decode_image

    kind, p = CONDITIONS[cname]

    def load(k):
        rel = rels[k]
        img = decode_image((data / rel).read_bytes()).pixels
        if kind == "none":
            return img
        face = sharp_faces.get(rel)
        if face is None:
            return np.zeros((100, 100, 3), np.uint8)  # no sharp face: nothing to degrade (counted as FTE)
        rng = np.random.default_rng([SEED, k, len(cname)])
        img = degrade(img, kind, p, face, rng)
        return img if kind == "jpeg" else as_camera_would(img)

    return load


def _stored_face(feat: np.ndarray, pts: np.ndarray):
    """The FaceAnalysis that a cached sharp face stands for (box and landmarks; what degrade() needs)."""
    from faceledger.vision import geometry
    from faceledger.vision.engine import Detection, FaceAnalysis, Pose, Quality

    det = Detection(*[float(x) for x in feat[12:16]], 0.0, float(feat[8]))
    return FaceAnalysis(det, geometry.landmark_dict(pts),
                        Pose(roll=float(feat[11]), yaw=float(feat[9]), pitch=float(feat[10])),
                        Quality(float(feat[6]), float(feat[7])), None, points=pts)


def cmd_remeasure(data: Path, model: str, redetect: bool = False):
    """Recompute the quality measures of every cached condition without embedding again (after a change to
    vision.face_quality): each photo is degraded again as ``embed`` did and measured on its cached box and
    landmarks; the vectors are kept. A cache without landmarks has them located on the cached box where the
    model's landmarks come from the box alone (dlib's 5-point model: faceledger-sface-v2), else (detector
    keypoints: faceledger-sface-v1; or ``redetect``) its largest face is located again (detection and
    landmarks: the box is checked against the cache). The landmarks are stored."""
    from faceledger.vision import default_engine
    from faceledger.vision.face_quality import measure

    eng = None
    d = cache_dir(model)
    rels = json.loads((d / "sample.json").read_text())["images"]
    sharp_faces: dict[str, object] = {}
    for cname in CONDITIONS:
        path = d / f"{cname.replace(' ', '_')}.npz"
        if not path.exists():
            continue
        t0 = time.time()
        z = np.load(path)
        vecs, feats = z["vectors"], z["features"].copy()
        has = np.isfinite(feats[:, 0])
        load = _loader(data, rels, cname, sharp_faces)
        moved = lost = 0
        cached = "points" in z.files and np.isfinite(z["points"][has, 0, 0]).all()
        if not (cached or redetect):
            eng = eng or default_engine(face_model=model)
        from_box = not cached and not redetect and not getattr(eng.landmarks, "use_keypoints", False)
        if (cached and not redetect) or from_box:
            from faceledger.vision.engine import Detection

            points = z["points"] if cached else np.full((len(rels), 5, 2), np.nan, np.float64)
            for k in np.nonzero(has)[0]:
                img = load(k)
                if from_box:
                    det = Detection(*[float(x) for x in feats[k, 12:16]], 0.0, float(feats[k, 8]))
                    points[k] = np.asarray(eng.landmarks.locate(img, det), dtype=np.float64)
                if cname == "sharp":
                    sharp_faces[rels[k]] = _stored_face(feats[k], points[k])
                q = measure(img, tuple(feats[k, 12:16]), points[k])
                feats[k, :7] = [q.face_px, q.detail, q.noise, q.blockiness, q.contrast, q.flat, q.brightness]
            how = "on the cached boxes and " + ("landmarks located on them" if from_box else "landmarks")
        else:
            eng = eng or default_engine(face_model=model)
            points = np.full((len(rels), 5, 2), np.nan, np.float64)
            for k, faces in enumerate(eng.analyze_many(range(len(rels)), load=lambda k: _keep(k, load(k)),
                                                       embed=False, max_faces=1)):
                if isinstance(faces, Exception):
                    raise faces
                img = _kept.pop(k, None)
                if not faces or not has[k]:
                    lost += bool(faces) != bool(has[k])
                    continue
                f = faces[0]
                if cname == "sharp":
                    sharp_faces[rels[k]] = f
                det = f.detection
                box = np.array([det.left, det.top, det.right, det.bottom])
                moved += not np.allclose(box, feats[k, 12:16], atol=0.5)
                q = measure(img, tuple(box), f.points)
                feats[k, :7] = [q.face_px, q.detail, q.noise, q.blockiness, q.contrast, q.flat, q.brightness]
                points[k] = f.points
            _kept.clear()
            how = f"located again: {moved} boxes moved, {lost} faces found only once"
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=vecs, features=feats, points=points)
        os.replace(tmp, path)
        print(f"[remeasure] {cname}: {int(has.sum())} faces measured again {how}, {time.time() - t0:.0f}s",
              flush=True)


FEATURES = ("face_px", "detail", "noise", "blockiness", "contrast", "flat", "brightness", "sharpness",
            "confidence", "yaw", "pitch", "roll", "left", "top", "right", "bottom")


def load_all(model: str):
    d = cache_dir(model)
    rels = json.loads((d / "sample.json").read_text())["images"]
    out = {}
    for cname in CONDITIONS:
        f = d / f"{cname.replace(' ', '_')}.npz"
        if f.exists():
            z = np.load(f)
            out[cname] = (z["vectors"].astype(np.float64), z["features"])
    return rels, out



# ----------------------------------------------------------------------------- pairs and bands

def measures_of(feat: np.ndarray):
    from faceledger.vision.face_quality import QualityMeasures

    return QualityMeasures(*[float(x) for x in feat[:7]])


def face_bands(feats: np.ndarray) -> np.ndarray:
    """Per face: 0 no face, 1 calibrated, 2 degraded, 3 covered (vision.face_quality.band)."""
    from faceledger.vision.face_quality import CALIBRATED, COVERED, band

    out = np.zeros(len(feats), np.int8)
    for k, f in enumerate(feats):
        if np.isfinite(f[0]):
            b = band(measures_of(f))
            out[k] = 1 if b == CALIBRATED else 3 if b == COVERED else 2
    return out


def pair_bands(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair of face bands (face_bands' codes): the index of its band in vision.face_quality.BANDS
    (vision.face_quality.pair_band: 0 calibrated, 1 degraded-one, 2 degraded-both, 3 covered-one,
    4 covered-both)."""
    out = (a >= 2).astype(np.int8) + (b >= 2)
    out[((a == 3) & (b == 1)) | ((a == 1) & (b == 3))] = 3
    out[(a == 3) & (b == 3)] = 4
    return out


def auto_refused(feats: np.ndarray) -> np.ndarray:
    """Per face: True where IndexFaces at QualityFilter AUTO refuses it (service.quality.failing_reasons)."""
    from faceledger.service.quality import failing_reasons
    from faceledger.vision.engine import Detection, FaceAnalysis, Pose, Quality

    out = np.ones(len(feats), bool)
    for k, f in enumerate(feats):
        if not np.isfinite(f[0]):
            continue
        m = measures_of(f)
        face = FaceAnalysis(Detection(0.0, 0.0, m.face_px, m.face_px, 0.0, float(f[8])), {},
                            Pose(roll=float(f[11]), yaw=float(f[9]), pitch=float(f[10])),
                            Quality(brightness=m.brightness, sharpness=float(f[7]), measures=m), None)
        out[k] = bool(failing_reasons(face, "AUTO"))
    return out


class Pairs:
    """Distances of the impostor and mated pairs of one condition, both photos degraded or one sharp."""

    def __init__(self, rels, labels, A, B, ok_a, ok_b, ordered: bool):
        """Pairs (i from A, j from B); ``ordered``: A and B are different photos sets (all i != j pairs,
        both orders), else A is B (i < j)."""
        n = len(rels)
        ia, ib = np.nonzero(ok_a)[0], np.nonzero(ok_b)[0]
        a, b = A[ia], B[ib]
        D = np.sqrt(np.maximum(0.0, (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)))
        I, J = np.meshgrid(ia, ib, indexing="ij")
        keep = (I != J) if ordered else (I < J)
        same = labels[I] == labels[J]
        excl = np.zeros_like(keep)
        for x, y in zip(*np.nonzero(keep & ~same & (D < 0.75 * np.median(D)))):
            excl[x, y] = is_excluded(rels[I[x, y]], rels[J[x, y]])
        imp = keep & ~same & ~excl
        gen = keep & same
        self.imp_d, self.imp_i, self.imp_j = D[imp], I[imp], J[imp]
        self.gen_d, self.gen_i, self.gen_j = D[gen], I[gen], J[gen]


def rate_row(d: np.ndarray, thresholds) -> list[tuple[int, int]]:
    return [(int((d <= t).sum()), int(d.size)) for t in thresholds]


def band_table(base, arrays: list[np.ndarray], min_pairs: int = 100_000, tail: str = "fit") -> dict:
    """A Similarity table for a band of degraded pairs: at each FMR, the smallest distance of the base table
    and of every condition's impostor quantile (the worst condition sets it), so that a degraded pair's
    Similarity never states a lower FMR than any measured degradation gives.

    Each condition counts down to the FMR where it still has 20 pairs; the measured part ends where the
    thinnest condition with ``min_pairs`` pairs does (every such condition counts at every point); below, a straight line in log10 FMR fitted to the
    last measured decade, to FMR 1e-9 (as calibrate_similarity.build_table); ``tail="zero"``: no steeper
    than the straight line from the last measured point to FMR 1e-9 at distance 0 (claims no FMR below the
    measured ones that the distance does not earn: a cautious tail for the band whose tail is heaviest)."""
    from calibrate_similarity import _quantile_distance

    arrays = [np.sort(a) for a in arrays if a.size >= 2_000]
    if not any(a.size >= min_pairs for a in arrays):
        raise SystemExit("no condition has enough degraded impostor pairs for a band table")
    # each condition counts down to the FMR where it still has 20 pairs; the table's measured part ends
    # where the thinnest of the conditions with min_pairs pairs stops (all of those count at every point)
    depth = [math.log10(20 / a.size) for a in arrays]
    stop = max(dp for dp, a in zip(depth, arrays) if a.size >= min_pairs)
    grid = np.round(np.arange(0.0, stop - 1e-9, -0.05), 4)
    grid = np.append(grid, round(stop, 4))

    def env(L):
        return min([float(base.distance_at_log10_fmr(L))]
                   + [_quantile_distance(a, L) for a, dp in zip(arrays, depth) if L >= dp - 1e-9])

    body_d = np.array([env(L) for L in grid])
    body_d = np.minimum.accumulate(body_d)  # non-increasing as FMR falls
    fit = grid <= stop + 1.0
    dd, LL = body_d[fit] - body_d[-1], grid[fit] - grid[-1]
    slope = float((dd * LL).sum() / max((dd * dd).sum(), 1e-12))
    slope = max(slope, 1.0)
    if tail == "zero":
        slope = min(slope, (grid[-1] + 9.0) / max(body_d[-1], 1e-6))
    tail_L = np.arange(grid[-1] - 0.25, -9.0 - 1e-9, -0.25)
    tail_L = np.append(tail_L, -9.0) if tail_L[-1] > -9.0 else tail_L
    tail_d = body_d[-1] + (tail_L - grid[-1]) / slope
    tail_d = np.minimum(tail_d, [base.distance_at_log10_fmr(L) for L in tail_L])
    dist = np.round(np.concatenate([tail_d[::-1], body_d[::-1]]), 5)
    logf = np.round(np.concatenate([tail_L[::-1], grid[::-1]]), 4)
    keep = np.ones(dist.size, bool)
    for k in range(1, dist.size):
        prev = np.nonzero(keep[:k])[0][-1]
        if dist[k] <= dist[prev] or logf[k] <= logf[prev]:
            keep[k] = False
    return {"distance": dist[keep].tolist(), "log10_fmr": logf[keep].tolist(),
            "_fit": {"measured_to_log10_fmr": float(stop), "tail_slope": slope, "tail": tail,
                     "conditions": len(arrays), "pairs": [int(a.size) for a in arrays]}}


def build_pairs(rels, runs, only=None):
    labels = np.array([hash(person_of(r)) for r in rels])
    Vs, Fs = runs["sharp"]
    ok_s = np.isfinite(Vs[:, 0])
    out = {}
    for cname, (V, F) in runs.items():
        ok = np.isfinite(V[:, 0])
        if only is not None:
            ok = ok & only
        oks = ok_s & (only if only is not None else True)
        both = Pairs(rels, labels, V, V, ok, ok, ordered=False)
        mixed = None if cname == "sharp" else Pairs(rels, labels, Vs, V, oks, ok, ordered=True)
        out[cname] = (both, mixed)
    return out


def cmd_calibrate(model: str, rels=None, runs=None, only=None, write=True, covered_tail: str = "zero") -> dict:
    """Band tables for ``model`` from the out-of-range pairs of every condition; written to
    src/faceledger/data/similarity-<model>.<band>.json (unless write=False: returned). Every impostor pair of
    every condition (both photos degraded, or one sharp and one degraded) counts in the band that the measures
    put it in (vision.face_quality.pair_band); the covered bands' tails: ``covered_tail`` (band_table)."""
    from faceledger.vision.face_quality import BANDS
    from faceledger.vision.similarity import SimilarityScale

    if rels is None:
        rels, runs = load_all(model)
    base = SimilarityScale.load(model)
    bands = {c: face_bands(F) for c, (V, F) in runs.items()}
    pairs = build_pairs(rels, runs, only)
    arrays: dict[str, list[np.ndarray]] = {name: [] for name in BANDS[1:]}
    for cname, (both, mixed) in pairs.items():
        if cname == "sharp":
            continue
        b, bs = bands[cname], bands["sharp"]
        pb = pair_bands(b[both.imp_i], b[both.imp_j])
        pm = pair_bands(bs[mixed.imp_i], b[mixed.imp_j])
        # a pair counts in the band the measures put it in, whether one photo was degraded or both: two photos
        # degraded alike where the measures miss one (a covered face whose landmarks fall off the band) are
        # the dangerous part of the one-face bands. Each set counts on its own (the worst sets the table).
        for k, name in enumerate(BANDS[1:], start=1):
            arrays[name].append(both.imp_d[pb == k])
            arrays[name].append(mixed.imp_d[pm == k])
    what = {BANDS[1]: "one photo degraded (not covered) outside the calibrated range and one inside it",
            BANDS[2]: "both photos outside the calibrated range, not both covered nor one covered and one inside",
            BANDS[3]: "one photo covered (COVERED among its degradations) and one inside the range",
            BANDS[4]: "both photos covered"}
    tables = {}
    for name in BANDS[1:]:
        tail = covered_tail if name.startswith("covered") else "fit"
        t = band_table(base, arrays[name], tail=tail)
        t.update(model=model, band=name, source=(
            f"bench/degradation.py calibrate: {len(rels)} lfw_dev images ({len(rels) // 2} people), "
            f"{', '.join(c for c in runs if c != 'sharp')}; impostor pairs with {what[name]}; at each FMR the "
            f"smallest distance of {model}'s main table and of every condition"
            + ("; below the measured FMRs no steeper than a straight line to FMR 1e-9 at distance 0"
               if tail == "zero" else "")))
        tables[name] = t
        if write:
            out = ROOT / "src" / "faceledger" / "data" / f"similarity-{model}.{name}.json"
            out.write_text(json.dumps(t, indent=None, separators=(",", ":")) + "\n")
            sc = SimilarityScale.from_dict(t)
            print(f"[calibrate] {out.relative_to(ROOT)}: {len(t['distance'])} points, measured to FMR "
                  f"{10 ** t['_fit']['measured_to_log10_fmr']:.2g}; d80 {sc.max_distance(80):.4f} d90 "
                  f"{sc.max_distance(90):.4f} d99 {sc.max_distance(99):.4f} (main table {base.max_distance(80):.4f} "
                  f"{base.max_distance(90):.4f} {base.max_distance(99):.4f})", flush=True)
    return tables



def _cell(k: int, n: int, nominal: float) -> tuple[str, float]:
    if n == 0:
        return "-", float("nan")
    r = k / n / nominal
    hi = clopper_pearson(k, n)[1] / nominal
    flag = "!" if r > FLAG else " "
    return f"{k / n:8.1e} {r:6.1f}x{flag}" if k else f"{'0':>8} <{hi:5.1f}x ", r


def _scales(model, tables=None):
    """The tables of BANDS, in order: the shipped ones (with the service's fallback where a band has none:
    vision.face_quality.FALLBACK), or ``tables`` (cmd_calibrate's, not written)."""
    from faceledger.vision.face_quality import BANDS, FALLBACK
    from faceledger.vision.similarity import SimilarityScale

    base = SimilarityScale.load(model)
    if tables is not None:
        return [base] + [SimilarityScale.from_dict(tables[b]) for b in BANDS[1:]]
    return [base] + [SimilarityScale.load(model, b) if SimilarityScale.has_band(model, b)
                     else SimilarityScale.load(model, FALLBACK[b]) for b in BANDS[1:]]


def _sims(scales, d, nb):
    """Similarity of each pair: the table of its band (nb: pair_bands' index into vision.face_quality.BANDS)."""
    out = np.empty(d.size)
    for k, sc in enumerate(scales):
        m = nb == k
        out[m] = sc.similarity(d[m])
    return out


def cmd_report(model: str, out_dir: Path | None = None, covered_tail: str = "zero"):
    from faceledger.vision.face_quality import RANGE
    from faceledger.vision.similarity import SimilarityScale, fmr_from_similarity

    rels, runs = load_all(model)
    base = SimilarityScale.load(model)
    thr = [base.max_distance(t) for t in LEVELS]
    nominal = [fmr_from_similarity(t) for t in LEVELS]
    people = sorted({person_of(r) for r in rels})
    half = set(np.random.default_rng(SEED + 1).permutation(len(people))[: len(people) // 2].tolist())
    in_a = np.array([people.index(person_of(r)) in half for r in rels])
    tables_a = cmd_calibrate(model, rels, runs, only=in_a, write=False, covered_tail=covered_tail)
    held = _scales(model, tables_a)
    shipped = _scales(model)
    bands = {c: face_bands(F) for c, (V, F) in runs.items()}
    refused = {c: auto_refused(F) for c, (V, F) in runs.items()}
    all_pairs = build_pairs(rels, runs)
    b_pairs = build_pairs(rels, runs, only=~in_a)
    lines = []

    def say(x=""):
        print(x, flush=True)
        lines.append(x)

    say(f"# bench/degradation.py report: face model {model}; {len(rels)} lfw_dev images of {len(people)} people "
        f"(seed {SEED}); validity range {RANGE}")
    say("# FMR at Similarity 80 / 90 / 99 (nominal 1e-4 / 1e-5 / 1.26e-6) and its ratio to nominal ('!' over "
        f"{FLAG:g}x; '0 <Nx': none seen, 95% upper bound N x nominal)")
    say("# before: every face as detected, the model's main table (QualityFilter NONE). AUTO: share of the "
        "degraded photos' faces IndexFaces at AUTO refuses now (before this change: old bars).")
    say("# after: QualityFilter NONE, each pair scored with its quality band's table (shipped: built on all "
        "these people); held-out @80: the tables built on one half of the people, FMR on the other half's pairs.")
    hdr = (f"{'condition':12s} {'pairs':5s} {'faces':>9s} {'AUTO ref.':>9s} | " +
           " | ".join(f"before @{t:<2d}        " for t in LEVELS) + f" | {'TAR@80':>6s} || " +
           " | ".join(f"after @{t:<2d}         " for t in LEVELS) + f" | {'TAR@80':>6s} | held-out @80       | held-out @90")
    say(hdr)
    report = {"model": model, "images": len(rels), "seed": SEED, "levels": list(LEVELS), "range": str(RANGE),
              "rows": []}
    for cname in runs:
        V, F = runs[cname]
        ok = np.isfinite(V[:, 0])
        for kind in ("both", "mixed"):
            k = 0 if kind == "both" else 1
            P, H = all_pairs[cname][k], b_pairs[cname][k]
            if P is None:
                continue
            before = rate_row(P.imp_d, thr)
            tar = rate_row(P.gen_d, thr)
            bs = bands["sharp"] if kind == "mixed" else bands[cname]
            bd = bands[cname]

            def scored(scales, pairs):
                s_imp = _sims(scales, pairs.imp_d, pair_bands(bs[pairs.imp_i], bd[pairs.imp_j]))
                s_gen = _sims(scales, pairs.gen_d, pair_bands(bs[pairs.gen_i], bd[pairs.gen_j]))
                return ([(int((s_imp >= t).sum()), int(s_imp.size)) for t in LEVELS],
                        [(int((s_gen >= t).sum()), int(s_gen.size)) for t in LEVELS])

            after, tar_a = scored(shipped, P)
            held_out, _ = scored(held, H)
            ref = refused[cname][ok].mean() if ok.any() else float("nan")
            cells_b = [_cell(k_, n, nom) for (k_, n), nom in zip(before, nominal)]
            cells_a = [_cell(k_, n, nom) for (k_, n), nom in zip(after, nominal)]
            cell_h = _cell(*held_out[0], nominal[0])
            cell_h90 = _cell(*held_out[1], nominal[1])
            say(f"{cname:12s} {kind:5s} {ok.sum():4d}/{len(ok):4d} {100 * ref:8.1f}% | "
                + " | ".join(c for c, _ in cells_b) + f" | {tar[0][0] / max(1, tar[0][1]):6.3f} || "
                + " | ".join(c for c, _ in cells_a) + f" | {tar_a[0][0] / max(1, tar_a[0][1]):6.3f} | {cell_h[0]} | "
                f"{cell_h90[0]}")
            report["rows"].append({
                "condition": cname, "pairs": kind, "faces": int(ok.sum()), "images": len(ok),
                "auto_refused": float(ref), "degraded_share": float((bd[ok] >= 2).mean()),
                "covered_share": float((bd[ok] == 3).mean()),
                "before": {"fmr": before, "tar": tar, "ratio": [r for _, r in cells_b]},
                "after": {"fmr": after, "tar": tar_a, "ratio": [r for _, r in cells_a]},
                "after_held_out": {"fmr": held_out, "ratio_80": cell_h[1], "ratio_90": cell_h90[1]},
            })
    # off-angle pose: LFW's own turned faces (not synthesised)
    Vs, Fs = runs["sharp"]
    okp = np.isfinite(Fs[:, 9])
    turned = okp & (np.abs(Fs[:, 9]) >= POSE_YAW)
    P = all_pairs["sharp"][0]
    ti, tj = turned[P.imp_i], turned[P.imp_j]
    gi, gj = turned[P.gen_i], turned[P.gen_j]
    for kind, m, g in (("both", ti & tj, gi & gj), ("one", ti ^ tj, gi ^ gj)):
        before = rate_row(P.imp_d[m], thr)
        tar = rate_row(P.gen_d[g], thr)
        cells_b = [_cell(k, n, nom) for (k, n), nom in zip(before, nominal)]
        say(f"{'yaw>=' + str(int(POSE_YAW)):12s} {kind:5s} {turned.sum():4d}/{okp.sum():4d} {'':>9s} | "
            + " | ".join(c for c, _ in cells_b) + f" | {tar[0][0] / max(1, tar[0][1]):6.3f} || (natural pose, "
            f"not synthesised; {int(g.sum())} mated pairs)")
        report["rows"].append({"condition": f"yaw>={POSE_YAW:g} (LFW's own)", "pairs": kind,
                               "faces": int(turned.sum()),
                               "before": {"fmr": before, "tar": tar, "ratio": [r for _, r in cells_b]}})
    # the measures, for choosing the range
    say("\n# median [1st, 99th percentile] of each measure per condition (faces found)")
    for cname, (V, F) in runs.items():
        ok = np.isfinite(F[:, 0])
        say(f"{cname:12s} " + " ".join(
            f"{n}={np.median(F[ok, k]):.3g}[{np.percentile(F[ok, k], 1):.3g},{np.percentile(F[ok, k], 99):.3g}]"
            for k, n in enumerate(FEATURES[:8])) + f" degraded={100 * (bands[cname][ok] >= 2).mean():.1f}% covered={100 * (bands[cname][ok] == 3).mean():.1f}%")
    path = cache_dir(model) / "report.json"
    path.write_text(json.dumps(report, indent=1))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"degradation-{model}.txt").write_text("\n".join(lines) + "\n")
        (out_dir / f"degradation-{model}.json").write_text(json.dumps(report, indent=1))


def cmd_tails(model: str):
    """The covered tables' tails compared: for the pairs of covered-one and covered-both (both photos of a
    condition degraded), FMR at 80 / 90 / 99 and TAR at 80 with each tail (band_table's ``tail``), in-sample
    (tables built on all the people) and held out (built on one half, counted on the other half's pairs)."""
    from calibrate_similarity import person_of as _person
    from faceledger.vision.face_quality import BANDS
    from faceledger.vision.similarity import SimilarityScale, fmr_from_similarity

    rels, runs = load_all(model)
    people = sorted({_person(r) for r in rels})
    half = set(np.random.default_rng(SEED + 1).permutation(len(people))[: len(people) // 2].tolist())
    in_a = np.array([people.index(_person(r)) in half for r in rels])
    bands = {c: face_bands(F) for c, (V, F) in runs.items()}
    sets = {"in-sample": build_pairs(rels, runs), "held-out": build_pairs(rels, runs, only=~in_a)}
    print("# covered pairs (both photos of a condition degraded): FMR at 80 / 90 / 99 (ratio to nominal), TAR@80")
    for tail in ("fit", "zero"):
        tables = {"in-sample": cmd_calibrate(model, rels, runs, write=False, covered_tail=tail),
                  "held-out": cmd_calibrate(model, rels, runs, only=in_a, write=False, covered_tail=tail)}
        for name in ("covered-one", "covered-both"):
            kb = BANDS.index(name)
            for which, P in sets.items():
                sc = SimilarityScale.from_dict(tables[which][name])
                pick = [(P[c][0], pair_bands(bands[c][P[c][0].imp_i], bands[c][P[c][0].imp_j]) == kb,
                         pair_bands(bands[c][P[c][0].gen_i], bands[c][P[c][0].gen_j]) == kb)
                        for c in runs if c != "sharp"]
                s = sc.similarity(np.concatenate([p.imp_d[m] for p, m, _ in pick]))
                g = sc.similarity(np.concatenate([p.gen_d[m] for p, _, m in pick]))
                cells = [f"{(s >= t).sum() / max(1, s.size):.1e} ({(s >= t).sum() / max(1, s.size) / fmr_from_similarity(t):.1f}x)"
                         for t in LEVELS]
                print(f"{name:12s} tail {tail:4s} {which:9s} " + " / ".join(cells)
                      + f"  of {s.size:,} pairs; TAR@80 {(g >= 80).mean() if g.size else float('nan'):.3f}", flush=True)


# ----------------------------------------------------------------------------- the COVERED check set

def _flat_until_2026_11_30(image: np.ndarray, box) -> float:
    """The ``flat`` measure as it was until 2026-11-30 (the baseline of ``checkset``): the share of the whole
    face box in square cells of 1/32 of the face (at least 4 px) with a standard deviation under 1.5."""
    from faceledger.vision.face_quality import _box_slice, _luma

    s = _box_slice(image.shape, box)
    if s is None:
        return 1.0
    x0, y0, x1, y1 = s
    grey = _luma(image[y0:y1, x0:x1])
    c = max(4, int(min(grey.shape) / 32))
    h, w = (grey.shape[0] // c) * c, (grey.shape[1] // c) * c
    if h < c or w < c:
        return 0.0
    cells = grey[:h, :w].reshape(h // c, c, w // c, c).transpose(0, 2, 1, 3).reshape(h // c, w // c, c * c)
    return float((cells.std(axis=2) < 1.5).mean())


OLD_MAX_FLAT = 0.2
STUDIO = (ROOT / ".." / "shared" / "data" / "video" / "hamilton_reference_faces").resolve()


def cmd_checkset(data: Path, model: str, images: int, out_dir: Path | None = None):
    """The COVERED check set: clean photos that are smoother than LFW's JPEGs (evaluation.degradations.CLEAN:
    denoised, beauty-filtered, upscaled, a clean photo compressed hard; and the studio reference photos of
    shared/data/video) must not read as covered, and covered faces (a band over the eyes or the lower face:
    uniform, with sensor noise, skin-coloured like a hand, a light mask with folds; on the sharp photo and on
    a denoised one) must. For each: the share of faces outside the bound, with ``flat`` as it is now (and
    RANGE.max_flat), with the landmarks' strips alone (no band scan, as until 2026-11-30 h-occl3) and as it was
    until 2026-11-30 (whole-box flat cells, bound 0.2), in one run."""
    from faceledger.evaluation.degradations import CLEAN, clean
    from faceledger.vision import default_engine
    from faceledger.vision.face_quality import RANGE, _flat, measure
    from faceledger.vision.image import decode_image

    eng = default_engine(face_model=model)
    rels = sample(data, 600)[::max(1, 1200 // images)][:images]
    occluded = [(f"{k.replace('occlude', 'band')} {'eyes' if p == 0 else 'lower'}{' (denoised)' if dn else ''}",
                 k, p, dn) for dn in (False, True) for k in ("occlude", "occlude noisy", "occlude hand",
                                                            "occlude mask") for p in (0, 1)]
    rows: dict[str, list[tuple[float, float, float]]] = {}

    def add(name, img):
        faces = eng.analyze(img, embed=False, max_faces=1)
        if faces:
            f, det = faces[0], faces[0].detection
            box = (det.left, det.top, det.right, det.bottom)
            rows.setdefault(name, []).append((measure(img, box, f.points).flat, _flat(img, f.points),
                                              _flat_until_2026_11_30(img, box)))

    t0 = time.time()
    for k, rel in enumerate(rels):
        img = decode_image((data / rel).read_bytes()).pixels
        found = eng.analyze(img, embed=False, max_faces=1)
        if not found:
            continue
        add("sharp (LFW JPEG)", img)
        for name in CLEAN:
            add(name, clean(img, name))
        den = clean(img, "denoised nlm")
        for name, kind, p, dn in occluded:
            add(name, as_camera_would(degrade(den if dn else img, kind, p, found[0],
                                              np.random.default_rng([SEED, k, p]))))
    for path in sorted(STUDIO.glob("*.png")) if STUDIO.exists() else []:
        add("studio PNG (hamilton references)", decode_image(path.read_bytes()).pixels)
    lines = [f"# bench/degradation.py checkset: face model {model}; {len(rels)} lfw_dev photos (seed {SEED}) "
             f"{time.time() - t0:.0f}s",
             f"# share of faces read as COVERED: now (flat > {RANGE.max_flat:g}: eye and mouth strips by the "
             f"landmarks, and the band scan from the box's top) | strips (the landmarks' strips alone, no band "
             f"scan) | whole box (until 2026-11-30: flat > {OLD_MAX_FLAT:g} over the whole box)",
             f"{'photos':34s} {'faces':>5s} | {'COVERED now':>11s} | {'strips':>6s} | {'whole box':>9s} | "
             f"flat now median [99th]"]
    for group, names in (("clean: must not be COVERED", ["sharp (LFW JPEG)", *CLEAN,
                                                          "studio PNG (hamilton references)"]),
                         ("covered: must be COVERED", [n for n, *_ in occluded])):
        lines.append(f"## {group}")
        for name in names:
            v = np.array(rows.get(name, []), dtype=np.float64).reshape(-1, 3)
            if not len(v):
                continue
            lines.append(f"{name:34s} {len(v):5d} | {100 * (v[:, 0] > RANGE.max_flat).mean():10.1f}% | "
                         f"{100 * (v[:, 1] > RANGE.max_flat).mean():5.1f}% | "
                         f"{100 * (v[:, 2] > OLD_MAX_FLAT).mean():8.1f}% | {np.median(v[:, 0]):.2f} "
                         f"[{np.percentile(v[:, 0], 99):.2f}]")
    print("\n".join(lines), flush=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"checkset-{model}.txt").write_text("\n".join(lines) + "\n")


def cmd_turned(model: str) -> None:
    """Turned faces in the one-photo-degraded band: the impostor pairs of every condition with one photo degraded
    (out of the range, not covered) and one sharp inside it, scored on the degraded-one table, split by the pose
    of the sharp photo and of the degraded photo's sharp original (|yaw| >= POSE_YAW: turned). Prints, pooled
    and per condition, how many match at 80 (and 90) against nominal, with the 95% Clopper-Pearson interval of
    the pooled ratio: whether a turned face, or two, in such a pair needs a stricter table than degraded-one."""
    from calibrate_similarity import clopper_pearson

    from faceledger.vision.face_quality import POSE_YAW
    from faceledger.vision.similarity import SimilarityScale

    rels, runs = load_all(model)
    bands = {c: face_bands(F) for c, (V, F) in runs.items()}
    pairs = build_pairs(rels, runs)
    turned = np.abs(runs["sharp"][1][:, 9]) >= POSE_YAW
    scale = SimilarityScale.load(model, "degraded-one")
    d80, d90 = scale.max_distance(80), scale.max_distance(90)
    groups = ("all", "sharp photo turned", "both photos turned", "sharp photo frontal")
    pooled = {g: [0, 0, 0] for g in groups}
    print(f"{model}: {int(turned.sum())} of {len(turned)} sample photos turned (|yaw| >= {POSE_YAW:g}); impostor "
          f"pairs in degraded-one (one photo degraded, one sharp), scored on degraded-one")
    print(f"{'condition':14s} {'pairs, sharp turned':>20s} {'at 80':>14s} {'pairs, both turned':>19s} {'at 80':>14s}")
    for cname, (_both, mixed) in pairs.items():
        if cname == "sharp":
            continue
        sel = pair_bands(bands["sharp"][mixed.imp_i], bands[cname][mixed.imp_j]) == 1
        d, i, j = mixed.imp_d[sel], mixed.imp_i[sel], mixed.imp_j[sel]
        masks = dict(zip(groups, (np.ones(d.size, bool), turned[i], turned[i] & turned[j], ~turned[i])))
        for g, m in masks.items():
            pooled[g][0] += int(m.sum())
            pooled[g][1] += int((d[m] <= d80).sum())
            pooled[g][2] += int((d[m] <= d90).sum())
        if sel.any():
            row = []
            for g in groups[1:3]:
                n, k = int(masks[g].sum()), int((d[masks[g]] <= d80).sum())
                row += [f"{n:>{20 if g == groups[1] else 19}d}", f"{k:5d} ({k / max(n, 1) / 1e-4:4.2f}x)"]
            print(f"{cname:14s} " + " ".join(row))
    print("pooled:")
    for g, (n, k80, k90) in pooled.items():
        lo, hi = clopper_pearson(k80, n)
        print(f"  {g:22s} {n:9d} pairs; at 80: {k80:4d} = {k80 / n / 1e-4:4.2f}x nominal (95% CI "
              f"{lo / 1e-4:4.2f}-{hi / 1e-4:4.2f}x); at 90: {k90:3d} = {k90 / n / 1e-5:4.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("embed", "remeasure", "calibrate", "report", "all", "checkset", "tails",
                                     "turned"))
    ap.add_argument("--face-model", default=None, help="FaceModelVersion (default: the default engine's)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--people", type=int, default=600)
    ap.add_argument("--covered-tail", choices=("fit", "zero"), default="zero",
                    help="calibrate, report: the covered-both table's tail below the measured FMRs (band_table)")
    ap.add_argument("--redetect", action="store_true",
                    help="remeasure: locate the faces again even where the cache has their landmarks")
    ap.add_argument("--images", type=int, default=100, help="checkset: LFW photos (of the sample)")
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    ap.add_argument("--conditions", default=None, help="embed: only these (comma-separated CONDITIONS names)")
    ap.add_argument("--reverse", action="store_true",
                    help="embed: take the conditions from the last one (a second process beside a first)")
    args = ap.parse_args(argv)
    from faceledger.vision.engine import DEFAULT_FACE_MODEL

    model = args.face_model or DEFAULT_FACE_MODEL
    if args.step in ("embed", "all"):
        cmd_embed(args.data, model, args.people, args.reverse,
                  args.conditions.split(",") if args.conditions else None)
    if args.step == "tails":
        cmd_tails(model)
    if args.step == "turned":
        cmd_turned(model)
    if args.step == "checkset":
        cmd_checkset(args.data, model, args.images, args.out)
    if args.step == "remeasure":
        cmd_remeasure(args.data, model, args.redetect)
    if args.step in ("calibrate", "all"):
        cmd_calibrate(model, covered_tail=args.covered_tail)
    if args.step in ("report", "all"):
        cmd_report(model, args.out, args.covered_tail)


if __name__ == "__main__":
    main()
