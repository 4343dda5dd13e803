"""ConnectedHome labels (faceledger.streams.connected_home: NanoDet-m's COCO classes mapped to PERSON and PET) on the
images here, at several MinConfidence values, beside Rekognition's default 50.

* People, no pet: every LFW image of ../shared/data/lfw_dev at an even stride (--lfw, default 400), the group
  photos of ../shared/data/groups (but dlib's dogs.jpg), and frames of the hamilton clip every 500 ms (each shows
  people, checked by eye): how often PERSON is found (recall on images that all hold a person) and how often PET
  is (a false alarm: no animal is in them).
* Pets, no person: dlib's dogs.jpg and scikit-image's chelsea (a close-up of a cat): what is found.

Each image is counted twice: NanoDet-m alone ("before") and with its Person boxes checked by the ImageNet classifier
("after", what the server does: analysis/objects.py: a Person box that the detector also boxes as an animal and the
ImageNet classifier sees as an animal becomes that animal), with how often the people sets' Person boxes have an
animal box over them and what the classifier says there.

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

from faceledger.analysis.objects import (ANIMAL_IOU, ANIMAL_SIGNAL, ANIMAL_VETO, ANIMALS,  # noqa: E402
                                         ObjectDetector)
from faceledger.vision.geometry import box_iou  # noqa: E402
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


def before_after(detector: ObjectDetector, pixels: np.ndarray):
    """The detector's boxes scoring 0.35 or more alone and after the Person check, and the seconds each took."""
    floor = min(LEVELS) / 100
    t0 = time.perf_counter()
    raw = detector.detect(pixels, min(floor, ANIMAL_SIGNAL), check_persons=False)
    t1 = time.perf_counter()
    checked = detector.check_persons(pixels, raw)
    took = (t1 - t0, time.perf_counter() - t1)
    return [o for o in raw if o.score >= floor], [o for o in checked if o.score >= floor], took


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
    spent = checking = 0.0
    images = 0
    shares: list[float] = []  # P(animal) of the people sets' Person boxes that have an animal box over them
    persons = 0
    print("before: NanoDet-m alone; after: its Person boxes checked by the ImageNet classifier (analysis/objects.py)")
    print(f"{'people, no pet':40s} " + "  ".join(f"MinConfidence {m:.0f}: PERSON found, PET (false alarm)"
                                                  for m in LEVELS))
    for name, items in sets.items():
        n = 0
        person = {k: dict.fromkeys(LEVELS, 0) for k in ("before", "after")}
        pet = {k: dict.fromkeys(LEVELS, 0) for k in ("before", "after")}
        pet_names: list[str] = []
        for ident, pixels in items:
            t0 = time.perf_counter()
            raw, checked, took = before_after(detector, pixels)
            spent += took[0]
            checking += took[1]
            images += 1
            n += 1
            animals = [o.box for o in raw if o.name in ANIMALS and o.score >= ANIMAL_SIGNAL]
            for o in raw:
                if o.name == "Person" and o.score >= min(LEVELS) / 100:
                    persons += 1
                    if animals and box_iou(np.array([o.box]), np.array(animals)).max() >= ANIMAL_IOU:
                        shares.append(detector.animal_share(pixels, o.box)[0])
            for kind, objects in (("before", raw), ("after", checked)):
                found = find_labels(lambda _p, _s, objs=objects: objs, pixels, SUPPORTED, min(LEVELS))
                for m in LEVELS:
                    person[kind][m] += any(f.label == "PERSON" and f.confidence >= m for f in found)
                    pet[kind][m] += any(f.label == "PET" and f.confidence >= m for f in found)
                if kind == "after":
                    pet_names += [f"{ident} {f.confidence:.0f}" for f in found
                                  if f.label == "PET" and f.confidence >= 50]
        for kind in ("before", "after"):
            print(f"{name + ' ' + kind:40s} " + "  ".join(
                f"{person[kind][m]:4d}/{n} = {person[kind][m] / n:6.1%}, {pet[kind][m]:3d}/{n} = "
                f"{pet[kind][m] / n:5.1%}          " for m in LEVELS))
        if pet_names:
            print(f"{'':40s} PET at 50 or more (after): {', '.join(pet_names[:12])}")
    sh = np.array(shares)
    print(f"\npeople sets: {persons} Person boxes scoring 0.35 or more; {len(sh)} of them have an animal box (score >= "
          f"{ANIMAL_SIGNAL}, IoU >= {ANIMAL_IOU}) over them; the classifier's P(animal) there: "
          + (", ".join(f"{v:.2f}" for v in sorted(sh)[-12:]) if len(sh) else "-")
          + f" (ANIMAL_VETO {ANIMAL_VETO}: {(sh >= ANIMAL_VETO).sum()} turned into animals)")
    print("\npets, no person (after; before in brackets):")
    import skimage.data

    for name, pixels in (("groups/dlib_faces/dogs.jpg", rgb(DATA / "groups" / "dlib_faces" / "dogs.jpg")),
                         ("skimage chelsea (a cat)", skimage.data.chelsea())):
        raw, checked, _ = before_after(detector, pixels)
        say = []
        for objects in (checked, raw):
            found = find_labels(lambda _p, _s, objs=objects: objs, pixels, SUPPORTED, min(LEVELS))
            say.append(", ".join(f"{f.label} {f.confidence:.0f}" for f in found) or "nothing")
        print(f"   {name:30s} {say[0]}  [{say[1]}]")
    print(f"\ndetector: {1000 * spent / max(images, 1):.0f} ms an image on one thread, Person check "
          f"{1000 * checking / max(images, 1):.0f} ms an image ({images} images; {detector.model_version})")


if __name__ == "__main__":
    main()
