#!/usr/bin/env python3
"""What scoring every pair with a turned face no more leniently than the turned-both table costs genuine pairs.

vision.face_quality.pair_band scores a turned face with a frontal one on the turned-both table (it was the main
table), and with one outside the range on the stricter of that band's table and turned-both, because how a
photo is sent decides whether it looks frontal or degraded (docs/similarity.md, "Turned faces"). This takes the
genuine (matched) pairs of lfw_dev's pairs_dev.txt through the service's pipeline (largest face, the default
model) and prints, by the pair's measured category (two frontal, one turned and one frontal, two turned, ...),
TAR at Similarity 80 on the table of the rule before (the other face's band alone: one turned face counted as
frontal) beside the table used now (pair_band).

    PYTHONPATH=src python bench/turned_pairs_tar.py [--data DIR] [--level 80]

About 3 minutes for its 3,000 pairs' images on a shared core.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from faceledger.vision.engine import default_engine  # noqa: E402
from faceledger.vision.face_quality import band, pair_band  # noqa: E402
from faceledger.vision.image import decode_image  # noqa: E402
from faceledger.vision.similarity import SimilarityScale  # noqa: E402
from pose_calibrate import measured_band  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "lfw_dev")
    ap.add_argument("--level", type=float, default=80.0)
    args = ap.parse_args()
    engine = default_engine()
    model = engine.model_version
    faces: dict[tuple[str, int], tuple | None] = {}

    def face(name: str, i: int):
        if (name, i) not in faces:
            path = args.data / name / f"{name}_{i:04d}.jpg"
            found = engine.analyze(decode_image(path.read_bytes()).pixels, max_faces=1)
            faces[name, i] = (found[0].embedding, band(found[0].quality.measures, found[0].pose.yaw)) if found else None
        return faces[name, i]

    def table(pair: str) -> SimilarityScale:
        try:
            return SimilarityScale.load(model, pair)
        except ValueError:  # a band this model has no table for: its main table, as the service does
            return SimilarityScale.load(model)

    groups: dict[str, list[tuple[str, str, float]]] = {}
    for line in (args.data / "pairs_dev.txt").read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) != 3:  # a mismatched pair
            continue
        a, b = face(parts[0], int(parts[1])), face(parts[0], int(parts[2]))
        if a is None or b is None:
            continue
        d = float(engine.distance(a[0], b[0][None, :])[0])
        key = "one turned, one frontal" if {a[1], b[1]} == {"turned", "calibrated"} else measured_band(a[1], b[1])
        groups.setdefault(key, []).append((a[1], b[1], d))
    print(f"{model}, genuine pairs of pairs_dev.txt, TAR at Similarity {args.level:g}")
    print(f"{'pair':28s} {'pairs':>6s} {'before (other band alone)':>26s} {'now (pair_band)':>16s}")
    for key, rows in sorted(groups.items()):
        before = np.mean([table(measured_band(x, y)).similarity(d) >= args.level for x, y, d in rows])
        now = np.mean([table(pair_band(x, y)).similarity(d) >= args.level for x, y, d in rows])
        print(f"{key:28s} {len(rows):6d} {before:26.3f} {now:16.3f}")


if __name__ == "__main__":
    main()
