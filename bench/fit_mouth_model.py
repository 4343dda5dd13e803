"""Evaluate faceledger's mouth-corner model (and fit the canonical 5-point shape).

What ships (src/faceledger/vision/geometry.py): CANONICAL_SHAPE5, fitted here from
dlib's 5-point predictions, and CANONICAL_MOUTH from published facial proportions.
The mouth labels in the XML files were produced by dlib's 68-point model (its training
data forbids commercial use), so they are used here ONLY to measure the error of the
shipped estimate; the mouth position this script fits from them is printed for
comparison and is never pasted into the package.

dlib's 5-point predictor has no mouth points, but Rekognition always returns
mouthLeft/mouthRight.  We estimate them from the eye/nose geometry:

1. For every face (and, unless --no-mirror, its mirror image) of training_with_face_landmarks.xml (dlib's imglab XML, BSL-1.0;
   68-point labels) run the 5-point predictor on the labelled box.
2. CANONICAL_SHAPE5 = generalised-Procrustes mean of the 5-point shapes, normalised
   so the eye centres (corner midpoints) are at (-0.5, 0) and (0.5, 0).
3. Map each face's labelled mouth corners (68-point indices 48, 54) into that frame
   with the least-squares similarity 5 points -> CANONICAL_SHAPE5; average them.
4. Evaluate on testing_with_face_landmarks.xml: mean |estimate - label| / inter-ocular
   distance (eye-centre distance of the labels: mean of 36-41 and 42-47).

Prints CANONICAL_SHAPE5, the comparison fit, and the errors.

    PYTHONPATH=src .venv/bin/python bench/fit_mouth_model.py [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from faceledger.vision import geometry  # noqa: E402
from faceledger.vision.dlib_models import load_models  # noqa: E402
from faceledger.vision.image import decode_image  # noqa: E402


def default_data() -> Path:
    env = os.environ.get("FACELEDGER_TEST_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_faces(xml_path: Path):
    """Yield (image_path, (left, top, width, height), parts[68, 2])."""
    root = ET.parse(xml_path).getroot()
    for im in root.iter("image"):
        path = xml_path.parent / im.get("file")
        for box in im.iter("box"):
            parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
            if len(parts) != 68:
                continue
            pts = np.array([parts[i] for i in range(68)])
            b = tuple(int(box.get(k)) for k in ("left", "top", "width", "height"))
            yield path, b, pts


def predict5(models, cache, path: Path, box) -> np.ndarray:
    import dlib

    if path not in cache:
        cache[path] = decode_image(path.read_bytes()).pixels
    img = cache[path]
    left, top, w, h = box
    rect = dlib.rectangle(left, top, left + w - 1, top + h - 1)
    shape = models.shape5(img, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def eye_normalise(shape5: np.ndarray) -> np.ndarray:
    """Similarity putting the eye centres at (-0.5, 0), (0.5, 0)."""
    eye_l = (shape5[2] + shape5[3]) / 2
    eye_r = (shape5[0] + shape5[1]) / 2
    t = geometry.fit_similarity(np.stack([eye_l, eye_r]), np.array([[-0.5, 0.0], [0.5, 0.0]]))
    return geometry.apply_similarity(t, shape5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--no-mirror", action="store_true", help="fit without mirror augmentation")
    args = ap.parse_args()
    d = args.data / "groups" / "dlib_faces"
    train_xml = d / "training_with_face_landmarks.xml"
    test_xml = d / "testing_with_face_landmarks.xml"
    if not train_xml.is_file():
        sys.exit(f"missing {train_xml}")

    models = load_models()
    cache: dict = {}
    train = [(predict5(models, cache, p, b), pts) for p, b, pts in load_faces(train_xml)]
    print(f"training faces: {len(train)}")
    if not args.no_mirror:
        # Mirror augmentation: a face's mirror image is an equally plausible face, so
        # add each one flipped (x -> -x, left/right points swapped).  With only 18
        # faces this removes the pose bias of the sample and makes the model symmetric.
        flip5 = [2, 3, 0, 1, 4]
        flip68 = list(range(68))
        flip68[48], flip68[54] = 54, 48
        mirrored = []
        for s5, pts in train:
            m5 = s5[flip5] * [-1, 1]
            m68 = pts[flip68] * [-1, 1]
            mirrored.append((m5, m68))
        train = train + mirrored
        print(f"with mirrored copies: {len(train)}")

    # generalised Procrustes: align all shapes to the running mean, a few rounds
    mean = eye_normalise(train[0][0])
    for _ in range(10):
        aligned = [geometry.apply_similarity(geometry.fit_similarity(s, mean), s) for s, _ in train]
        mean = eye_normalise(np.mean(aligned, axis=0))
    canon = mean

    mouths = []
    for s5, pts in train:
        t = geometry.fit_similarity(s5, canon)
        mouths.append(geometry.apply_similarity(t, pts[[48, 54]]))
    mouths = np.array(mouths)
    canon_mouth = mouths.mean(axis=0)
    print(f"canonical mouth spread (std, IOD units): {mouths.std(axis=0).round(4).tolist()}")

    np.set_printoptions(precision=4, suppress=True)
    print("\nCANONICAL_SHAPE5 = np.array(")
    print("    [")
    for row in canon:
        print(f"        [{row[0]:.4f}, {row[1]:.4f}],")
    print("    ]\n)")
    print("CANONICAL_MOUTH = np.array(")
    print(f"    [[{canon_mouth[0,0]:.4f}, {canon_mouth[0,1]:.4f}], [{canon_mouth[1,0]:.4f}, {canon_mouth[1,1]:.4f}]]")
    print(")  # mouthLeft, mouthRight\n")

    def evaluate(xml: Path, canon5: np.ndarray, cmouth: np.ndarray, label: str) -> None:
        errs = []
        base_errs = []
        for p, b, pts in load_faces(xml):
            s5 = predict5(models, cache, p, b)
            t = geometry.fit_similarity(canon5, s5)
            est = geometry.apply_similarity(t, cmouth)
            iod = np.linalg.norm(pts[42:48].mean(axis=0) - pts[36:42].mean(axis=0))
            errs.extend(np.linalg.norm(est - pts[[48, 54]], axis=1) / iod)
            # naive baseline: mouth corners straight below the eye centres at the mean
            # eye-to-mouth distance of the label set (no rotation, no nose): for context
            el, er = (s5[2] + s5[3]) / 2, (s5[0] + s5[1]) / 2
            naive = np.stack([el, er]) + np.array([0.0, 1.0]) * np.linalg.norm(er - el)
            base_errs.extend(np.linalg.norm(naive - pts[[48, 54]], axis=1) / iod)
        e = np.array(errs)
        print(
            f"{label}: {len(e) // 2} faces, mouth-corner error / inter-ocular distance: "
            f"mean {e.mean():.3f}, median {np.median(e):.3f}, max {e.max():.3f}  "
            f"(naive 'below each eye at 1 IOD' baseline: mean {np.mean(base_errs):.3f})"
        )

    evaluate(train_xml, canon, canon_mouth, "training")
    if test_xml.is_file():
        evaluate(test_xml, canon, canon_mouth, "testing ")
        evaluate(test_xml, geometry.CANONICAL_SHAPE5, geometry.CANONICAL_MOUTH,
                 "testing, constants stored in geometry.py")


if __name__ == "__main__":
    main()
