"""Faces IndexFaces would enrol at QualityFilter AUTO must be confirmed by a second, independent detector.

Detectors trained on faces also fire on animals' faces (groups/dlib_faces/dogs.jpg) and on patterns, at
confidences a real face has.  :class:`HogConfirmed` wraps a detector: every box AUTO could enrol (at least
``AUTO_MIN_PX`` wide, Confidence at least ``AUTO_CONFIDENCE``: QualityFilter MEDIUM/AUTO's bars in
service/quality.py, kept equal by tests/test_yunet.py) whose own score is below ``confirm_score`` must be
confirmed by dlib's HOG (a HOG detection near its centre scoring above ``HOG_CONFIRM``, HOG's own
detection threshold); an unconfirmed box is still reported, with its Confidence lowered to
``UNCONFIRMED_CONFIDENCE`` (QualityFilter LOW's bar 50 passes, MEDIUM/AUTO's 70 does not).  So DetectFaces
and the detector's recall are unchanged, and AUTO enrols only faces two detectors agree on (or that the
first is very sure of).  Measured in bench/detectors.py (non-face images at 3 sizes x 4 turns; LFW).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .engine import Detection

__all__ = ["AUTO_CONFIDENCE", "AUTO_MIN_PX", "HOG_CONFIRM", "MAX_CONFIRMATIONS", "UNCONFIRMED_CONFIDENCE",
           "HogConfirmed"]

AUTO_MIN_PX = 36.0  # QualityFilter MEDIUM/AUTO's smallest box (service/quality.py)
AUTO_CONFIDENCE = 70.0  # ... and its Confidence bar
HOG_CONFIRM = 0.0
UNCONFIRMED_CONFIDENCE = 60.0
#: At most this many boxes are sent to HOG per image (largest first); the rest count as unconfirmed.
MAX_CONFIRMATIONS = 32


class HogConfirmed:
    """``inner``'s detections, each one that AUTO could enrol (``min_px`` wide or more, Confidence at least
    ``auto_confidence``) and scoring below ``confirm_score`` checked by dlib's HOG
    (:meth:`faceledger.vision.dlib_models.HogVerifiedDetector.hog_score`: a crop twice the box's width,
    scaled so the box is 90 px; confirmed when a HOG detection near its centre scores above ``hog_min``).
    An unconfirmed box is kept with its Confidence lowered to ``unconfirmed_confidence`` (when higher), so
    DetectFaces still shows it and IndexFaces at AUTO does not enrol it.  At most ``max_checks`` boxes are
    checked per image (the largest first; the others count as unconfirmed).  Keeps the detections' type.
    When ``inner`` is itself a HOG check (:class:`~faceledger.vision.dlib_models.HogVerifiedDetector`, BlazeFace's),
    the scores it computed are reused (``score_as``: the same decisions, HOG run once a box)."""

    def __init__(self, inner, *, confirm_score: float = math.inf, min_px: float = AUTO_MIN_PX,
                 auto_confidence: float = AUTO_CONFIDENCE, hog_min: float = HOG_CONFIRM,
                 unconfirmed_confidence: float = UNCONFIRMED_CONFIDENCE,
                 max_checks: int = MAX_CONFIRMATIONS, models=None) -> None:
        from .dlib_models import HogVerifiedDetector

        self.inner = inner
        self.confirm_score, self.min_px, self.auto_confidence = float(confirm_score), float(min_px), float(auto_confidence)
        self.unconfirmed_confidence, self.max_checks = float(unconfirmed_confidence), int(max_checks)
        self._hog = HogVerifiedDetector(inner, min_score=hog_min, models=models)
        self.name = f"{inner.name}-confirm{self.confirm_score:g}-hog{hog_min:g}"

    def needs_check(self, d: Detection) -> bool:
        return d.width >= self.min_px and d.confidence >= self.auto_confidence and d.score < self.confirm_score

    def detect(self, image: np.ndarray) -> list[Detection]:
        img = np.ascontiguousarray(image)
        known: list[float | None] | None = None
        if isinstance(self.inner, type(self._hog)):  # the inner detector ran HOG on these boxes already
            scored = self.inner.detect_scored(img)
            dets = [d for d, _ in scored]
            known = [self.inner.score_as(self._hog, s) for _, s in scored]
        else:
            dets = list(self.inner.detect(img))
        todo = sorted((i for i, d in enumerate(dets) if self.needs_check(d)), key=lambda i: -dets[i].width)
        for n, i in enumerate(todo):
            d = dets[i]
            if n < self.max_checks and self._score(img, d, known[i] if known is not None else None) > self._hog.min_score:
                continue
            dets[i] = dataclasses.replace(d, confidence=min(d.confidence, self.unconfirmed_confidence))
        return dets

    def _score(self, img: np.ndarray, d: Detection, known: float | None) -> float:
        return known if known is not None else self._hog.hog_score(img, d)
