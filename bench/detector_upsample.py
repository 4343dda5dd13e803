"""HOG detector recall / false positives / time against WIDER FACE ground truth,
for several pyramid up-samplings.

    PYTHONPATH=src .venv/bin/python bench/detector_upsample.py [--upsample 0 1 2 3]

Data: shared/data/groups/widerface_val_subset (6 crowd photos; official WIDER
format ground truth: ``x y w h blur expression illumination invalid occlusion pose``).

* Eligible ground truth: not flagged invalid, width >= 20 and height >= 20 px.
* Strict match: one-to-one greedy by IoU, IoU >= 0.5.
* Loose match: one-to-one greedy, IoU >= 0.3 OR the detection's centre inside the
  ground-truth box (HOG boxes are square and tighter than WIDER's, which include
  forehead and chin; a loose hit is a found face with a box-shape mismatch).
* False positive: a detection that loosely matches NO ground-truth box at all
  (any size, invalid ones included) -- so detecting a tiny annotated face is not
  counted against the detector.
* Seconds per image: wall time of ``detector.run`` only (decode excluded), one
  process, one thread, median of ``--repeats`` runs per image, then the mean over
  images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from faceledger.vision.dlib_models import HogFaceDetector, load_models  # noqa: E402
from faceledger.vision.geometry import box_iou  # noqa: E402
from faceledger.vision.image import decode_image  # noqa: E402

BANDS = [(20, 40), (40, 80), (80, 10**9)]


def default_data() -> Path:
    env = os.environ.get("FACELEDGER_TEST_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def parse_wider(path: Path) -> dict[str, np.ndarray]:
    """file name -> (n, 10) int array of ``x y w h blur expr illum invalid occl pose``."""
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    out: dict[str, np.ndarray] = {}
    i = 0
    while i < len(lines):
        name = lines[i]
        if not name:
            i += 1
            continue
        n = int(lines[i + 1])
        rows = [list(map(int, lines[i + 2 + k].split()[:10])) for k in range(max(n, 1))]
        arr = np.array(rows[:n], dtype=np.int64).reshape(n, 10)
        out[name] = arr
        i += 2 + max(n, 1)
    return out


iou = box_iou  # bench/detectors.py imports it from here


def loose_ok(dets: np.ndarray, gts: np.ndarray, ious: np.ndarray) -> np.ndarray:
    cx = (dets[:, 0] + dets[:, 2]) / 2
    cy = (dets[:, 1] + dets[:, 3]) / 2
    inside = (
        (cx[:, None] >= gts[None, :, 0]) & (cx[:, None] <= gts[None, :, 2])
        & (cy[:, None] >= gts[None, :, 1]) & (cy[:, None] <= gts[None, :, 3])
    )
    return (ious >= 0.3) | inside


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--upsample", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats per image (median)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1024, 1920, 3840, 4000],
                    help="also time HOG on one crowd photo resized to these widths (16:9 / 4:3)")
    ap.add_argument("--max-seconds-per-image", type=float, default=60.0,
                    help="skip higher upsamples once one level exceeds this (s/image)")
    args = ap.parse_args()

    root = args.data / "groups" / "widerface_val_subset"
    gt_file = root / "wider_face_val_bbx_gt_subset.txt"
    if not gt_file.is_file():
        sys.exit(f"missing {gt_file}")
    gt = parse_wider(gt_file)
    images = {}
    for name in sorted(gt):
        p = root / "images" / Path(name).name
        if p.is_file():  # the ground-truth file lists a few images not shipped here
            images[name] = decode_image(p.read_bytes()).pixels
    print(f"{len(images)} images:")
    for name, img in images.items():
        g = gt[name]
        elig = (g[:, 7] == 0) & (g[:, 2] >= 20) & (g[:, 3] >= 20)
        print(f"  {Path(name).name}: {img.shape[1]}x{img.shape[0]}, {len(g)} boxes, {int(elig.sum())} eligible")
    sys.stdout.flush()

    models = load_models()
    rows = []
    for up in args.upsample:
        det = HogFaceDetector(up, models=models)
        n_elig = hits = loose_hits = fps = 0
        band_n = [0] * len(BANDS)
        band_hit = [0] * len(BANDS)
        band_loose = [0] * len(BANDS)
        times = []
        n_det = 0
        for name, img in images.items():
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                found = det.detect(img)
                ts.append(time.perf_counter() - t0)
            times.append(float(np.median(ts)))
            print(f"  upsample {up}: {Path(name).name}: {len(found)} detections, {times[-1]:.2f} s", flush=True)
            n_det += len(found)
            g = gt[name]
            gbox = np.stack([g[:, 0], g[:, 1], g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]], axis=1).astype(float)
            elig = (g[:, 7] == 0) & (g[:, 2] >= 20) & (g[:, 3] >= 20)
            size = np.minimum(g[:, 2], g[:, 3])
            dbox = np.array([[d.left, d.top, d.right, d.bottom] for d in found], dtype=float).reshape(-1, 4)
            ious = iou(dbox, gbox) if len(dbox) else np.zeros((0, len(gbox)))
            # false positives: no loose match to ANY ground-truth box
            lok_all = loose_ok(dbox, gbox, ious)
            fps += int(np.sum(~lok_all.any(axis=1))) if len(dbox) else 0
            # recall on eligible faces
            eidx = np.flatnonzero(elig)
            e_ious = ious[:, eidx]
            strict = greedy_match(e_ious, e_ious >= 0.5)
            loose = greedy_match(e_ious, loose_ok(dbox, gbox[eidx], e_ious))
            s_set = {eidx[gi] for _, gi in strict}
            l_set = {eidx[gi] for _, gi in loose}
            n_elig += len(eidx)
            hits += len(s_set)
            loose_hits += len(l_set)
            for gi in eidx:
                for b, (lo, hi) in enumerate(BANDS):
                    if lo <= size[gi] < hi:
                        band_n[b] += 1
                        band_hit[b] += gi in s_set
                        band_loose[b] += gi in l_set
        spi = float(np.mean(times))
        rows.append((up, n_elig, hits, loose_hits, band_n, band_hit, band_loose, fps, n_det, spi))
        if spi > args.max_seconds_per_image:
            print(f"  upsample {up} took {spi:.1f} s/image: not trying higher up-samplings")
            break

    def pct(a: int, b: int) -> str:
        return f"{100.0 * a / b:5.1f}%" if b else "   - "

    print()
    print("Recall of eligible WIDER faces (not invalid, >= 20x20 px); size band = min(w, h)")
    hdr = ("| upsample | recall IoU>=0.5 | loose recall | 20-40 px (strict / loose) | 40-80 px | 80+ px "
           "| detections | false positives | s/image |")
    print(hdr)
    print("|" + "---|" * 9)
    for up, n, h, lh, bn, bh, bl, fp, nd, spi in rows:
        bands = " | ".join(f"{pct(bh[b], bn[b])} / {pct(bl[b], bn[b])} (n={bn[b]})" for b in range(len(BANDS)))
        print(f"| {up} | {pct(h, n)} ({h}/{n}) | {pct(lh, n)} ({lh}/{n}) | {bands} | {nd} | {fp} | {spi:.2f} |")
    sys.stdout.flush()
    time_sizes(images, args.sizes, [u for u in args.upsample if u <= 2], args.repeats)


def time_sizes(images: dict, widths: list[int], upsamples: list[int], repeats: int) -> None:
    """Detection time vs image size: the cost of each upsample grows with 4**upsample x pixels."""
    from PIL import Image

    if not widths:
        return
    src = Image.fromarray(next(iter(images.values())))
    models = load_models()
    print()
    print("Seconds per image vs image size (first crowd photo resized; HOG only)")
    print("| size | Mpx | " + " | ".join(f"upsample {u}" for u in upsamples) + " |")
    print("|---|---|" + "---|" * len(upsamples))
    for w in widths:
        h = w * 9 // 16 if w != 4000 else 3000
        img = np.ascontiguousarray(np.asarray(src.resize((w, h), Image.BILINEAR)))
        cells = []
        for u in upsamples:
            if w * h * 4**u > 140_000_000:  # > ~10 s and > 2 GB of pyramid: not run
                cells.append("(not run)")
                continue
            det = HogFaceDetector(u, models=models)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                det.detect(img)
                ts.append(time.perf_counter() - t0)
            cells.append(f"{np.median(ts):.2f}")
            print(f"  {w}x{h} upsample {u}: {cells[-1]} s", file=sys.stderr, flush=True)
        print(f"| {w}x{h} | {w * h / 1e6:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
