"""Face detectors compared: dlib HOG against converted TF.js detectors, recall next to
speed, on the WIDER crowd subset and on LFW; and what the detector's box does to
the embeddings (dlib's 5-point predictor was trained on HOG boxes).

    PYTHONPATH=src .venv/bin/python bench/detect_compare.py                 # all
    PYTHONPATH=src .venv/bin/python bench/detect_compare.py --only hog-up1 blazeface-back-tile256 --pairs 1200

WIDER (shared/data/groups/widerface_val_subset, the 6 present images): recall at
IoU >= 0.5 (one-to-one greedy, as bench/detector_upsample.py) for faces >= 20 px and
>= 40 px (min(w, h), not flagged invalid), loose recall (IoU >= 0.3 or centre inside),
false positives (detections loosely matching no annotated box at all, tiny and
invalid ones included).  Time: seconds per image, one thread, one process (the
"2proc" row: wall time with two processes, one tile each).  LFW (every k-th
image of lfw_dev, 250x250): share of images with at least one face, ms per image.

Pairs (``--pairs N``, the first N pairs of lfw_dev/pairs_dev.txt): for each image the
largest detected face -> dlib's 5-point predictor on that box -> dlib's aligned
150x150 chip -> the same embedder for every detector (face-api's ResNet port,
ONNX, which sits ~0.04 from dlib's vectors) -> verification accuracy at the best
threshold and at dlib's 0.6; a pair whose face is not found counts as wrong.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from detector_upsample import default_data, greedy_match, iou, loose_ok, parse_wider  # noqa: E402

from faceledger.vision.dlib_models import HogFaceDetector, HogVerifiedDetector, load_models  # noqa: E402
from faceledger.vision.image import decode_image  # noqa: E402


# ---------------------------------------------------------------- detectors

_pool_hog = None


def _hog_tile(args):
    img, up = args
    m = load_models()
    rects, scores, _ = m.detector.run(img, up, 0.0)
    return [(r.left(), r.top(), r.right() + 1, r.bottom() + 1, s) for r, s in zip(rects, scores)]


class HogTiles2Proc:
    """HOG at ``upsample`` on two overlapping halves of the image, one process each."""

    def __init__(self, upsample: int) -> None:
        self.up = upsample
        self.name = f"hog-up{upsample}-2proc"

    def detect(self, img):
        from faceledger.vision.engine import Detection
        from faceledger.vision.tfjs_models import nms

        global _pool_hog
        if _pool_hog is None:
            _pool_hog = mp.get_context("fork").Pool(2)
        h, w = img.shape[:2]
        ov = 100  # > the largest face looked for at this level, in original pixels
        if w >= h:
            cut = w // 2
            parts = [(img[:, :cut + ov], 0, 0), (img[:, cut - ov:], cut - ov, 0)]
        else:
            cut = h // 2
            parts = [(img[:cut + ov], 0, 0), (img[cut - ov:], 0, cut - ov)]
        res = _pool_hog.map(_hog_tile, [(np.ascontiguousarray(p), self.up) for p, _, _ in parts])
        boxes, scores = [], []
        for (_, dx, dy), dets in zip(parts, res):
            for x0, y0, x1, y1, s in dets:
                boxes.append((x0 + dx, y0 + dy, x1 + dx, y1 + dy))
                scores.append(s)
        if not boxes:
            return []
        b, s = np.array(boxes, float), np.array(scores)
        return [Detection(*b[i], score=float(s[i]), confidence=0.0) for i in nms(b, s, 0.3)]


def make_detectors(names: list[str] | None):
    from faceledger.vision.tfjs_models import BlazeFaceDetector, FaceApiSsdDetector, TinyFaceDetector

    m = load_models()
    table = {
        "hog-up1": lambda: HogFaceDetector(1, models=m),
        "hog-up2": lambda: HogFaceDetector(2, models=m),
        "hog-up2-2proc": lambda: HogTiles2Proc(2),
        "blazeface-back": lambda: BlazeFaceDetector("blazeface-back"),
        "blazeface-back-tile256": lambda: BlazeFaceDetector("blazeface-back", tile=256),
        "blazeface-back-tile256-s75": lambda: BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.75),
        "blazeface-back-tile256-s60": lambda: BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.6),
        "blazeface-back-tile256-s65": lambda: BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.65),
        "blazeface-back-tile256-s65-nms45": lambda: BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.65,
                                                                      iou_threshold=0.45),
        "blazeface-back-tile256-s70": lambda: BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.7),
        "blazeface-front-tile128-s65": lambda: BlazeFaceDetector("blazeface-front", tile=128, score_threshold=0.65),
        "blazeface-front-tile128-s70": lambda: BlazeFaceDetector("blazeface-front", tile=128, score_threshold=0.7),
        "blazeface-back-tile256-hog06": lambda: HogVerifiedDetector(BlazeFaceDetector("blazeface-back", tile=256),
                                                                    min_score=-0.6, models=m),
        "blazeface-back-tile256-s60-hog06": lambda: HogVerifiedDetector(
            BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.6), min_score=-0.6, models=m),
        "blazeface-back-tile256-s60-hog10": lambda: HogVerifiedDetector(
            BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.6), min_score=-1.0, models=m),
        "blazeface-back-tile256-s60-hog06-big80hog0": lambda: HogVerifiedDetector(
            BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.6), min_score=-0.6, large_px=80,
            large_min_score=0.0, models=m),
        "blazeface-back-tile256-s60-hog06-big60hog0": lambda: HogVerifiedDetector(
            BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.6), min_score=-0.6, large_px=60,
            large_min_score=0.0, models=m),
        "blazeface-back-tile256-s65-hog06-big80hog0": lambda: HogVerifiedDetector(
            BlazeFaceDetector("blazeface-back", tile=256, score_threshold=0.65), min_score=-0.6, large_px=80,
            large_min_score=0.0, models=m),
        "blazeface-front-tile128-s60-hog06": lambda: HogVerifiedDetector(
            BlazeFaceDetector("blazeface-front", tile=128, score_threshold=0.6), min_score=-0.6, models=m),
        "onnx-default": lambda: __import__("faceledger.vision.engine", fromlist=["_"]).default_engine().detector,
        "blazeface-checked": lambda: __import__("faceledger.vision.engine", fromlist=["_"]).blazeface_detector(),
        "blazeface-back-tile128": lambda: BlazeFaceDetector("blazeface-back", tile=128),
        "blazeface-front-tile128": lambda: BlazeFaceDetector("blazeface-front", tile=128),
        "blazeface-front-tile128-s75": lambda: BlazeFaceDetector("blazeface-front", tile=128, score_threshold=0.75),
        "faceapi-tiny416": lambda: TinyFaceDetector(416),
        "faceapi-tiny1024": lambda: TinyFaceDetector(1024),
        "faceapi-tiny416-tile416": lambda: TinyFaceDetector(416, tile=416),
        "faceapi-ssd512": lambda: FaceApiSsdDetector(),
        "faceapi-ssd512-tile512": lambda: FaceApiSsdDetector(tile=512),
        "faceapi-ssd512-tile256": lambda: FaceApiSsdDetector(tile=256),
    }
    names = names or list(table)
    out = []
    for n in names:
        d = table[n]()
        d.name = n
        out.append(d)
    return out


# ---------------------------------------------------------------- WIDER


def wider_eval(det, images, gt, repeats):
    n20 = n40 = h20 = h40 = loose = fps = nd = 0
    times = []
    for name, img in images.items():
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            found = det.detect(img)
            ts.append(time.perf_counter() - t0)
        times.append(float(np.median(ts)))
        nd += len(found)
        g = gt[name]
        gbox = np.stack([g[:, 0], g[:, 1], g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]], axis=1).astype(float)
        size = np.minimum(g[:, 2], g[:, 3])
        dbox = np.array([[d.left, d.top, d.right, d.bottom] for d in found], dtype=float).reshape(-1, 4)
        ious = iou(dbox, gbox) if len(dbox) else np.zeros((0, len(gbox)))
        if len(dbox):
            fps += int(np.sum(~loose_ok(dbox, gbox, ious).any(axis=1)))
        for lo, which in ((20, 0), (40, 1)):
            eidx = np.flatnonzero((g[:, 7] == 0) & (size >= lo))
            e = ious[:, eidx]
            hits = len(greedy_match(e, e >= 0.5))
            if which == 0:
                n20 += len(eidx)
                h20 += hits
                loose += len(greedy_match(e, loose_ok(dbox, gbox[eidx], e)))
            else:
                n40 += len(eidx)
                h40 += hits
    return dict(n20=n20, h20=h20, n40=n40, h40=h40, loose=loose, fps=fps, nd=nd, spi=float(np.mean(times)))


# ---------------------------------------------------------------- LFW


def lfw_files(root: Path, n: int) -> list[Path]:
    files = sorted(root.glob("*/*.jpg"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def lfw_eval(det, imgs):
    found = 0
    t0 = time.perf_counter()
    for img in imgs:
        found += bool(det.detect(img))
    return found, (time.perf_counter() - t0) / len(imgs)


def landmark_diff(det, imgs, ref):
    """dlib's 5 points on ``det``'s largest box vs on ``ref``'s (HOG's) largest box, same
    LFW image, where both boxes are the same face (centres within 30 px): per-point
    Euclidean distances in pixels (dlib's points are integers)."""
    import dlib

    m = load_models()

    def pts(img, d):
        r = dlib.rectangle(int(round(d.left)), int(round(d.top)), int(round(d.right)) - 1, int(round(d.bottom)) - 1)
        return np.array([[p.x, p.y] for p in m.shape5(img, r).parts()], float)

    out = []
    for img, rd in zip(imgs, ref):
        f = det.detect(img)
        if not f or rd is None:
            continue
        d = max(f, key=lambda d: d.area)
        if np.hypot((d.left + d.right - rd.left - rd.right) / 2, (d.top + d.bottom - rd.top - rd.bottom) / 2) > 30:
            continue
        out.append(np.linalg.norm(pts(img, d) - pts(img, rd), axis=1))
    return np.array(out).reshape(-1, 5)


# ---------------------------------------------------------------- pairs


def read_pairs(root: Path, n: int):
    lines = (root / "pairs_dev.txt").read_text().splitlines()[1:]
    pairs = []
    for ln in lines:
        p = ln.split()
        if len(p) == 3:
            pairs.append(((p[0], int(p[1])), (p[0], int(p[2])), True))
        elif len(p) == 4:
            pairs.append(((p[0], int(p[1])), (p[2], int(p[3])), False))
    # interleave matched/mismatched folds: take from the start of every fold
    return pairs[:n]


def pairs_eval(det, root: Path, pairs, embed):
    import dlib

    m = load_models()
    cache: dict = {}

    def emb(key):
        if key not in cache:
            name, i = key
            img = decode_image((root / name / f"{name}_{i:04d}.jpg").read_bytes()).pixels
            found = det.detect(img)
            if not found:
                cache[key] = None
            else:
                d = max(found, key=lambda d: (d.right - d.left) * (d.bottom - d.top))
                rect = dlib.rectangle(int(round(d.left)), int(round(d.top)),
                                      int(round(d.right)) - 1, int(round(d.bottom)) - 1)
                sh = m.shape5(img, rect)
                chip = np.asarray(dlib.get_face_chip(img, sh, size=150, padding=0.25))
                cache[key] = embed(chip)
        return cache[key]

    dists, same, missing = [], [], 0
    for a, b, s in pairs:
        ea, eb = emb(a), emb(b)
        if ea is None or eb is None:
            missing += 1
            dists.append(np.nan)
        else:
            dists.append(float(np.linalg.norm(ea - eb)))
        same.append(s)
    d, s = np.array(dists), np.array(same)
    ok = ~np.isnan(d)

    def acc(th):
        return float(np.mean(np.where(ok, (d < th) == s, False)))

    best_th = max(np.arange(0.3, 0.9, 0.005), key=acc)
    return dict(acc06=acc(0.6), best=acc(best_th), th=float(best_th), missing=missing)


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--only", nargs="*", help="detector names (default: all)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--lfw", type=int, default=300, help="LFW images for the found-rate")
    ap.add_argument("--pairs", type=int, default=0, help="pairs_dev pairs for the embedding check (0: skip)")
    args = ap.parse_args()

    root = args.data / "groups" / "widerface_val_subset"
    gt = parse_wider(root / "wider_face_val_bbx_gt_subset.txt")
    images = {n: decode_image((root / "images" / Path(n).name).read_bytes()).pixels
              for n in sorted(gt) if (root / "images" / Path(n).name).is_file()}
    lfw_root = args.data / "lfw_dev"
    lfw_imgs = [decode_image(p.read_bytes()).pixels for p in lfw_files(lfw_root, args.lfw)]
    dets = make_detectors(args.only)
    embed = None
    pairs = None
    if args.pairs:
        import onnxruntime as ort

        from faceledger.vision import npm
        from faceledger.vision.tfjs import convert, faceapi
        from faceledger.vision.tfjs_models import cached_onnx

        mf = [p for p in npm.package_files("@vladmandic/face-api", ["model/face_recognition_model*"])
              if p.name.endswith(".json")][0]
        path = cached_onnx("faceapi-face-recognition", lambda: convert(faceapi.face_recognition(mf)))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        embed = lambda chip: sess.run(None, {"input": chip[None].astype(np.float32)})[0][0]  # noqa: E731
        pairs = read_pairs(lfw_root, args.pairs)

    hog_ref = []
    for img in lfw_imgs:
        f = HogFaceDetector(1, models=load_models()).detect(img)
        hog_ref.append(max(f, key=lambda d: d.area) if f else None)
    print(f"WIDER: {len(images)} images; LFW: {len(lfw_imgs)} images; threads per detector: 1", flush=True)
    rows = []
    for det in dets:
        det.detect(lfw_imgs[0])  # load / convert outside the timing
        w = wider_eval(det, images, gt, args.repeats)
        lf, lt = lfw_eval(det, lfw_imgs)
        p = pairs_eval(det, lfw_root, pairs, embed) if pairs else None
        ld = landmark_diff(det, lfw_imgs, hog_ref)
        lm = (f"{np.median(ld):.2f} / {np.percentile(ld, 95):.2f} / {100 * np.mean(ld <= 1.5):.1f}% ({len(ld)})"
              if len(ld) else "-")
        rows.append((det.name, w, lf, lt, p, lm))
        print(f"  {det.name}: WIDER {w['h20']}/{w['n20']} >=20px, {w['spi']:.3f} s/img; LFW {lf}/{len(lfw_imgs)}"
              + (f"; pairs acc {p['best']:.4f}" if p else ""), flush=True)

    def pct(a, b):
        return f"{100.0 * a / b:.1f}%" if b else "-"

    print()
    print("| detector | WIDER recall >=20 px | >=40 px | loose >=20 px | false pos. | detections | WIDER s/image "
          "| LFW found | LFW ms/image | 5-pt vs HOG (px): median / p95 / share within 1 px per axis (faces) |" + (" pairs acc (best th) | pairs acc @0.6 | pairs no face |" if pairs else ""))
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if pairs else ""))
    for name, w, lf, lt, p, lm in rows:
        line = (f"| {name} | {pct(w['h20'], w['n20'])} ({w['h20']}/{w['n20']}) | {pct(w['h40'], w['n40'])} "
                f"({w['h40']}/{w['n40']}) | {pct(w['loose'], w['n20'])} | {w['fps']} | {w['nd']} | {w['spi']:.3f} "
                f"| {pct(lf, len(lfw_imgs))} | {1000 * lt:.1f} | {lm} |")
        if p:
            line += f" {100 * p['best']:.2f}% (th {p['th']:.3f}) | {100 * p['acc06']:.2f}% | {p['missing']} |"
        print(line)
    if _pool_hog is not None:
        _pool_hog.close()


if __name__ == "__main__":
    main()
