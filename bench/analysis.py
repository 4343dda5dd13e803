"""Latency of the image-analysis operations, next to DetectFaces on the same images, on one core.

Per model (the model class alone, on decoded pixels): TextReader.read (DetectText), NsfwClassifier.classify
(DetectModerationLabels), LabelClassifier.probabilities and ObjectDetector.detect (DetectLabels),
image_properties (IMAGE_PROPERTIES).
End to end (an in-process faceledger.Client: validation, decoding, the model, the response, the ledger entry):
DetectText, DetectModerationLabels, DetectLabels (GENERAL_LABELS; and with IMAGE_PROPERTIES) and DetectFaces.
Images: scikit-image's coffee, chelsea, rocket and page, and two group photos of ../shared/data/groups. Each
figure is the median of --repeat runs after one warm-up; one ONNX Runtime thread (FACELEDGER_ONNX_THREADS=1).

    nice -n 5 python bench/analysis.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("FACELEDGER_ONNX_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data"


def images() -> list[tuple[str, bytes, np.ndarray]]:
    import skimage.data

    out = []
    for name in ("coffee", "chelsea", "rocket", "page"):
        img = getattr(skimage.data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "PNG" if name == "page" else "JPEG", quality=92)
        out.append((name, buf.getvalue(), img))
    for rel in ("groups/two_people.jpg", "groups/linzaer_imgs/13.jpg"):
        path = DATA / rel
        if path.exists():
            data = path.read_bytes()
            out.append((path.name, data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))))
    return out


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up (first-run allocations)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import faceledger
    from faceledger.analysis.image_properties import dominant_colors, quality
    from faceledger.analysis.labels import LabelClassifier
    from faceledger.analysis.moderation import NsfwClassifier
    from faceledger.analysis.objects import ObjectDetector
    from faceledger.analysis.text import TextReader

    sample = images()
    models = {
        "TextReader.read": (TextReader(threads=1).read),
        "NsfwClassifier.classify": NsfwClassifier(threads=1).classify,
        "LabelClassifier.probabilities": LabelClassifier(threads=1).probabilities,
        "ObjectDetector.detect": ObjectDetector(threads=1).detect,
        "image properties": lambda px: (quality(px), dominant_colors(px, 10)),
    }
    print(f"per model, ms an image (median of {args.repeat}, one core)")
    print(f"{'image':22s} {'size':>10s} " + " ".join(f"{k:>29s}" for k in models))
    for name, _, px in sample:
        row = [median_ms(lambda fn=fn: fn(px), args.repeat) for fn in models.values()]
        print(f"{name:22s} {px.shape[1]:>4d}x{px.shape[0]:<5d} " + " ".join(f"{v:29.0f}" for v in row))

    calls = {
        "DetectFaces": lambda c, b: c.detect_faces(Image={"Bytes": b}),
        "DetectText": lambda c, b: c.detect_text(Image={"Bytes": b}),
        "DetectModerationLabels": lambda c, b: c.detect_moderation_labels(Image={"Bytes": b}),
        "DetectLabels": lambda c, b: c.detect_labels(Image={"Bytes": b}),
        "DetectLabels+PROPERTIES": lambda c, b: c.detect_labels(Image={"Bytes": b},
                                                                Features=["GENERAL_LABELS", "IMAGE_PROPERTIES"]),
    }
    print(f"\nend to end through faceledger.Client, ms a call (median of {args.repeat}, one core)")
    print(f"{'image':22s} " + " ".join(f"{k:>24s}" for k in calls))
    with tempfile.TemporaryDirectory() as tmp, faceledger.Client(data_dir=Path(tmp) / "data") as client:
        for name, data, _ in sample:
            row = [median_ms(lambda fn=fn: fn(client, data), args.repeat) for fn in calls.values()]
            print(f"{name:22s} " + " ".join(f"{v:24.0f}" for v in row))


if __name__ == "__main__":
    main()
