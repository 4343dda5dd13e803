"""Faces at any rotation: photos turned 90, 180 or 270 degrees without an EXIF tag.

:class:`AnyRotation` wraps a detector and a landmark model.  It runs the detector on the image as given
and, only when that finds no face of at least ``min_confidence`` (QualityFilter AUTO's 70 by default),
on the image turned 90, 180 and 270 degrees; among the turns whose best face reaches ``min_confidence``,
the one with the highest wins, else the upright pass's result stands (so a weak upright box does not hide
a clear turned face, and a weak turned box never replaces the upright answer).  For a turned
image, the landmarks are located on the turned pixels (where the face is upright for the landmark
model) and, with the box, mapped back into the image's own frame: a :class:`RotatedDetection` carries
its dlib-order points (``shape5``) and the turn (``rotation``: degrees counter-clockwise that made the
face upright, 0/90/180/270).  :class:`faceledger.vision.yunet.KeypointLandmarks` returns those points as
the face's landmarks, so the engine's pose has Roll over -180..180 (dlib's order is anatomical) and the
embedder's alignment (a similarity fitted to the points) turns the face upright again.

Cost: one detector pass for an image with a face upright; four for an image without one (measured in
``bench/detectors.py --rotation``: on 200 lfw_dev images turned 90 degrees, the default detector finds 0
without the search and 199 with it, at 0.065 s an image against 0.015; images without a face cost 4x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import Detection

__all__ = ["AUTO_CONFIDENCE", "AnyRotation", "RotatedDetection", "unrotate_points"]

#: QualityFilter AUTO's (MEDIUM's) detector-confidence bar (service/quality.py).
AUTO_CONFIDENCE = 70.0


@dataclass(frozen=True)
class RotatedDetection(Detection):
    """A face found on the image turned ``rotation`` degrees counter-clockwise; box, ``shape5`` ((5, 2)
    dlib-order points) and ``keypoints`` (the detector's own, if any) in the image's own frame."""

    rotation: int = 0
    shape5: tuple[tuple[float, float], ...] = ()
    keypoints: tuple[tuple[float, float], ...] = ()


def unrotate_points(points: np.ndarray, k: int, height: int, width: int) -> np.ndarray:
    """Points (..., 2) (x, y in pixels, edges at integers) on ``np.rot90(image, k)`` -> the same points on
    ``image`` (``height`` x ``width``).  ``np.rot90(a, 1)[i, j] == a[j, width - 1 - i]``, so a point
    (x', y') of the once-turned image is (width - y', x') of the image."""
    p = np.asarray(points, dtype=np.float64)
    x, y = p[..., 0], p[..., 1]
    k %= 4
    if k == 0:
        out = (x, y)
    elif k == 1:
        out = (width - y, x)
    elif k == 2:
        out = (width - x, height - y)
    else:
        out = (y, height - x)
    return np.stack(out, axis=-1)


class AnyRotation:
    """``detector`` at any multiple of 90 degrees (see the module's docstring).  ``landmarks`` (a
    LandmarkModel) locates each turned face's points on the turned image."""

    def __init__(self, detector, landmarks, *, min_confidence: float = AUTO_CONFIDENCE) -> None:
        self.inner = detector
        self.landmarks = landmarks
        self.min_confidence = float(min_confidence)
        self.name = f"{detector.name}-anyrotation"

    def detect(self, image: np.ndarray) -> list[Detection]:
        img = np.ascontiguousarray(image)
        best = list(self.inner.detect(img))
        if any(d.confidence >= self.min_confidence for d in best):
            return best
        best_k, top = 0, max((d.confidence for d in best), default=-1.0)
        turned: list[Detection] = []
        for k in (1, 2, 3):
            rot = np.ascontiguousarray(np.rot90(img, k))
            found = list(self.inner.detect(rot))
            conf = max((d.confidence for d in found), default=-1.0)
            if conf >= self.min_confidence and conf > top:
                best_k, top, turned, best_rot = k, conf, found, rot
        if best_k == 0:
            return best
        return [self._back(d, best_rot, best_k, img.shape[0], img.shape[1]) for d in turned]

    def _back(self, det: Detection, rot: np.ndarray, k: int, height: int, width: int) -> RotatedDetection:
        pts = np.asarray(self.landmarks.locate(rot, det), dtype=np.float64)
        corners = unrotate_points(np.array([[det.left, det.top], [det.right, det.bottom]]), k, height, width)
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        kps = getattr(det, "keypoints", ())
        kps_back = unrotate_points(np.asarray(kps), k, height, width) if len(kps) else np.zeros((0, 2))
        return RotatedDetection(
            left=float(x0), top=float(y0), right=float(x1), bottom=float(y1), score=det.score,
            confidence=det.confidence, rotation=90 * k,
            shape5=tuple((float(a), float(b)) for a, b in unrotate_points(pts, k, height, width)),
            keypoints=tuple((float(a), float(b)) for a, b in kps_back))
