"""DetectModerationLabels on every safe image here: how often the nsfwjs classifier flags a safe image.

Images: all of ../shared/data/lfw_dev (7,926 face photos), every photo under ../shared/data/groups, and
scikit-image's colour and grey photographs (skimage.data). None is sexual content; no unsafe corpus is
available on this machine, so only the false-positive side can be measured. For each of the labels the
service derives from the classifier (faceledger.service.operations.analysis.moderation_labels) it prints the
share of images on which it would be returned at MinConfidence 50 (the default) and at other thresholds,
and the same for ContentTypes "Illustrated" (P(Drawing) + P(Hentai)), plus the worst images.

    nice -n 5 python bench/moderation_safe.py [--lfw N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceledger.analysis.moderation import NsfwClassifier  # noqa: E402
from faceledger.service.operations.analysis import moderation_scores  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "page", "text", "horse",
           "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "retina", "grass", "gravel", "brick",
           "colorwheel", "logo", "clock", "cat", "eagle")


def images(lfw: int | None):
    import skimage.data

    for name in SKIMAGE:
        try:
            img = getattr(skimage.data, name)()
        except Exception:  # a data file that must be downloaded: not here
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        if img.dtype != np.uint8:
            img = (255 * (img.astype(float) / max(float(img.max()), 1))).astype(np.uint8)
        yield "skimage", name, img[..., :3]
    for path in sorted((DATA / "groups").rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            yield "groups", path.name, np.asarray(Image.open(path).convert("RGB"))
    paths = sorted((DATA / "lfw_dev").glob("*/*.jpg"))
    for path in paths[:lfw] if lfw else paths:
        yield "lfw_dev", path.name, np.asarray(Image.open(path).convert("RGB"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw", type=int, default=None, help="only the first N LFW images (default: all)")
    args = ap.parse_args()
    model = NsfwClassifier(threads=1)
    rows = []
    seconds = 0.0
    for group, name, img in images(args.lfw):
        t0 = time.perf_counter()
        p = model.classify(img)
        seconds += time.perf_counter() - t0
        rows.append((group, name, moderation_scores(p)))
    print(f"{len(rows)} safe images ({model.model_version}), {1000 * seconds / len(rows):.1f} ms an image "
          "(resize + model, one core)")
    names = sorted({k for _, _, s in rows for k in s})
    for group in ("lfw_dev", "groups", "skimage", "all"):
        sel = [s for g, _, s in rows if group in (g, "all")]
        print(f"\n{group}: {len(sel)} images; share flagged (score >= threshold)")
        print("   " + "".join(f"{n[:22]:>24s}" for n in names))
        for t in (50, 70, 90, 95, 99):
            print(f"{t:3d}" + "".join(f"{np.mean([s[n] >= t for s in sel]):24.4f}" for n in names))
    for n in names:
        worst = sorted(rows, key=lambda r: -r[2][n])[:5]
        print(f"\nhighest {n}: " + ", ".join(f"{g}/{name} {s[n]:.1f}" for g, name, s in worst))


if __name__ == "__main__":
    main()
