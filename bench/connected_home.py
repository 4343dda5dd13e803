"""ConnectedHome labels (faceledger.streams.connected_home: NanoDet-m's COCO classes mapped to PERSON and PET) on the
images here, at several MinConfidence values, beside Rekognition's default 50.

* People, no pet: every LFW image of ../shared/data/lfw_dev at an even stride (--lfw, default 400), the group
  photos of ../shared/data/groups (but dlib's dogs.jpg), and frames of the hamilton clip every 500 ms (each shows
  people, checked by eye): how often PERSON is found (recall on images that all hold a person) and how often PET
  is (a false alarm: no animal is in them).
* Pets, no person: dlib's dogs.jpg and scikit-image's chelsea (a close-up of a cat): what is found.

Prints the detector's time per image (one thread). No unsafe or private data; nothing is written.

    nice -n 5 python bench/connected_home.py [--lfw 400]
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

from faceledger.analysis.objects import ObjectDetector  # noqa: E402
from faceledger.streams.connected_home import SUPPORTED, find_labels  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LEVELS = (35.0, 50.0, 70.0)


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def clip_frames(every_ms: int = 500):
    from faceledger.video.decode import frames

    last = None
    for frame in frames(DATA / "video" / "short_hamilton_clip.mp4"):
        slot = frame.timestamp_ms // every_ms
        if slot != last:
            last = slot
            yield f"hamilton@{frame.timestamp_ms}", np.array(frame.image)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw", type=int, default=400)
    args = ap.parse_args()
    detector = ObjectDetector(threads=1)
    lfw = sorted((DATA / "lfw_dev").glob("*/*.jpg"))
    lfw = lfw[::max(1, len(lfw) // args.lfw)][:args.lfw]
    groups = sorted(p for p in (DATA / "groups").rglob("*.jpg") if p.name != "dogs.jpg")
    sets = {
        f"LFW faces ({len(lfw)})": ((p.name, rgb(p)) for p in lfw),
        f"group photos ({len(groups)})": ((p.name, rgb(p)) for p in groups),
        "hamilton frames every 500 ms": clip_frames(),
    }
    spent, images = 0.0, 0
    print(f"{'people, no pet':32s} " + "  ".join(f"MinConfidence {m:.0f}: PERSON found, PET (false alarm)"
                                                  for m in LEVELS))
    for name, items in sets.items():
        n = 0
        person = dict.fromkeys(LEVELS, 0)
        pet = dict.fromkeys(LEVELS, 0)
        pet_names: list[str] = []
        for ident, pixels in items:
            t0 = time.perf_counter()
            found = find_labels(detector.detect, pixels, SUPPORTED, min(LEVELS))
            spent += time.perf_counter() - t0
            images += 1
            n += 1
            for m in LEVELS:
                person[m] += any(f.label == "PERSON" and f.confidence >= m for f in found)
                pet[m] += any(f.label == "PET" and f.confidence >= m for f in found)
            pet_names += [f"{ident} {f.confidence:.0f}" for f in found if f.label == "PET" and f.confidence >= 50]
        print(f"{name:32s} " + "  ".join(f"{person[m]:4d}/{n} = {person[m] / n:6.1%}, {pet[m]:3d}/{n} = "
                                          f"{pet[m] / n:5.1%}          " for m in LEVELS))
        if pet_names:
            print(f"{'':32s} PET at 50 or more: {', '.join(pet_names[:12])}")
    print("\npets, no person:")
    import skimage.data

    for name, pixels in (("groups/dlib_faces/dogs.jpg", rgb(DATA / "groups" / "dlib_faces" / "dogs.jpg")),
                         ("skimage chelsea (a cat)", skimage.data.chelsea())):
        found = find_labels(detector.detect, pixels, SUPPORTED, min(LEVELS))
        print(f"   {name:30s} " + (", ".join(f"{f.label} {f.confidence:.0f}" for f in found) or "nothing"))
    print(f"\ndetector: {1000 * spent / max(images, 1):.0f} ms an image on one thread ({images} images; "
          f"{detector.model_version})")


if __name__ == "__main__":
    main()
