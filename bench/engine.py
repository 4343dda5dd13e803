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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from faceledger.vision.engine import DEFAULT_UPSAMPLE, default_engine  # noqa: E402
from faceledger.vision.image import decode_image  # noqa: E402


def default_data() -> Path:
    env = os.environ.get("FACELEDGER_TEST_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def one_core_face_recognition(pin: bool = True):
    """Pin this process to one CPU (``pin``; before any model loads, so onnxruntime runs one thread) and
    import ``face_recognition`` (or exit saying how to install it)."""
    if pin and hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")
    try:
        import face_recognition
    except ImportError:
        sys.exit("face_recognition is not installed: pip install --no-deps face_recognition")
    return face_recognition


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
    ap.add_argument("--upsample", type=int, default=None,
                    help="faceledger: default_engine(upsample) (default: the engine's own detector; the "
                    "onnx engine's is BlazeFace); face_recognition always runs HOG at "
                    "--fr-upsample")
    ap.add_argument("--fr-upsample", type=int, default=DEFAULT_UPSAMPLE)
    ap.add_argument("--chips", type=int, default=64, help="faces for the embedding-alone pass")
    ap.add_argument("--engine", choices=["onnx", "dlib"], default="onnx",
                    help="faceledger's embedding runtime (default_engine's engine argument)")
    ap.add_argument("--face-model", default=None,
                    help="faceledger's face model (default: the engine's default, faceledger-fusion-v1 for onnx)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sets", nargs="+", default=["lfw", "crowd"])
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = ap.parse_args()

    face_recognition = one_core_face_recognition(pin=not args.no_pin)
    engine = default_engine(args.upsample, args.engine, args.face_model)  # after pinning: 1 onnxruntime thread
    print(f"faceledger engine: {args.engine} (detector {engine.detector.name}, "
          f"embedder {type(engine.embedder).__name__}, face model {engine.model_version}); "
          f"face_recognition: HOG upsample {args.fr_upsample}")
    up = args.fr_upsample
    targets = []
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
            if engine.dim != 128:  # another face model: its vectors are not comparable with dlib's
                mismatched_images += len(a_list) != len(b_list)
                continue
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
        if set_name == "lfw":
            targets.append(("end to end, lfw_dev images/s per core", n / t_fl_f, n / t_fr_f, 4.0, ""))
            targets.append(embedding_alone(engine, r_fl_f, images, args.chips, args.repeats))
        if set_name == "crowd":
            rec_fl, rec_fr = wider_recall(paths, res["detect faceledger"][1], res["detect face_recognition"][1],
                                          args.data)
            targets.append(("end to end, crowd faces/s per core", n_faces_fl / t_fl_f, n_faces_fr / t_fr_f, 3.0,
                            f"WIDER recall >=20 px @IoU 0.5: faceledger {rec_fl}, face_recognition {rec_fr}"))
        rows.append((set_name, "detect", "images/s", n / t_fl_d, n / t_fr_d))
        rows.append((set_name, "detect+embed", "images/s", n / t_fl_f, n / t_fr_f))
        rows.append((set_name, "detect+embed", "faces/s", n_faces_fl / t_fl_f, n_faces_fr / t_fr_f))

    print()
    print("| set | pass | unit | faceledger | face_recognition | ratio fl/fr |")
    print("|---|---|---|---|---|---|")
    for set_name, pas, unit, a, b in rows:
        ratio = a / b if b else float("nan")
        print(f"| {set_name} | {pas} | {unit} | {a:.2f} | {b:.2f} | {ratio:.2f} |")

    print()
    print("Issue 3's targets (one process pinned to one core, same images, median of "
          f"{args.repeats} interleaved runs):")
    print("| target | faceledger | face_recognition | ratio | required | met | note |")
    print("|---|---|---|---|---|---|---|")
    for name, a, b, req, note in targets:
        ratio = a / b if b else float("nan")
        print(f"| {name} | {a:.2f} | {b:.2f} | {ratio:.2f}x | {req:g}x | {'yes' if ratio >= req else 'NO'} | {note} |")
    if any(t[0].startswith("embedding") for t in targets):
        limit(engine, [t for t in targets if t[0].startswith("embedding")][0][1])


def embedding_alone(engine, analyses, images, n_chips, repeats):
    """Aligned 150x150 chips in, vectors out: onnxruntime (batched) vs dlib's
    ``compute_face_descriptor(chip)`` as face_recognition runs it (its ``face_encoder``)."""
    import dlib
    import face_recognition.api as fra

    chips = []
    for img, faces in zip(images, analyses):
        for f in faces:
            shape = engine.landmarks.locate_shape(img, f.detection)
            chips.append(np.asarray(dlib.get_face_chip(img, shape, size=150, padding=0.25)))
        if len(chips) >= n_chips:
            break
    chips = np.stack(chips[:n_chips])
    emb = engine.embedder
    if not hasattr(emb, "embed_chips"):
        return ("embedding alone (chips), faces/s per core", float("nan"), float("nan"), 8.0, "engine has no embed_chips")
    own = chips  # the model's own chips (the fusion aligns two: 150 px for dlib, 224 px for faceres)
    if engine.dim != 128:
        parts = []
        for img, faces in zip(images, analyses):
            parts += [emb.chips(img, [engine.landmarks.locate(img, f.detection)]) for f in faces]
            if len(parts) >= n_chips:
                break
        own = emb.join_chips(parts[:n_chips])
    emb.embed_chips(own[:4] if engine.dim == 128 else emb.join_chips(parts[:4]))
    k = max(8, len(chips) // 4)
    tf, tr = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        emb.embed_chips(own)
        tf.append((time.perf_counter() - t0) / len(chips))
        t0 = time.perf_counter()
        for c in chips[:k]:
            fra.face_encoder.compute_face_descriptor(c)
        tr.append((time.perf_counter() - t0) / k)
    return ("embedding alone (chips), faces/s per core", 1 / statistics.median(tf), 1 / statistics.median(tr), 8.0,
            f"{len(chips)} chips (face_recognition: {k})")


def wider_recall(paths, fl_dets, fr_locs, data):
    """Recall at IoU >= 0.5 (one-to-one) for faces >= 20 px, not flagged invalid, on the
    WIDER images of the crowd set (as bench/detector_upsample.py)."""
    from detector_upsample import greedy_match, iou, parse_wider

    gt = {Path(k).name: v for k, v in
          parse_wider(data / "groups" / "widerface_val_subset" / "wider_face_val_bbx_gt_subset.txt").items()}
    hits_fl = hits_fr = total = 0
    for p, dets, locs in zip(paths, fl_dets, fr_locs):
        g = gt.get(Path(p).name)
        if g is None:
            continue
        keep = (g[:, 7] == 0) & (np.minimum(g[:, 2], g[:, 3]) >= 20)
        gbox = np.stack([g[:, 0], g[:, 1], g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]], axis=1).astype(float)[keep]
        total += len(gbox)
        for boxes, which in (([(d.left, d.top, d.right, d.bottom) for d in dets], "fl"),
                             ([(lt, tp, rt + 1, bt + 1) for tp, rt, bt, lt in locs], "fr")):
            b = np.array(boxes, float).reshape(-1, 4)
            n = len(greedy_match(iou(b, gbox), iou(b, gbox) >= 0.5)) if len(b) and len(gbox) else 0
            if which == "fl":
                hits_fl += n
            else:
                hits_fr += n
    return f"{hits_fl}/{total}", f"{hits_fr}/{total}"


def limit(engine, fps):
    """The network's FLOPs per face, this core's float32 matmul GFLOP/s, and how close the embedding gets."""
    from embedding import matmul_gflops

    from faceledger.vision import dlib_dnn
    from faceledger.vision.dlib_models import model_paths

    flops = dlib_dnn.network_flops(dlib_dnn.read_resnet_v1(model_paths()["resnet"]))
    cpu = min(os.sched_getaffinity(0))
    mms = [matmul_gflops(cpu, unset_coretype=bool(i % 2)) for i in range(4)]
    mm = max(mms[0::2], key=lambda r: r["gflops"])
    mm_free = max(mms[1::2], key=lambda r: r["gflops"])
    best = max(mm["gflops"], mm_free["gflops"])
    got = flops * fps / 1e9
    print(f"\nlimit: {flops / 1e9:.3f} GFLOP per face; numpy float32 2048^3 matmul on this core: "
          f"{mm['gflops']:.1f} GFLOP/s (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, kernel "
          f"{mm['kernel']}), {mm_free['gflops']:.1f} GFLOP/s with it unset (kernel {mm_free['kernel']}); "
          f"bound {best * 1e9 / flops:.0f} faces/s; embedding reached {fps:.0f} faces/s = {got:.0f} GFLOP/s, "
          f"{100 * got / best:.0f}% of the matmul")


if __name__ == "__main__":
    main()
