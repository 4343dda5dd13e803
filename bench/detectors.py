"""Face detectors side by side: today's default (BlazeFace tiles + HOG check) against YuNet 2023mar
(fp32 and int8bq), on the WIDER subset, LFW and images without faces; and, with ``--pairs``, what
YuNet's own five points do to verification next to dlib's 5-point model.

    PYTHONPATH=src .venv/bin/python bench/detectors.py                       # WIDER, LFW, non-face images
    PYTHONPATH=src .venv/bin/python bench/detectors.py --pairs               # + pairs_dev accuracy
    PYTHONPATH=src .venv/bin/python bench/detectors.py --fit-keypoints       # refit yunet.CANONICAL_YUNET

WIDER (shared/data/groups/widerface_val_subset, 6 crowd photos; official ground truth): a face is found
when a detection matches it one-to-one (greedy by IoU) at IoU >= 0.5.  Recall per size bucket of the
face's shorter side (10-20, 20-40, 40-80, >= 80 px; faces flagged invalid are left out), and ">= 20 px"
(the figure of docs/engine.md and issue 10).  A false box is a detection that matches no annotated box,
of any size, invalid ones included, at IoU >= 0.5.  "At <= 2 false" raises the detector's score
threshold until at most 2 false boxes remain (exact: thresholding after greedy NMS gives what the
detector would give at that threshold) and reports the recall there and the threshold.  Time: seconds
per image of ``detect`` at the default threshold, one thread (onnxruntime intra-op 1; HOG is
single-threaded), median of ``--repeats`` runs per image, mean over the images.

LFW (shared/data/lfw_dev, 7,926 images, or every k-th with ``--lfw N``): failures to enrol = images
where the detector finds no face, and where it finds none with Confidence >= 70 (AUTO's bar).  Non-face images: dogs.jpg (groups/dlib_faces) and every
scikit-image data image without a person that ships in its wheel (chelsea, coffee, rocket, ...), each
at 0.5x, 1x and 2x, upright and turned 90/180/270 degrees: detections at the default threshold, and the
ones IndexFaces at QualityFilter AUTO would keep (service.quality's bar: confidence, box size, pose,
brightness, sharpness).  (dogs.jpg has one real face: a ~30-px photo of a man, turned 90 degrees, on a
poster behind the dogs; at 2x it is AUTO-sized.)

Pairs (``--pairs``, lfw_dev/pairs_dev.txt, 10 folds of 600): the default face model
(faceledger-fusion-v1) on the largest face, aligned from (a) today's default engine, (b) YuNet's box +
dlib's 5-point model, (c) YuNet's five points (yunet.keypoints_to_shape5) (YuNet without confirm.HogConfirmed,
which changes Confidence, not boxes); 10-fold accuracy (the LFW
protocol: threshold chosen on 9 folds, tested on the 10th); a pair whose face is missing counts as
"different".  Embeddings are cached (faceledger.evaluation.embed, ~/.cache/faceledger/embeddings).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from detector_upsample import default_data, greedy_match, iou, loose_ok, parse_wider  # noqa: E402

from faceledger.vision.image import decode_image  # noqa: E402

BUCKETS = [(10, 20), (20, 40), (40, 80), (80, 10**9)]
LOW_THRESHOLD = {"blazeface": 0.3, "yunet": 0.2}
AUTO_CONFIDENCE = 70.0  # QualityFilter AUTO's detector-confidence bar (service/quality.py)
NONFACE_SCALES = (0.5, 1.0, 2.0)


# ---------------------------------------------------------------- detectors


def make(name: str, low: bool = False):
    """A detector by name; ``low``: the same at a low score threshold (for the threshold sweep)."""
    from faceledger.vision import engine

    if name in ("default", "blazeface") or name.startswith("blazeface-large"):
        # "blazeface": BlazeFace tiles + HOG check (the default engine's detector before vision/confirm.py);
        # "default": the same with confirm.HogConfirmed (today's default engine); blazeface-large<N>: the HOG
        # check's large-box bar from N px
        from faceledger.vision.confirm import HogConfirmed
        from faceledger.vision.dlib_models import HogVerifiedDetector, load_models
        from faceledger.vision.tfjs_models import BlazeFaceDetector

        if name == "default":
            return HogConfirmed(make("blazeface", low))
        if name == "blazeface" and not low:
            return engine.blazeface_detector()
        large = engine.BLAZEFACE_HOG_CHECK_LARGE_PX if name == "blazeface" else float(name[len("blazeface-large"):])
        inner = BlazeFaceDetector(engine.BLAZEFACE_VARIANT, tile=engine.BLAZEFACE_TILE,
                                  score_threshold=LOW_THRESHOLD["blazeface"] if low else engine.BLAZEFACE_SCORE_THRESHOLD,
                                  iou_threshold=engine.BLAZEFACE_IOU_THRESHOLD)
        return HogVerifiedDetector(inner, min_score=engine.BLAZEFACE_HOG_CHECK, large_px=large,
                                   large_min_score=engine.BLAZEFACE_HOG_CHECK_LARGE, models=load_models())
    if name.startswith("yunet"):
        from faceledger.vision import yunet

        parts = name.split("-")  # yunet-<variant>[-<max side>][-confirm|-hog]
        variant = parts[1] if len(parts) > 1 else yunet.YUNET_VARIANT
        side = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else yunet.YUNET_MAX_SIDE
        kw = {"score_threshold": LOW_THRESHOLD["yunet"]} if low else {}
        det = yunet.YuNetDetector(variant, max_side=side, **kw)
        if parts[-1] == "confirm":  # the engine's: AUTO-sized boxes below score 0.9 confirmed by HOG
            from faceledger.vision.confirm import HogConfirmed

            det = HogConfirmed(det, confirm_score=yunet.YUNET_CONFIRM_SCORE)
        elif parts[-1] == "hog":  # every box checked, as BlazeFace's
            from faceledger.vision.dlib_models import HogVerifiedDetector, load_models

            det = HogVerifiedDetector(det, min_score=engine.BLAZEFACE_HOG_CHECK,
                                      large_px=engine.BLAZEFACE_HOG_CHECK_LARGE_PX,
                                      large_min_score=engine.BLAZEFACE_HOG_CHECK_LARGE, models=load_models())
        return det
    raise KeyError(name)


def default_threshold(det) -> float:
    while not hasattr(det, "score_threshold"):
        det = det.inner
    return float(det.score_threshold)


# ---------------------------------------------------------------- WIDER


def wider_images(data: Path):
    root = data / "groups" / "widerface_val_subset"
    gt = parse_wider(root / "wider_face_val_bbx_gt_subset.txt")
    images = {n: decode_image((root / "images" / Path(n).name).read_bytes()).pixels
              for n in sorted(gt) if (root / "images" / Path(n).name).is_file()}
    return images, {n: gt[n] for n in images}


def wider_score(found: dict[str, list], gt: dict[str, np.ndarray], threshold: float) -> dict:
    """Recall per bucket and false boxes for the detections scoring >= threshold."""
    hits = np.zeros(len(BUCKETS), int)
    total = np.zeros(len(BUCKETS), int)
    h20 = n20 = false = loose_false = nd = 0
    for name, dets in found.items():
        dets = [d for d in dets if d.score >= threshold]
        nd += len(dets)
        g = gt[name]
        gbox = np.stack([g[:, 0], g[:, 1], g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]], axis=1).astype(float)
        dbox = np.array([[d.left, d.top, d.right, d.bottom] for d in dets], float).reshape(-1, 4)
        ious = iou(dbox, gbox) if len(dbox) else np.zeros((0, len(gbox)))
        matched_any = greedy_match(ious, ious >= 0.5)  # against every annotated box
        false += len(dbox) - len(matched_any)
        if len(dbox):
            loose_false += int(np.sum(~loose_ok(dbox, gbox, ious).any(axis=1)))
        size = np.minimum(g[:, 2], g[:, 3])
        valid = g[:, 7] == 0
        for k, (lo, hi) in enumerate(BUCKETS):
            idx = np.flatnonzero(valid & (size >= lo) & (size < hi))
            e = ious[:, idx]
            total[k] += len(idx)
            hits[k] += len(greedy_match(e, e >= 0.5))
        idx = np.flatnonzero(valid & (size >= 20))
        e = ious[:, idx]
        n20 += len(idx)
        h20 += len(greedy_match(e, e >= 0.5))
    return dict(hits=hits, total=total, h20=h20, n20=n20, false=false, loose_false=loose_false, nd=nd)


def wider_eval(name: str, images, gt, repeats: int) -> dict:
    det, low = make(name), make(name, low=True)
    first = next(iter(images.values()))
    det.detect(first)  # load the model outside the timing
    times, found_default, found_low = [], {}, {}
    for n, img in images.items():
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            found_default[n] = det.detect(img)
            ts.append(time.perf_counter() - t0)
        times.append(float(np.median(ts)))
        found_low[n] = low.detect(img)
    at_default = wider_score(found_default, gt, -np.inf)
    # the sweep: highest recall (>= 20 px) with at most 2 false boxes
    scores = sorted({d.score for ds in found_low.values() for d in ds}, reverse=True)
    best = None
    for t in scores:
        r = wider_score(found_low, gt, t)
        if r["loose_false"] > 2:
            break
        best = (t, r)
    return dict(default=at_default, sweep=best, spi=float(np.mean(times)), threshold=default_threshold(det))


# ---------------------------------------------------------------- LFW, non-face images


def lfw_failures(name: str, root: Path, n: int | None) -> tuple[int, int, float, list[str], int]:
    """(images with no face, images, s/image, their names, images whose faces all have Confidence < 70)."""
    files = sorted(root.glob("*/*.jpg"))
    if n:
        step = max(1, len(files) // n)
        files = files[::step][:n]
    det = make(name)
    missed, weak = [], 0
    t0 = time.perf_counter()
    for p in files:
        found = det.detect(decode_image(p.read_bytes()).pixels)
        if not found:
            missed.append(f"{p.parent.name}/{p.name}")
        elif not any(d.confidence >= AUTO_CONFIDENCE for d in found):
            weak += 1
    return len(missed), len(files), (time.perf_counter() - t0) / max(1, len(files)), missed, weak


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(np.rint(255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-9)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255
        a = np.rint(a[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a)


#: scikit-image data images without a person (astronaut, camera, lfw_subset and lbp_frontal_face show one)
SKIMAGE_NONFACE = ("binary_blobs", "brick", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins",
                   "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
                   "microaneurysms", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text")


def nonface_images(data: Path) -> dict[str, np.ndarray]:
    out = {}
    dogs = data / "groups" / "dlib_faces" / "dogs.jpg"
    if dogs.is_file():
        out["dogs.jpg"] = decode_image(dogs.read_bytes()).pixels
    try:
        import skimage.data as skd
    except ImportError:
        skd = None
    for n in SKIMAGE_NONFACE if skd else ():
        try:
            out[n] = _rgb(getattr(skd, n)())
        except Exception:  # noqa: BLE001 - images that need a download (pooch) are skipped
            continue
    return out


def nonface_eval(name: str, images: dict[str, np.ndarray]) -> tuple[int, int, int, list[str]]:
    """(detections, kept at AUTO, images x rotations, names of the AUTO ones)."""
    from faceledger.service.quality import failing_reasons
    from faceledger.vision.engine import FaceEngine
    from faceledger.vision.yunet import KeypointLandmarks

    eng = FaceEngine(make(name), KeypointLandmarks(), None)
    dets = auto = n = 0
    where = []
    from PIL import Image

    for key, img in images.items():
        for scale in NONFACE_SCALES:
            h, w = img.shape[:2]
            sized = img if scale == 1 else np.asarray(
                Image.fromarray(img).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
            for k in range(4):
                n += 1
                faces = eng.analyze(np.ascontiguousarray(np.rot90(sized, k)), embed=False)
                dets += len(faces)
                for f in faces:
                    if not failing_reasons(f, "AUTO"):
                        auto += 1
                        where.append(f"{key} x{scale:g} @{90 * k}: conf {f.detection.confidence:.1f}, "
                                     f"{f.detection.width:.0f} px")
    return dets, auto, n, where


# ---------------------------------------------------------------- rotation


def rotation_eval(name: str, data: Path, n_lfw: int, nonface: dict[str, np.ndarray]) -> dict:
    """LFW images turned 0/90/180/270 degrees: share with a face (AUTO confidence) without and with the
    rotation search (vision/rotation.py), and its cost there and on the non-face images (upright)."""
    from faceledger.vision.dlib_models import Shape5Landmarks
    from faceledger.vision.rotation import AUTO_CONFIDENCE, AnyRotation
    from faceledger.vision.yunet import KeypointLandmarks

    det = make(name)
    anyrot = AnyRotation(det, KeypointLandmarks(Shape5Landmarks()))
    files = sorted((data / "lfw_dev").glob("*/*.jpg"))
    files = files[:: max(1, len(files) // n_lfw)][:n_lfw]
    imgs = [decode_image(p.read_bytes()).pixels for p in files]
    out = {}
    for k in range(4):
        row = {}
        for label, d in (("plain", det), ("anyrotation", anyrot)):
            found, t0 = 0, time.perf_counter()
            for img in imgs:
                found += any(x.confidence >= AUTO_CONFIDENCE for x in d.detect(np.ascontiguousarray(np.rot90(img, k))))
            row[label] = (found, (time.perf_counter() - t0) / len(imgs))
        out[90 * k] = row
    for label, d in (("plain", det), ("anyrotation", anyrot)):
        t0 = time.perf_counter()
        for img in nonface.values():
            d.detect(img)
        out[f"nonface-{label}"] = (time.perf_counter() - t0) / max(1, len(nonface))
    out["n"] = len(imgs)
    return out


# ---------------------------------------------------------------- pairs


class _Named:
    """A detector under another name (the embedding cache is keyed by the detector's name)."""

    def __init__(self, inner, name: str) -> None:
        self.inner, self.name = inner, name

    def detect(self, image):
        return self.inner.detect(image)


def pairs_eval(data: Path, variants: list[str], folds: int = 10) -> dict[str, dict]:
    from faceledger.evaluation.datasets import read_pairs
    from faceledger.evaluation.embed import embed_dataset
    from faceledger.evaluation.metrics import ten_fold_accuracy
    from faceledger.vision import engine as E
    from faceledger.vision.dlib_models import Shape5Landmarks
    from faceledger.vision.yunet import KeypointLandmarks

    root = data / "lfw_dev"
    pairs = [p for p in read_pairs(root / "pairs_dev.txt") if p.fold < folds]
    images = sorted({p.a for p in pairs} | {p.b for p in pairs})
    base = E.default_engine()
    out = {}
    for v in variants:
        if v == "default":  # confirm.HogConfirmed changes Confidence, not boxes: the cache of the bare detector
            det = base.detector.inner if hasattr(base.detector, "needs_check") else base.detector
            eng = E.FaceEngine(_Named(det, det.name), base.landmarks, base.embedder)
        else:
            det, lm = v.split("+")
            landmarks = Shape5Landmarks() if lm == "dlib5" else KeypointLandmarks()
            inner = make(det)
            eng = E.FaceEngine(_Named(inner, f"{inner.name}+{lm}"), landmarks, base.embedder)
        t0 = time.perf_counter()
        emb = embed_dataset(root, images, engine=eng, progress=False)
        idx = emb.index()
        d = np.array([np.linalg.norm(emb.vectors[idx[p.a]] - emb.vectors[idx[p.b]])
                      if p.a in idx and p.b in idx else np.inf for p in pairs])
        same = np.array([p.same for p in pairs])
        folds = np.array([p.fold for p in pairs])
        acc = ten_fold_accuracy(d, same, folds)
        out[v] = dict(acc=acc["mean"], std=acc["std"], missing=int(np.isinf(d).sum()), d=d,
                      failures=len(emb.failures), images=len(images), seconds=time.perf_counter() - t0)
        print(f"  pairs {v}: {acc['mean']:.4f} +- {acc['std']:.4f}, {out[v]['missing']} pairs without a face",
              flush=True)
    # the same comparison on the pairs every variant has both faces of
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    common = np.all([np.isfinite(r["d"]) for r in out.values()], axis=0)
    for r in out.values():
        c = ten_fold_accuracy(r["d"][common], same[common], folds[common])
        r.update(common_acc=c["mean"], common_std=c["std"], common_n=int(common.sum()))
    return out


# ---------------------------------------------------------------- keypoint fit


def fit_keypoints(data: Path) -> np.ndarray:
    """YuNet's five points in dlib's canonical frame, averaged over the labelled faces of
    groups/dlib_faces (training and testing XML): dlib's 5-point model on the labelled box gives the
    similarity to CANONICAL_SHAPE5; the YuNet detection matching the box (IoU >= 0.3) gives the points.
    Mirror-symmetrised.  Prints the mean and the spread."""
    import xml.etree.ElementTree as ET

    import dlib

    from faceledger.vision import geometry
    from faceledger.vision.dlib_models import load_models
    from faceledger.vision.yunet import YuNetDetector

    m = load_models()
    det = YuNetDetector("fp32")
    root = data / "groups" / "dlib_faces"
    pts = []
    for xml in ("training.xml", "testing.xml"):
        if not (root / xml).is_file():
            continue
        for im in ET.parse(root / xml).getroot().iter("image"):
            img = decode_image((root / im.get("file")).read_bytes()).pixels
            found = det.detect(img)
            if not found:
                continue
            fb = np.array([[d.left, d.top, d.right, d.bottom] for d in found])
            for box in im.iter("box"):
                if box.get("ignore") == "1":
                    continue
                l, t, w, h = (int(box.get(k)) for k in ("left", "top", "width", "height"))
                o = iou(np.array([[l, t, l + w, t + h]], float), fb)[0]
                if o.max() < 0.3:
                    continue
                shape = m.shape5(img, dlib.rectangle(l, t, l + w - 1, t + h - 1))
                d5 = np.array([(p.x, p.y) for p in shape.parts()], float)
                tr = geometry.fit_similarity(d5, geometry.CANONICAL_SHAPE5)
                pts.append(geometry.apply_similarity(tr, np.asarray(found[int(o.argmax())].keypoints)))
    p = np.array(pts)
    mean = p.mean(axis=0)
    mirror = mean[[1, 0, 2, 4, 3]] * np.array([-1.0, 1.0])
    sym = (mean + mirror) / 2
    print(f"{len(p)} faces; mean (IOD units):\n{np.round(mean, 4)}\nsymmetrised:\n{np.round(sym, 4)}\n"
          f"std:\n{np.round(p.std(axis=0), 4)}")
    return sym


# ---------------------------------------------------------------- main


def _pct(a: int, b: int) -> str:
    return f"{a}/{b}" if b else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--detectors", nargs="*", default=["default", "yunet-fp32", "yunet-int8bq"],
                    help="default | yunet-<fp32|int8bq>[-<max side px>]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lfw", type=int, default=0, help="LFW images for failures to enrol (0: all)")
    ap.add_argument("--skip-lfw", action="store_true")
    ap.add_argument("--pairs", action="store_true", help="pairs_dev accuracy with each alignment")
    ap.add_argument("--pair-folds", type=int, default=10, help="the first N folds of pairs_dev (600 pairs each)")
    ap.add_argument("--pair-variants", nargs="*",
                    default=["default", "yunet-fp32-1280+dlib5", "yunet-fp32-1280+yunet5"])
    ap.add_argument("--fit-keypoints", action="store_true")
    ap.add_argument("--rotation", type=int, default=0, metavar="N",
                    help="rotation search on N LFW images turned 0/90/180/270 (0: skip)")
    args = ap.parse_args()

    if args.fit_keypoints:
        fit_keypoints(args.data)
        return
    images, gt = wider_images(args.data)
    nonface = nonface_images(args.data)
    print(f"WIDER: {len(images)} images; non-face: {len(nonface)} images x {len(NONFACE_SCALES)} scales x 4 "
          f"rotations; 1 thread", flush=True)
    rows = []
    for name in args.detectors:
        w = wider_eval(name, images, gt, args.repeats)
        lf = None if args.skip_lfw else lfw_failures(name, args.data / "lfw_dev", args.lfw or None)
        nf = nonface_eval(name, nonface)
        rows.append((name, w, lf, nf))
        print(f"  {name}: done", flush=True)

    head = ["detector", "thr"] + [f"{lo}-{hi if hi < 10**9 else ''} px".replace("- px", "+ px")
                                  for lo, hi in BUCKETS]
    head += [">= 20 px", "false boxes: IoU / on no face", ">= 20 px at <= 2 on no face (thr)", "s/image", "LFW no face",
             "LFW none at conf. 70", "LFW s/image", "non-face: boxes", "non-face: kept at AUTO"]
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, w, lf, nf in rows:
        r = w["default"]
        cells = [name, f"{w['threshold']:g}"] + [_pct(h, t) for h, t in zip(r["hits"], r["total"])]
        cells += [_pct(r["h20"], r["n20"]), f"{r['false']} / {r['loose_false']}"]
        if w["sweep"]:
            t, s = w["sweep"]
            cells.append(f"{s['h20']}/{s['n20']} ({s['false']} / {s['loose_false']}, thr {t:.3f})")
        else:
            cells.append("-")
        cells.append(f"{w['spi']:.3f}")
        cells += ([f"{lf[0]}/{lf[1]}", f"{lf[0] + lf[4]}/{lf[1]}", f"{lf[2]:.4f}"] if lf else ["-", "-", "-"])
        cells += [f"{nf[0]} in {nf[2]}", f"{nf[1]}"]
        print("| " + " | ".join(cells) + " |")
    for name, _, lf, nf in rows:
        if nf[3]:
            print(f"{name}: non-face faces kept at AUTO: " + "; ".join(nf[3]))
        if lf and lf[3]:
            print(f"{name}: LFW no face: " + " ".join(lf[3][:40]) + (" ..." if len(lf[3]) > 40 else ""))

    if args.rotation:
        print()
        print("| detector | turned | found (AUTO conf.), upright pass only | s/image | with the rotation search "
              "| s/image |")
        print("|---|---|---|---|---|---|")
        for name in args.detectors:
            r = rotation_eval(name, args.data, args.rotation, nonface)
            for k in (0, 90, 180, 270):
                (f0, t0), (f1, t1) = r[k]["plain"], r[k]["anyrotation"]
                print(f"| {name} | {k} | {f0}/{r['n']} | {t0:.3f} | {f1}/{r['n']} | {t1:.3f} |")
            print(f"| {name} | non-face images (upright) | - | {r['nonface-plain']:.3f} | - | "
                  f"{r['nonface-anyrotation']:.3f} |")

    if args.pairs:
        res = pairs_eval(args.data, args.pair_variants, args.pair_folds)
        print()
        print(f"| alignment (fusion-v1) | pairs_dev accuracy ({args.pair_folds} folds, leave one out) "
              "| pairs without a face | failures to enrol | accuracy on the pairs all variants have |")
        print("|---|---|---|---|---|")
        for v, r in res.items():
            print(f"| {v} | {100 * r['acc']:.2f}% +- {100 * r['std']:.2f} | {r['missing']} | "
                  f"{r['failures']}/{r['images']} | {100 * r['common_acc']:.2f}% +- {100 * r['common_std']:.2f} "
                  f"({r['common_n']} pairs) |")


if __name__ == "__main__":
    main()
