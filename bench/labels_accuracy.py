"""DetectLabels' classifier (faceledger.analysis.labels) on images labelled by eye, and on faces-only photos.

Labelled set (LABELLED below, 10 images): scikit-image's coffee, chelsea, rocket, clock, camera, and five
photos of ../shared/data/groups, each with the ImageNet classes a person looking at it accepts (by class index;
"Dog": any class under WordNet's dog). Top-1: the most confident class name is acceptable; top-5: one of the five
most confident class names is. Parent labels ("Cat", "Animal") are not counted here: only class names.

Faces-only: every LFW image of ../shared/data/lfw_dev taken at an even stride (--lfw, default 800): which labels
come back at the default MinConfidence 55, and how often. ImageNet has no "person" or "face" class, so any
label there is about clothing, accessories or the background, or is wrong; the list is printed for a reader to
judge.

    nice -n 5 python bench/labels_accuracy.py [--lfw 800]
"""

from __future__ import annotations

import argparse
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
SUIT, TIE = 834, 906
LABELLED = [  # (source, accepted ImageNet class indices or "Dog")
    ("skimage:coffee", {967, 968, 504}),  # espresso, cup, coffee mug
    ("skimage:chelsea", {281, 282, 285}),  # tabby, tiger cat, Egyptian cat
    ("skimage:rocket", {657, 744, 812}),  # missile, projectile, space shuttle
    ("skimage:clock", {409, 892}),  # analog clock, wall clock
    ("skimage:camera", {872, 759}),  # tripod, reflex camera (the cameraman)
    ("groups/dlib_faces/dogs.jpg", "Dog"),
    ("groups/two_people.jpg", {SUIT, TIE}),
    ("groups/linzaer_imgs/13.jpg", {SUIT, TIE}),  # two men in suits shaking hands
    ("groups/linzaer_imgs/5.jpg", {620, 681, 527, 664, 782, 508}),  # laptop, notebook, desktop, monitor, screen, keyboard
    ("groups/dlib_faces/2008_002079.jpg", {532, 762}),  # dining table, restaurant
]


def load(source: str) -> np.ndarray:
    if source.startswith("skimage:"):
        import skimage.data

        img = getattr(skimage.data, source.split(":", 1)[1])()
        return np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
    return np.asarray(Image.open(DATA / source).convert("RGB"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw", type=int, default=800)
    args = ap.parse_args()
    model = LabelClassifier(threads=1)
    names = [c["Name"] for c in model.classes]
    dogs = {c["Index"] for c in model.classes if "Dog" in c["Parents"]}
    top1 = top5 = 0
    for source, accepted in LABELLED:
        accepted = dogs if accepted == "Dog" else accepted
        ok_names = {names[i] for i in accepted}
        p = model.probabilities(load(source))
        order = [label for label in model.labels(p) if label.name in set(names)][:5]  # class names only
        hit1, hit5 = order[0].name in ok_names, any(label.name in ok_names for label in order)
        top1 += hit1
        top5 += hit5
        print(f"{source:36s} top-1 {'ok ' if hit1 else 'NO '} top-5 {'ok ' if hit5 else 'NO '} "
              + ", ".join(f"{label.name} {label.confidence:.0f}" for label in order))
    print(f"\ntop-1 {top1}/{len(LABELLED)} = {top1 / len(LABELLED):.2f}, top-5 {top5}/{len(LABELLED)} = "
          f"{top5 / len(LABELLED):.2f} ({model.model_version})")

    paths = sorted((DATA / "lfw_dev").glob("*/*.jpg"))
    paths = paths[::max(1, len(paths) // args.lfw)][:args.lfw]
    seen: Counter = Counter()
    with_label = 0
    t0 = time.perf_counter()
    for path in paths:
        labels = [label.name for label in model.labels(model.probabilities(load(str(path.relative_to(DATA)))))
                  if label.confidence >= 55]
        with_label += bool(labels)
        seen.update(labels)
    ms = 1000 * (time.perf_counter() - t0) / max(len(paths), 1)
    print(f"\nfaces-only (LFW, {len(paths)} images, {ms:.0f} ms an image on one core): {with_label} "
          f"({with_label / max(len(paths), 1):.1%}) get at least one label at MinConfidence 55")
    for name, n in seen.most_common(25):
        print(f"   {name:28s} {n:4d} ({n / len(paths):.1%})")


if __name__ == "__main__":
    main()
