"""The face engine: detect -> 5 landmarks -> pose/quality -> embedding.

Pure computation on decoded RGB pixels; knows nothing about HTTP, storage or
collections.  The dlib implementations of the three model protocols live in
:mod:`faceledger.vision.dlib_models`; :func:`default_engine` wires them up.
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from . import geometry
from .face_quality import QualityMeasures, measure

__all__ = [
    "BLAZEFACE_SCORE_THRESHOLD",
    "BLAZEFACE_TILE",
    "BLAZEFACE_VARIANT",
    "DEFAULT_ENGINE",
    "DEFAULT_UPSAMPLE",
    "DETECTORS",
    "ENGINES",
    "UPSAMPLE_MAX_PIXELS",
    "Detection",
    "FaceAnalysis",
    "FaceDetector",
    "FaceEmbedder",
    "FaceEngine",
    "LandmarkModel",
    "Pose",
    "Quality",
    "default_detector",
    "default_engine",
    "default_workers",
    "landmark_source",
]

#: The "onnx" engine's detector (default_engine(upsample=None, engine="onnx")): BlazeFace
#: ("blazeface-back", 256x256 input) on the whole letterboxed image plus overlapping
#: 256-px tiles at full resolution, score >= 0.6, NMS at IoU 0.3, then HOG's check.  Chosen by
#: measurement (bench/detect_compare.py; docs/engine.md, "The onnx engine's detector").
BLAZEFACE_VARIANT = "blazeface-back"
BLAZEFACE_TILE = 256
BLAZEFACE_SCORE_THRESHOLD = 0.6
BLAZEFACE_IOU_THRESHOLD = 0.3
#: ... each box then checked by dlib's HOG on a crop around it (dlib_models.HogVerifiedDetector):
#: kept when HOG scores above this near its centre ...
BLAZEFACE_HOG_CHECK = -0.6
#: ... and above BLAZEFACE_HOG_CHECK_LARGE for boxes at least BLAZEFACE_HOG_CHECK_LARGE_PX wide
#: (HOG sees large faces well: a low score there is a false box, e.g. the blurred background of
#: the knn examples' biden2.jpg, BlazeFace 0.74, HOG -0.30).
BLAZEFACE_HOG_CHECK_LARGE_PX = 80
BLAZEFACE_HOG_CHECK_LARGE = 0.0
#: The "onnx" engine's detector with upsample=None: "blazeface" (the above) or "hog" (dlib's HOG,
#: as the "dlib" engine).  BlazeFace+check: WIDER subset recall 33/96 against HOG's 6/96, 2 false
#: boxes; lfw_dev failures to enrol 34 of 7,926 against HOG's 41 (docs/engine.md).
ONNX_DETECTOR = "blazeface"
#: Detectors the "onnx" engine can run (default_engine(detector=...)): "blazeface" (the above) and "yunet"
#: (YuNet 2023mar with its own five points, vision/yunet.py: yunet.yunet_detector()), each with HOG's
#: confirmation of the boxes AUTO could enrol (vision/confirm.py) and searching the image turned
#: 90/180/270 degrees when no confident face is found upright (vision/rotation.py); and "hog".
DETECTORS = ("blazeface", "yunet", "hog")

#: HOG pyramid up-samplings used by default_engine() when none is given for the
#: "dlib" engine, or when an upsample is given to either engine ...
DEFAULT_UPSAMPLE = 1
#: ... for images with fewer pixels than 3840 x 2160 (4 x 1920 x 1080); images that
#: size and larger are run at upsample 0.  Upsample 1 finds faces down to ~40 px,
#: upsample 0 down to ~80 px: this follows Rekognition's documented floor (40x40 px in
#: a 1920x1080 image, proportionally larger above), and keeps a 12 Mpx photo under
#: a second.  See docs/engine.md, "Choosing the default upsample".
UPSAMPLE_MAX_PIXELS: int | None = 4 * 1920 * 1080 - 1


@dataclass(frozen=True)
class Detection:
    left: float
    top: float
    right: float  # exclusive: right - left is the width in pixels
    bottom: float  # exclusive
    score: float  # raw detector score
    confidence: float  # 0-100, monotonic in score (see dlib_models.hog_confidence)

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)


@dataclass(frozen=True)
class Pose:
    roll: float
    yaw: float
    pitch: float


@dataclass(frozen=True)
class Quality:
    brightness: float
    sharpness: float
    #: vision.face_quality's measures (face size, detail, noise, blockiness, contrast, covered share):
    #: how far the face is from the range the Similarity tables were calibrated on
    measures: QualityMeasures | None = None


@dataclass
class FaceAnalysis:
    detection: Detection
    landmarks: dict[str, tuple[float, float]]
    pose: Pose
    quality: Quality
    embedding: np.ndarray | None
    #: the (5, 2) points (pixels, dlib order) the landmark model located and the embedder aligns on, kept so
    #: that embedding the face later (:meth:`FaceEngine.embed`) does not locate them again
    points: np.ndarray | None = field(default=None, repr=False, compare=False)


@runtime_checkable
class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


@runtime_checkable
class LandmarkModel(Protocol):
    name: str

    def locate(self, image: np.ndarray, detection: Detection) -> np.ndarray: ...


@runtime_checkable
class FaceEmbedder(Protocol):
    name: str
    dim: int

    def embed(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray: ...


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}"
        )
    return np.ascontiguousarray(image)


def usable_cpus(env_var: str | None = None) -> int:
    """``$env_var`` when set, else the number of CPUs this process may run on (its affinity)."""
    env = os.environ.get(env_var) if env_var else None
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Threads for :meth:`FaceEngine.analyze_many` and the CLI's folder indexing:
    ``$FACELEDGER_WORKERS``, else the CPUs this process may run on."""
    return usable_cpus("FACELEDGER_WORKERS")


class FaceEngine:
    def __init__(
        self, detector: FaceDetector, landmarks: LandmarkModel, embedder: FaceEmbedder
    ) -> None:
        self.detector = detector
        self.landmarks = landmarks
        self.embedder = embedder

    @property
    def model_version(self) -> str:
        """The embedder's name; embeddings from different versions are not comparable."""
        return self.embedder.name

    @property
    def dim(self) -> int:
        return int(self.embedder.dim)

    def analyze(
        self, image: np.ndarray, *, embed: bool = True, max_faces: int | None = None
    ) -> list[FaceAnalysis]:
        """All faces, largest box first; ``max_faces`` keeps the largest ones.

        Ties in area keep the detector's order (higher score first for HOG).  Safe to call
        from several threads at once: detection (most of the time) runs in parallel.
        """
        img = _check_image(image)
        faces, shapes = self._locate(img, max_faces)
        if embed and faces:
            embeddings = np.asarray(self.embedder.embed(img, shapes), dtype=np.float32)
            for face, vector in zip(faces, embeddings):
                face.embedding = vector.copy()
        return faces

    def _locate(
        self, img: np.ndarray, max_faces: int | None
    ) -> tuple[list[FaceAnalysis], list[np.ndarray]]:
        """Detect, landmarks, pose and quality (everything but the embedding)."""
        if max_faces is not None and max_faces < 0:
            raise ValueError("max_faces must be >= 0")
        dets = list(self.detector.detect(img))
        # stable sort: largest area first, ties by score
        dets.sort(key=lambda d: (-d.area, -d.score))
        if max_faces is not None:
            dets = dets[:max_faces]
        if not dets:
            return [], []
        shapes = [np.asarray(self.landmarks.locate(img, d), dtype=np.float64) for d in dets]
        out = []
        for det, pts in zip(dets, shapes):
            roll, yaw, pitch = geometry.pose_from_landmarks(pts)
            box = (det.left, det.top, det.right, det.bottom)
            out.append(
                FaceAnalysis(
                    detection=det,
                    landmarks=geometry.landmark_dict(pts),
                    pose=Pose(roll=roll, yaw=yaw, pitch=pitch),
                    quality=Quality(
                        brightness=geometry.brightness(img, box),
                        sharpness=geometry.sharpness(img, box),
                        measures=measure(img, box, pts),
                    ),
                    embedding=None,
                    points=pts,
                )
            )
        return out, shapes

    def embed(self, image: np.ndarray, faces: Sequence[FaceAnalysis]) -> None:
        """Set the ``embedding`` of ``faces`` (found by ``analyze(image, embed=False)``): the vectors
        ``analyze(image)`` gives, computed only for these faces, on the points located then (located
        again for a face that has none)."""
        if not faces:
            return
        img = _check_image(image)
        shapes = [f.points if f.points is not None else
                  np.asarray(self.landmarks.locate(img, f.detection), dtype=np.float64) for f in faces]
        vectors = np.asarray(self.embedder.embed(img, shapes), dtype=np.float32)
        for face, vector in zip(faces, vectors):
            face.embedding = vector.copy()

    def analyze_many(
        self,
        items: Iterable[Any],
        *,
        load: Callable[[Any], np.ndarray] | None = None,
        embed: bool = True,
        max_faces: int | None = None,
        workers: int | None = None,
        batch_faces: int = 32,
    ) -> Iterator[list[FaceAnalysis] | Exception]:
        """:meth:`analyze` for many images, in input order, on ``workers`` threads.

        Each item goes through ``load`` (e.g. read and decode a file; default: the item is
        the RGB array), detection, landmarks, pose, quality and, for an embedder with
        ``chips``/``embed_chips`` (the ONNX one), chip extraction on a worker thread; the
        chips of consecutive images are then embedded together in batches of about
        ``batch_faces`` faces.  Yields, per item, its faces (as ``analyze`` would return them,
        the same vectors) or the exception that ``load`` or the analysis raised.  ``workers``:
        default :func:`default_workers` (the CPUs this process may use).
        """
        from concurrent.futures import ThreadPoolExecutor

        n = default_workers() if workers is None else max(1, int(workers))
        chipper = getattr(self.embedder, "chips", None) if embed else None
        batched = chipper is not None and hasattr(self.embedder, "embed_chips")
        join = getattr(self.embedder, "join_chips", np.concatenate)

        def stage(item: Any) -> tuple[list[FaceAnalysis], list[np.ndarray], np.ndarray | None, Any]:
            img = _check_image(load(item) if load is not None else item)
            faces, shapes = self._locate(img, max_faces)
            if not (embed and faces):
                return faces, shapes, None, None
            if batched:
                return faces, shapes, chipper(img, shapes), None
            return faces, shapes, None, img

        def finish(done: list[Any]) -> Iterator[list[FaceAnalysis] | Exception]:
            chips = [r[2] for r in done if not isinstance(r, Exception) and r[2] is not None]
            vectors = (
                np.asarray(self.embedder.embed_chips(join(chips)), dtype=np.float32)
                if chips else None
            )
            at = 0
            for r in done:
                if isinstance(r, Exception):
                    yield r
                    continue
                faces, shapes, c, img = r
                if c is not None:
                    emb = vectors[at : at + len(c)]
                    at += len(c)
                elif img is not None:
                    emb = np.asarray(self.embedder.embed(img, shapes), dtype=np.float32)
                else:
                    emb = None
                if emb is not None:
                    for face, vector in zip(faces, emb):
                        face.embedding = vector.copy()
                yield faces

        window = 2 * n + 2
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="faceledger-analyze") as pool:
            pending: collections.deque = collections.deque()
            done: list[Any] = []
            done_faces = 0
            it = iter(items)
            exhausted = False
            try:
                while True:
                    while not exhausted and len(pending) < window:
                        try:
                            item = next(it)
                        except StopIteration:
                            exhausted = True
                            break
                        pending.append(pool.submit(stage, item))
                    if not pending:
                        break
                    try:
                        r = pending.popleft().result()
                    except Exception as exc:  # noqa: BLE001 - reported per item
                        r = exc
                    done.append(r)
                    if not isinstance(r, Exception) and r[2] is not None:
                        done_faces += len(r[2])
                    # embed when the batch is full, or when nothing more is ready to join it
                    if done_faces >= batch_faces or not pending or not pending[0].done():
                        yield from finish(done)
                        done, done_faces = [], 0
                if done:
                    yield from finish(done)
            finally:
                for f in pending:
                    f.cancel()

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Euclidean distance.  ``a`` (dim,) -> (m,); ``a`` (n, dim) -> (n, m).
        ``b`` is (m, dim) (a single (dim,) vector is treated as m=1)."""
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if b.ndim == 1:
            b = b[None, :]
        single = a.ndim == 1
        if single:
            a = a[None, :]
        if a.shape[-1] != b.shape[-1]:
            raise ValueError(f"dimension mismatch: {a.shape} vs {b.shape}")
        d2 = (
            np.sum(a * a, axis=1)[:, None]
            + np.sum(b * b, axis=1)[None, :]
            - 2.0 * (a @ b.T)
        )
        d = np.sqrt(np.maximum(d2, 0.0))
        return d[0] if single else d


#: The engines default_engine() can build: "onnx" (the default: models converted to ONNX and run by
#: onnxruntime, batched) and "dlib" (the reference: dlib's HOG detector and its own
#: ``compute_face_descriptor``, one face per call; dlib-resnet-v1 only).
ENGINES = ("onnx", "dlib")
DEFAULT_ENGINE = "onnx"

#: Face models (Rekognition's FaceModelVersion): what a face's vector is.  Vectors of different models
#: are not comparable; a collection keeps the model it was created with (docs/models.md).
#:   faceledger-fusion-v1: dlib-resnet-v1 and faceres, fused (vision/fusion.py), 1152-d (the default until 2026-11-30)
#:   dlib-resnet-v1: dlib's ResNet descriptor as dlib computes it, 128-d
#:   faceledger-sface-v1: SFace 2021dec (vision/sface.py) on YuNet's box and five points, 128-d (the default
#:                        earlier on 2026-11-30)
#:   faceledger-sface-v2: SFace 2021dec on YuNet's box and dlib's 5-point model's points on that box, 128-d
FACE_MODELS = ("faceledger-sface-v2", "faceledger-sface-v1", "faceledger-fusion-v1", "dlib-resnet-v1")
DEFAULT_FACE_MODEL = "faceledger-sface-v2"
#: The face models whose vectors are SFace's (one onnxruntime session serves them all): they differ only in
#: where the five points the face is aligned on come from (FACE_MODEL_LANDMARKS).
SFACE_MODELS = ("faceledger-sface-v2", "faceledger-sface-v1")
#: Each face model's detector and landmarks when none is asked for (default_engine(detector=None)): a model is
#: measured and calibrated with one pipeline, and a collection keeps it.  faceledger-sface-v1 and -v2: YuNet
#: (+ HOG's confirmation, any rotation); the older models: BlazeFace tiles + HOG check (ONNX_DETECTOR) and
#: dlib's 5-point model.  Chosen by measurement: bench/face_models.py, docs/models.md.
FACE_MODEL_DETECTORS = {"faceledger-sface-v2": "yunet", "faceledger-sface-v1": "yunet"}
#: Where a face model's five points come from when its detector brings its own (YuNet): "detector" (YuNet's
#: points through yunet.keypoints_to_shape5) or "dlib" (dlib's 5-point model on the detector's box; on a turned
#: photo, on the turned pixels).  SFace on lfw_dev (bench/face_models.py, 10 Congress splits): dlib's points
#: 0.9873 pairs_dev, TAR@1e-4 0.978, rank-1 0.817 / 0.915 (1 / 2 photos) against YuNet's 0.9847, 0.953, 0.781
#: / 0.884: faceledger-sface-v2 is v1 with dlib's points.  Models not listed: yunet.YUNET_LANDMARKS.
FACE_MODEL_LANDMARKS = {"faceledger-sface-v2": "dlib", "faceledger-sface-v1": "detector"}

_engines: dict[tuple[int | None, str, str, str | None], FaceEngine] = {}
_engines_lock = threading.Lock()


def default_face_model(engine: str = DEFAULT_ENGINE) -> str:
    """The face model new collections get with this runtime (the dlib runtime has only dlib's)."""
    return DEFAULT_FACE_MODEL if engine == "onnx" else "dlib-resnet-v1"


def default_detector(face_model: str | None = None) -> str:
    """The detector a face model's engine runs when none is asked for (FACE_MODEL_DETECTORS, else
    ONNX_DETECTOR)."""
    return FACE_MODEL_DETECTORS.get(face_model or DEFAULT_FACE_MODEL, ONNX_DETECTOR)


def landmark_source(face_model: str) -> str:
    """Where ``face_model``'s engine takes the five points from when its detector brings its own: "detector" or
    "dlib" (FACE_MODEL_LANDMARKS, else yunet.YUNET_LANDMARKS)."""
    from .yunet import YUNET_LANDMARKS

    return FACE_MODEL_LANDMARKS.get(face_model, "detector" if YUNET_LANDMARKS == "yunet" else "dlib")


def default_engine(upsample: int | None = None, engine: str = DEFAULT_ENGINE,
                   face_model: str | None = None, detector: str | None = None) -> FaceEngine:
    """The process-wide engine (detector + landmarks + embedder), cached per
    ``(upsample, engine, face_model, detector)``.

    ``engine="onnx"`` (default) with ``upsample=None``: BlazeFace on tiles (see
    BLAZEFACE_*), run by onnxruntime.  ``engine="dlib"``, or an explicit ``upsample``
    with either engine: dlib's HOG; ``upsample=None`` then uses the measured default
    (DEFAULT_UPSAMPLE, with the image-size rule UPSAMPLE_MAX_PIXELS).  ``face_model``
    (see FACE_MODELS; default :func:`default_face_model`) picks the embedder; for
    ``dlib-resnet-v1`` both runtimes produce the same vectors for the same landmarks
    (cosine >= 0.9999 to dlib's for every face, tests/test_onnx_embedder.py).  Models are
    loaded once and shared by all engines; each dlib model is guarded by its own lock.
    ``detector`` (see DETECTORS; default :func:`default_detector` of the face model: "yunet" for
    faceledger-sface-v1 and -v2, ONNX_DETECTOR for the others) picks the "onnx" engine's detector when no
    ``upsample`` is given; "yunet" also brings its own landmarks (yunet.KeypointLandmarks), used or not as
    :func:`landmark_source` says for the face model.
    """
    if detector is not None and detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    if detector not in (None, "hog") and (engine == "dlib" or upsample is not None):
        raise ValueError(f"the {detector} detector runs on the onnx engine without an upsample")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    face_model = default_face_model(engine) if face_model is None else face_model
    if face_model not in FACE_MODELS:
        raise ValueError(f"unknown face model {face_model!r}; choose one of {', '.join(FACE_MODELS)}")
    choice = detector or default_detector(face_model)
    if engine == "dlib" and face_model != "dlib-resnet-v1":
        raise ValueError(f"the dlib engine computes dlib-resnet-v1 only, not {face_model}")
    key = (upsample, engine, face_model, choice)
    eng = _engines.get(key)
    if eng is not None:
        return eng
    with _engines_lock:
        eng = _engines.get(key)
        if eng is None:
            from .dlib_models import HogFaceDetector, ResNetEmbedder, Shape5Landmarks, load_models

            models = load_models()
            landmarks: LandmarkModel = Shape5Landmarks(models)
            detector: FaceDetector  # type: ignore[no-redef]  (the choice is in ``choice``)
            if upsample is None and engine == "onnx" and choice == "yunet":
                from .rotation import AnyRotation
                from .yunet import KeypointLandmarks, yunet_detector

                landmarks = KeypointLandmarks(landmarks, use_keypoints=landmark_source(face_model) == "detector")
                detector = AnyRotation(yunet_detector(), landmarks)
            elif upsample is None and engine == "onnx" and choice == "blazeface":
                from .confirm import HogConfirmed
                from .rotation import AnyRotation
                from .yunet import KeypointLandmarks

                # AUTO-sized boxes need HOG at its own threshold, else Confidence < AUTO's (vision/confirm.py);
                # no confident face upright: the image turned 90/180/270 degrees (vision/rotation.py)
                landmarks = KeypointLandmarks(landmarks, use_keypoints=landmark_source(face_model) == "detector")
                detector = AnyRotation(HogConfirmed(blazeface_detector()), landmarks)
            elif upsample is None:
                detector = HogFaceDetector(
                    DEFAULT_UPSAMPLE,
                    upsample_max_pixels=UPSAMPLE_MAX_PIXELS,
                    large_upsample=0,
                    models=models,
                )
            else:
                detector = HogFaceDetector(int(upsample), models=models)
            embedder: FaceEmbedder
            if face_model in SFACE_MODELS:
                embedder = _sface_embedder(face_model)
            elif face_model == "faceledger-fusion-v1":
                embedder = _fusion_embedder()
            elif engine == "onnx":
                embedder = _onnx_embedder()
            else:
                embedder = ResNetEmbedder(models)
            eng = FaceEngine(detector, landmarks, embedder)
            _engines[key] = eng
    return eng


_onnx: FaceEmbedder | None = None
_fusion: FaceEmbedder | None = None
_sface: dict[str, FaceEmbedder] = {}
_blaze: FaceDetector | None = None


def blazeface_detector() -> FaceDetector:
    """BlazeFace on tiles checked by HOG (the BLAZEFACE_* settings), one per process."""
    from .dlib_models import HogVerifiedDetector, load_models

    return HogVerifiedDetector(_blazeface(), min_score=BLAZEFACE_HOG_CHECK,
                               large_px=BLAZEFACE_HOG_CHECK_LARGE_PX, large_min_score=BLAZEFACE_HOG_CHECK_LARGE,
                               models=load_models())


def _blazeface() -> FaceDetector:
    """One BlazeFace detector per process (called under _engines_lock)."""
    global _blaze
    if _blaze is None:
        from .tfjs_models import BlazeFaceDetector

        _blaze = BlazeFaceDetector(
            BLAZEFACE_VARIANT,
            tile=BLAZEFACE_TILE,
            score_threshold=BLAZEFACE_SCORE_THRESHOLD,
            iou_threshold=BLAZEFACE_IOU_THRESHOLD,
        )
    return _blaze


def _onnx_embedder() -> FaceEmbedder:
    """One onnxruntime session per process, shared by all engines (called under
    _engines_lock).  onnxruntime's ``run`` is thread-safe."""
    global _onnx
    if _onnx is None:
        from .onnx_models import OnnxResNetEmbedder

        _onnx = OnnxResNetEmbedder()
    return _onnx


def _fusion_embedder() -> FaceEmbedder:
    """One fused embedder per process, on the shared dlib ONNX session (called under _engines_lock)."""
    global _fusion
    if _fusion is None:
        from .fusion import FusionEmbedder

        _fusion = FusionEmbedder(_onnx_embedder())
    return _fusion


def _sface_embedder(face_model: str) -> FaceEmbedder:
    """SFace named ``face_model`` (one of SFACE_MODELS), one per model and process, all on one onnxruntime
    session (sface.SFaceEmbedder shares it; called under _engines_lock)."""
    emb = _sface.get(face_model)
    if emb is None:
        from .sface import SFaceEmbedder

        emb = _sface[face_model] = SFaceEmbedder(name=face_model)
    return emb
