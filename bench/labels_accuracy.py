"""DetectLabels' classifier (faceledger.analysis.labels) on images labelled by eye, and on faces-only photos.

Labelled set (bench/data/labels_by_eye.csv, 36 images): scikit-image's data images, photos of
../shared/data/groups, and frames of ../shared/data/video clips taken at fixed times (``video:FILE@MS``: the
first frame shown at or after MS milliseconds from the first frame shown, faceledger's convention), each with the
ImageNet class names a person looking at it accepts ("Dog": any class under WordNet's dog; a name given to two
ImageNet classes, as "Missile", accepts both), and what the labeller saw. No image is in the repository: the CSV
names them. Top-1: the most confident class name is acceptable; top-5: one of the five most confident class names
is. Parent labels ("Cat", "Animal") are not counted here: only class names. The first 12 rows are the set of
the first measurement (10 images; skimage's astronaut and horse were added to them later).

Faces-only: every LFW image of ../shared/data/lfw_dev taken at an even stride (--lfw, default 800): which labels
come back at the default MinConfidence 55, from the classifier alone and from DetectLabels as served
(classifier and object detector merged, service.operations.analysis.general_labels), and how often. ImageNet has
no "person" or "face" class, so a classifier label there is about clothing, accessories or the background, or
is wrong; the detector's "Person" is right. The lists are printed for a reader to judge.

    nice -n 5 python bench/labels_accuracy.py [--lfw 800]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceledger.analysis.labels import LabelClassifier  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LABELS_CSV = ROOT / "bench" / "data" / "labels_by_eye.csv"


def labelled() -> list[tuple[str, list[str], str]]:
    """(image reference, accepted class names, what was seen) of each row of LABELS_CSV."""
    with open(LABELS_CSV, newline="") as f:
        return [(r["image"], r["accepted"].split(";"), r["seen"]) for r in csv.DictReader(f)]


def load(source: str) -> np.ndarray:
    """An image reference as (H, W, 3) uint8 RGB: ``skimage:NAME``, ``video:FILE@MS`` or a path under DATA."""
    if source.startswith("skimage:"):
        import skimage.data

        img = getattr(skimage.data, source.split(":", 1)[1])()
        if img.dtype == bool:
            img = np.where(img, 255, 0).astype(np.uint8)
        return np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
    if source.startswith("video:"):
        from faceledger.video.decode import frames

        name, ms = source[len("video:"):].rsplit("@", 1)
        for frame in frames(DATA / "video" / name, start_ms=int(ms)):
            return np.array(frame.image)
        raise ValueError(f"{source}: no frame at or after {ms} ms")
    return np.asarray(Image.open(DATA / source).convert("RGB"))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw", type=int, default=800)
    args = ap.parse_args()
    model = LabelClassifier(threads=1)
    names = [c["Name"] for c in model.classes]
    dogs = {c["Index"] for c in model.classes if "Dog" in c["Parents"]}
    rows = labelled()
    unknown = {n for _, accepted, _ in rows for n in accepted if n != "Dog" and n not in set(names)}
    if unknown:
        raise SystemExit(f"{LABELS_CSV}: not ImageNet class names: {sorted(unknown)}")
    hits: dict[str, list[tuple[bool, bool]]] = {}
    for source, accepted, seen in rows:
        ok_names = {names[i] for i in dogs} if accepted == ["Dog"] else set(accepted)
        p = model.probabilities(load(source))
        order = [label for label in model.labels(p) if label.name in set(names)][:5]  # class names only
        hit1, hit5 = order[0].name in ok_names, any(label.name in ok_names for label in order)
        kind = source.split(":", 1)[0] if ":" in source else "groups"
        hits.setdefault(kind, []).append((hit1, hit5))
        print(f"{source:42s} top-1 {'ok ' if hit1 else 'NO '} top-5 {'ok ' if hit5 else 'NO '} "
              + ", ".join(f"{label.name} {label.confidence:.0f}" for label in order))
    every = [h for group in hits.values() for h in group]
    for kind, group in [*hits.items(), ("all", every)]:
        n, t1, t5 = len(group), sum(h[0] for h in group), sum(h[1] for h in group)
        (a1, b1), (a5, b5) = wilson(t1, n), wilson(t5, n)
        print(f"{kind:8s} {n:3d} images: top-1 {t1}/{n} = {t1 / n:.2f} (95% {a1:.2f}-{b1:.2f}), "
              f"top-5 {t5}/{n} = {t5 / n:.2f} (95% {a5:.2f}-{b5:.2f})")
    print(f"({model.model_version})")

    from faceledger.service.operations.analysis import general_labels

    paths = sorted((DATA / "lfw_dev").glob("*/*.jpg"))
    paths = paths[::max(1, len(paths) // args.lfw)][:args.lfw]
    alone: Counter = Counter()
    served: Counter = Counter()
    with_label = with_served = 0
    t0 = time.perf_counter()
    for path in paths:
        pixels = load(str(path.relative_to(DATA)))
        labels = [label.name for label in model.labels(model.probabilities(pixels)) if label.confidence >= 55]
        found = [label["Name"] for label in general_labels(pixels, 55.0, False, 0)[0]]
        with_label += bool(labels)
        with_served += bool(found)
        alone.update(labels)
        served.update(found)
    ms = 1000 * (time.perf_counter() - t0) / max(len(paths), 1)
    n = max(len(paths), 1)
    print(f"\nfaces-only (LFW, {len(paths)} images, {ms:.0f} ms an image for both passes)")
    print(f"classifier alone: {with_label} ({with_label / n:.1%}) get at least one label at MinConfidence 55")
    for name, k in alone.most_common(25):
        print(f"   {name:28s} {k:4d} ({k / n:.1%})")
    print(f"DetectLabels as served (classifier + detector): {with_served} ({with_served / n:.1%}) get at least one "
          "label at MinConfidence 55")
    for name, k in served.most_common(30):
        print(f"   {name:28s} {k:4d} ({k / n:.1%})")


if __name__ == "__main__":
    main()
