"""CPU per image through the service (``faceledger.Client.index_faces``) against ``face_recognition``,
one core, same images, in one run (issue 10, point 6), with a per-stage breakdown of faceledger's time.

    pip install --no-deps face_recognition      # into the same virtualenv (dlib and its models are there)
    PYTHONPATH=src .venv/bin/python bench/service_speed.py [--n 200] [--repeats 3]
        [--face-model M] [--detector D] [--engine onnx|dlib] [--no-external-id] [--prefill FACES]

Images: the first ``--n`` JPEGs of shared/data/lfw_dev sorted by path (250x250), read into memory up front.
Passes (each repeat runs both, interleaved, so background load hits them alike; median over repeats):

  face_recognition -- ``load_image_file(BytesIO(jpeg))``, ``face_locations(img)``, ``face_encodings(img,
                      locations)``: its defaults (HOG, upsample 1, the 5-point landmarks, one jitter)
  faceledger       -- ``Client.index_faces(CollectionId, Image={"Bytes": jpeg}, ExternalImageId=...)`` into a
                      collection of a fresh data folder (a new one per repeat): request validation, decoding,
                      detection, HOG confirmation, landmarks, quality, the duplicate-image digest, embedding,
                      the SQLite transaction (synchronous=FULL: fsync) and the ledger entry, all of it.
                      Models are loaded (and run once) before timing.  ``--prefill N``: the collection
                      holds N (synthetic) faces already, so costs that grow with it show.  The server's default face model and
                      detector unless ``--face-model``/``--detector`` say otherwise.

The measure is process CPU time (user + system, ``time.process_time``) per image, the process pinned to one
CPU (onnxruntime then runs one thread; BLAS is held to one thread): what a core spends, whatever else runs on
the machine.  Wall time is printed beside it (it also counts waiting for fsync).  The ratio is
face_recognition's CPU per image over faceledger's (> 1: faceledger cheaper).

Per-stage breakdown (faceledger, the last repeat): every stage's *exclusive* CPU time (a stage's time
excludes the stages nested in it), by wrapping the functions that implement it:
  validate (botocore model), decode (JPEG -> pixels, input SHA-256), detect (the detector network,
  rotation search), confirm (dlib HOG around boxes), landmarks (5 points, pose), quality (brightness,
  sharpness, QualityFilter), digest (duplicate-image SHA-256 of pixels), embed (chips + face model),
  store (SQLite reads/writes, COMMIT with fsync), ledger (entry, hash chain, insert), response (shapes,
  the Client's copy), other (the rest: dispatch, Python glue).
"model" is detect + landmarks + embed (the networks); "service" is everything else.
"""

from __future__ import annotations

import os
import shutil

# one core: set before numpy/dlib/onnxruntime load their thread pools
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from engine import default_data, one_core_face_recognition  # noqa: E402  (bench/engine.py)

STAGES = ("validate", "decode", "detect", "confirm", "landmarks", "quality", "digest", "embed", "store",
          "ledger", "response", "other")
MODEL_STAGES = ("detect", "landmarks", "embed")


class StageClock:
    """Exclusive process-CPU time per stage: a wrapped function's time, less that of wrapped functions it
    calls.  Off until ``on`` is set."""

    def __init__(self) -> None:
        self.on = False
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self._stack: list[list] = []  # [stage, start, time of nested stages]
        self._patched: list[tuple[object, str, object]] = []

    def reset(self) -> None:
        self.cpu = dict.fromkeys(STAGES, 0.0)

    def wrap(self, owner: object, name: str, stage: str) -> None:
        fn = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            if not clock.on:
                return fn(*args, **kwargs)
            frame = [stage, time.process_time(), 0.0]
            clock._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                clock._stack.pop()
                spent = time.process_time() - frame[1]
                clock.cpu[stage] += spent - frame[2]
                if clock._stack:
                    clock._stack[-1][2] += spent

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        # a function stored on a class must stay a plain function (bound as a method); a staticmethod stays one
        raw = vars(owner).get(name) if isinstance(owner, type) else None
        setattr(owner, name, staticmethod(timed) if isinstance(raw, staticmethod) else timed)
        self._patched.append((owner, name, raw if raw is not None else fn))


def instrument(clock: StageClock, engine) -> None:
    """Wrap the functions of each stage (see the module's docstring) for ``engine`` (the collection's)."""
    from faceledger import client as client_mod
    from faceledger.service import dispatch, images, model, shapes
    from faceledger.service.operations import faces
    from faceledger.store import sqlite
    from faceledger.vision import geometry
    from faceledger.vision.dlib_models import HogVerifiedDetector

    clock.wrap(model, "parse_request", "validate")
    clock.wrap(images, "decode_image", "decode")
    clock.wrap(faces, "load_image", "decode")  # the checks around decoding and the input's SHA-256
    clock.wrap(type(engine.detector), "detect", "detect")
    clock.wrap(HogVerifiedDetector, "hog_score", "confirm")
    clock.wrap(type(engine.landmarks), "locate", "landmarks")
    clock.wrap(geometry, "pose_from_landmarks", "landmarks")
    clock.wrap(geometry, "landmark_dict", "landmarks")
    clock.wrap(geometry, "brightness", "quality")
    clock.wrap(geometry, "sharpness", "quality")
    clock.wrap(faces, "failing_reasons", "quality")
    clock.wrap(faces, "image_digest", "digest")
    clock.wrap(type(engine.embedder), "embed", "embed")
    for name in ("get_collection", "image_faces", "add_faces"):
        clock.wrap(sqlite.SQLiteStore, name, "store")
    clock.wrap(sqlite.UnitOfWork, "commit", "store")  # COMMIT (fsync); the ledger row is timed apart
    clock.wrap(sqlite.SQLiteStore, "_append", "ledger")
    clock.wrap(dispatch, "build_entry", "ledger")
    clock.wrap(shapes, "face_detail", "response")
    clock.wrap(shapes, "stored_face", "response")
    copy_ns = types.SimpleNamespace(deepcopy=client_mod.copy.deepcopy)
    clock.wrap(copy_ns, "deepcopy", "response")
    client_mod.copy = copy_ns  # type: ignore[assignment]


def run_face_recognition(blobs: list[bytes]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, faces) for face_recognition over ``blobs``."""
    import face_recognition

    faces = 0
    c0, w0 = time.process_time(), time.perf_counter()
    for data in blobs:
        img = face_recognition.load_image_file(io.BytesIO(data))
        locations = face_recognition.face_locations(img)
        faces += len(face_recognition.face_encodings(img, locations))
    return time.process_time() - c0, time.perf_counter() - w0, faces


def run_faceledger(blobs: list[bytes], names: list[str], args, clock: StageClock | None) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, faces indexed) for Client.index_faces over ``blobs`` into a fresh data dir."""
    from faceledger import Client
    from faceledger.service import Service, ServiceConfig

    with tempfile.TemporaryDirectory(prefix="service-speed-", dir=args.tmp) as tmp:
        if args.template is not None:
            shutil.copytree(args.template, tmp, dirs_exist_ok=True)
        config = ServiceConfig(Path(tmp), engine=args.engine, detector=args.detector, face_model=args.face_model)
        with Client(service=Service(config, engine=args.shared_engine)) as client:
            if args.template is None:
                client.create_collection(CollectionId="bench")
            faces = 0
            if clock is not None:
                clock.reset()
                clock.on = True
            c0, w0 = time.process_time(), time.perf_counter()
            for data, name in zip(blobs, names):
                req = {"CollectionId": "bench", "Image": {"Bytes": data}}
                if not args.no_external_id:
                    req["ExternalImageId"] = name
                faces += len(client.index_faces(**req)["FaceRecords"])
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            if clock is not None:
                clock.on = False
    return cpu, wall, faces


def prefilled(folder: Path, faces: int, engine, args) -> None:
    """A data folder whose collection "bench" holds ``faces`` stored faces (random unit vectors of the engine's
    size, 1,000 per synthetic image): IndexFaces into a collection that is not empty."""
    import uuid
    from datetime import datetime, timezone

    import numpy as np

    from faceledger import Client
    from faceledger.service import Service, ServiceConfig
    from faceledger.store import FaceRecord

    config = ServiceConfig(folder, engine=args.engine, detector=args.detector, face_model=args.face_model)
    service = Service(config, engine=engine)
    Client(service=service).create_collection(CollectionId="bench")
    rng = np.random.default_rng(0)
    now = datetime.now(timezone.utc)
    for start in range(0, faces, 1000):
        vectors = rng.standard_normal((min(1000, faces - start), engine.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        image = str(uuid.uuid4())
        service.store.add_faces([FaceRecord(face_id=str(uuid.uuid4()), collection_id="bench", image_id=image,
                                            external_image_id=f"prefill-{start}", bounding_box=(0.5, 0.5, 0.25, 0.25),
                                            confidence=99.0, face_model_version=engine.model_version, created_at=now,
                                            embedding=v) for v in vectors])
    service.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--n", type=int, default=200, help="number of lfw_dev images (sorted by path)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engine", choices=["onnx", "dlib"], default="onnx")
    ap.add_argument("--face-model", default=None, help="the collection's FaceModelVersion (default: the server's)")
    ap.add_argument("--detector", default=None, help="the server's --detector (default: the server's)")
    ap.add_argument("--no-external-id", action="store_true",
                    help="index without ExternalImageId (no duplicate-image digest)")
    ap.add_argument("--prefill", type=int, default=0,
                    help="faces already in the collection before timing (synthetic; default 0: an empty one)")
    ap.add_argument("--tmp", default=None, help="where the fresh data folders go (default: the system's)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = ap.parse_args()

    face_recognition = one_core_face_recognition(pin=not args.no_pin)
    from faceledger.service import Service, ServiceConfig
    from faceledger.vision.image import decode_image

    paths = sorted((args.data / "lfw_dev").glob("*/*.jpg"))[: args.n]
    if not paths:
        sys.exit(f"no images under {args.data / 'lfw_dev'}")
    blobs = [p.read_bytes() for p in paths]
    names = [p.stem for p in paths]

    # load (fetch, convert, run once) the models outside the timings: the engine a collection of the chosen
    # model gets on a server with the chosen detector, shared by every fresh service below
    with tempfile.TemporaryDirectory(prefix="service-speed-", dir=args.tmp) as tmp:
        config = ServiceConfig(Path(tmp), engine=args.engine, detector=args.detector, face_model=args.face_model)
        warm = Service(config)
        args.shared_engine = warm.engine
        warm.close()
    engine = args.shared_engine
    engine.analyze(decode_image(blobs[0]).pixels)
    img0 = face_recognition.load_image_file(io.BytesIO(blobs[0]))
    face_recognition.face_encodings(img0, face_recognition.face_locations(img0))
    args.template = None
    template_dir = None
    if args.prefill > 0:
        template_dir = tempfile.TemporaryDirectory(prefix="service-speed-template-", dir=args.tmp)
        args.template = Path(template_dir.name)
        prefilled(args.template, args.prefill, engine, args)
    print(f"faceledger: engine {args.engine}, detector {engine.detector.name}, landmarks {engine.landmarks.name}, "
          f"face model {engine.model_version}; ExternalImageId {'no' if args.no_external_id else 'yes'}; "
          f"faces in the collection before: {args.prefill}")
    print("face_recognition: face_locations (HOG, upsample 1) + face_encodings (5-point, 1 jitter)")
    print(f"images: {len(blobs)} of {args.data / 'lfw_dev'} (sorted by path), {args.repeats} repeats, interleaved")

    clock = StageClock()
    instrument(clock, engine)
    fr_cpu, fr_wall, fl_cpu, fl_wall = [], [], [], []
    fr_faces = fl_faces = 0
    for r in range(args.repeats):
        c, w, fr_faces = run_face_recognition(blobs)
        fr_cpu.append(c)
        fr_wall.append(w)
        c, w, fl_faces = run_faceledger(blobs, names, args, clock if r == args.repeats - 1 else None)
        fl_cpu.append(c)
        fl_wall.append(w)
        print(f"  repeat {r + 1}/{args.repeats}: face_recognition {1000 * fr_cpu[-1] / len(blobs):.1f} ms CPU/image, "
              f"faceledger {1000 * fl_cpu[-1] / len(blobs):.1f} ms CPU/image, ratio {fr_cpu[-1] / fl_cpu[-1]:.2f}x",
              file=sys.stderr, flush=True)

    n = len(blobs)
    fr, fl = statistics.median(fr_cpu) / n, statistics.median(fl_cpu) / n
    print()
    print("| pass | ms CPU / image | ms wall / image | faces | CPU ratio fr/fl |")
    print("|---|---|---|---|---|")
    print(f"| face_recognition (locations + encodings) | {1000 * fr:.2f} | {1000 * statistics.median(fr_wall) / n:.2f} "
          f"| {fr_faces} | 1.00 |")
    print(f"| faceledger Client.index_faces | {1000 * fl:.2f} | {1000 * statistics.median(fl_wall) / n:.2f} "
          f"| {fl_faces} indexed | **{fr / fl:.2f}x** |")
    ratios = [a / b for a, b in zip(fr_cpu, fl_cpu)]
    print(f"\nratio per repeat (both passes back to back): {min(ratios):.2f}x to {max(ratios):.2f}x")

    total = fl_cpu[-1]
    clock.cpu["other"] = max(0.0, total - sum(v for k, v in clock.cpu.items() if k != "other"))
    model = sum(clock.cpu[s] for s in MODEL_STAGES)
    print()
    print(f"faceledger per stage (exclusive CPU, last repeat, {n} images, {1000 * total / n:.2f} ms/image):")
    print("| stage | ms CPU / image | share |")
    print("|---|---|---|")
    for stage in STAGES:
        print(f"| {stage}{' (model)' if stage in MODEL_STAGES else ''} | {1000 * clock.cpu[stage] / n:.2f} "
              f"| {100 * clock.cpu[stage] / total:.1f}% |")
    print(f"| **model** (detect + landmarks + embed) | {1000 * model / n:.2f} | {100 * model / total:.1f}% |")
    print(f"| **service** (the rest) | {1000 * (total - model) / n:.2f} | {100 * (total - model) / total:.1f}% |")
    print(f"\nface_recognition / faceledger's model stages alone: {fr / (model / n):.2f}x; "
          f"through the service: {fr / fl:.2f}x")
    if template_dir is not None:
        template_dir.cleanup()


if __name__ == "__main__":
    main()
