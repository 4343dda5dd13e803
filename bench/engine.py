"""Throughput of faceledger's engine vs the ``face_recognition`` library (same dlib
models, same images, same upsample), one core.

    pip install --no-deps face_recognition      # into the same virtualenv
    PYTHONPATH=src .venv/bin/python bench/engine.py [--n 200] [--upsample 1] [--repeats 3]

Image sets (decoded once, up front; decoding is not timed):
  lfw    -- the first ``--n`` images of shared/data/lfw_dev sorted by path (250x250)
  crowd  -- groups/widerface_val_subset/images + groups/linzaer_imgs (sorted)

Passes, each timed over the whole set, median of ``--repeats`` runs (the four passes
are interleaved within each repeat so background load affects them alike):
  detect -- faceledger: ``engine.detector.detect(img)``;
            face_recognition: ``face_locations(img, number_of_times_to_upsample=N)``
  full   -- faceledger: ``engine.analyze(img)`` (detect, 5 landmarks, pose, quality,
            mouth model, ResNet embedding of every face);
            face_recognition: ``face_locations(img, N)`` then
            ``face_encodings(img, locations, model="small")``
The ratio column is faceledger throughput / face_recognition throughput (>1: faceledger
faster).  Both libraries must find the same faces and produce identical embeddings;
the script checks and prints that.
"""

from __future__ import annotations

import os

# one core: set before numpy/dlib load their thread pools
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from faceledger.vision.engine import DEFAULT_UPSAMPLE, default_engine  # noqa: E402
from faceledger.vision.image import decode_image  # noqa: E402


def default_data() -> Path:
    env = os.environ.get("FACELEDGER_TEST_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def image_sets(data: Path, n: int) -> dict[str, list[Path]]:
    lfw = sorted((data / "lfw_dev").glob("*/*.jpg"))[:n]
    crowd = sorted((data / "groups" / "widerface_val_subset" / "images").glob("*.jpg"))
    crowd += sorted((data / "groups" / "linzaer_imgs").glob("*.jpg"))
    return {"lfw": lfw, "crowd": crowd}


def run_once(label: str, fn, images: list[np.ndarray]) -> tuple[float, list]:
    """Seconds for one pass over the images, and the per-image results."""
    results: list = []
    t0 = time.perf_counter()
    for i, img in enumerate(images):
        results.append(fn(img))
        if (i + 1) % 25 == 0 or i + 1 == len(images):
            print(f"\r  {label}: image {i + 1}/{len(images)}, {time.perf_counter() - t0:6.1f} s   ",
                  end="", file=sys.stderr, flush=True)
    return time.perf_counter() - t0, results


def timed_interleaved(set_name: str, passes: dict, images: list[np.ndarray], repeats: int):
    """Run every pass once per repeat, interleaved (so background load hits all of them
    alike); return {pass: (median seconds, results of the last run)}."""
    times: dict[str, list[float]] = {k: [] for k in passes}
    results: dict[str, list] = {}
    for r in range(repeats):
        for key, fn in passes.items():
            t, results[key] = run_once(f"{set_name} run {r + 1}/{repeats} {key}", fn, images)
            times[key].append(t)
    print(file=sys.stderr)
    return {k: (statistics.median(times[k]), results[k]) for k in passes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--n", type=int, default=200, help="number of lfw_dev images (sorted by path)")
    ap.add_argument("--upsample", type=int, default=DEFAULT_UPSAMPLE)
    ap.add_argument("--engine", choices=["onnx", "dlib"], default="onnx",
                    help="faceledger's embedding runtime (default_engine's engine argument)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sets", nargs="+", default=["lfw", "crowd"])
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = ap.parse_args()

    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")

    try:
        import face_recognition
    except ImportError:
        sys.exit("face_recognition is not installed: pip install --no-deps face_recognition")

    engine = default_engine(args.upsample, args.engine)  # after pinning: 1 onnxruntime thread
    print(f"faceledger engine: {args.engine} ({type(engine.embedder).__name__})")
    up = args.upsample
    sets = image_sets(args.data, args.n)
    rows = []
    for set_name in args.sets:
        paths = sets[set_name]
        if not paths:
            print(f"{set_name}: no images found under {args.data}; skipped")
            continue
        images = [decode_image(p.read_bytes()).pixels for p in paths]
        mp = sum(im.shape[0] * im.shape[1] for im in images) / len(images) / 1e6
        print(f"{set_name}: {len(images)} images, mean {mp:.2f} Mpx, upsample {up}, {args.repeats} repeats")

        # warm-up (model load, first-call costs) outside the timings
        engine.analyze(images[0])
        face_recognition.face_encodings(
            images[0], face_recognition.face_locations(images[0], up), model="small"
        )

        def fl_detect(img):
            return engine.detector.detect(img)

        def fr_detect(img):
            return face_recognition.face_locations(img, number_of_times_to_upsample=up)

        def fl_full(img):
            return engine.analyze(img)

        def fr_full(img):
            locs = face_recognition.face_locations(img, number_of_times_to_upsample=up)
            return face_recognition.face_encodings(img, locs, model="small")

        res = timed_interleaved(set_name, {
            "detect faceledger": fl_detect, "detect face_recognition": fr_detect,
            "full faceledger": fl_full, "full face_recognition": fr_full,
        }, images, args.repeats)
        t_fl_d, _ = res["detect faceledger"]
        t_fr_d, _ = res["detect face_recognition"]
        t_fl_f, r_fl_f = res["full faceledger"]
        t_fr_f, r_fr_f = res["full face_recognition"]

        n_faces_fl = sum(len(r) for r in r_fl_f)
        n_faces_fr = sum(len(r) for r in r_fr_f)
        # same faces, same embeddings? (compare as sets of vectors per image)
        max_diff = 0.0
        n_differ = 0
        mismatched_images = 0
        for a_list, b_list in zip(r_fl_f, r_fr_f):
            if len(a_list) != len(b_list):
                mismatched_images += 1
                continue
            if not a_list:
                continue
            a = np.stack([f.embedding for f in a_list]).astype(np.float64)
            b = np.stack(b_list).astype(np.float64)
            d = engine.distance(a, b).min(axis=1)
            n_differ += int(np.sum(d > 1e-4))
            max_diff = max(max_diff, float(d.max()))
        print(f"  faces: faceledger {n_faces_fl}, face_recognition {n_faces_fr}; images with a different "
              f"face count: {mismatched_images}; faces whose embeddings differ (> 1e-4): {n_differ}, "
              f"max distance {max_diff:.3f} (face_recognition trims boxes to the image before "
              f"landmarking, faceledger does not: edge faces differ)")
        n = len(images)
        rows.append((set_name, "detect", "images/s", n / t_fl_d, n / t_fr_d))
        rows.append((set_name, "detect+embed", "images/s", n / t_fl_f, n / t_fr_f))
        rows.append((set_name, "detect+embed", "faces/s", n_faces_fl / t_fl_f, n_faces_fr / t_fr_f))

    print()
    print(f"| set | pass | unit | faceledger | face_recognition | ratio fl/fr |")
    print("|---|---|---|---|---|---|")
    for set_name, pas, unit, a, b in rows:
        ratio = a / b if b else float("nan")
        print(f"| {set_name} | {pas} | {unit} | {a:.2f} | {b:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
