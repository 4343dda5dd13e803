"""Rekognition-style ``Similarity`` (0-100) from embedding distance, defined by the false match rate.

The scale is fixed by the false match rate (FMR) it stands for, not by a cosmetic squashing of the
distance, so that Rekognition's default threshold of 80 means the same thing on every model:

* ``FMR(d)``: the share of impostor pairs (two different people) whose distance is ``<= d``, read from a
  table calibrated on LFW (``data/similarity-<model>.json``, built by ``bench/calibrate_similarity.py``).
  ``log10(FMR)`` is interpolated linearly in distance between table points; the table reaches FMR 1e-9
  (Similarity 100; below what LFW can measure, the table's tail is a fitted straight line in log10 FMR),
  above the last point FMR is 1 (Similarity 0).
* ``Similarity(FMR) = 40 - 10*log10(FMR)`` for ``10**-5.9 <= FMR <= 1e-2`` (60 at 1e-2, 80 at 1e-4,
  90 at 1e-5, 95 at 3.16e-6, 99 at 1.26e-6);
  ``99 + (-5.9 - log10(FMR)) / 3.1`` below (one Similarity point for the 3.1 decades from 1.26e-6 to
  1e-9: 99.5 at 3.5e-8, 100 at 1e-9 and beyond), so that a threshold can still be stated for galleries of
  millions of faces; and ``60 * (1 - FMR) / (1 - 1e-2)`` for ``FMR > 1e-2`` (continuous at 1e-2, 0 at
  FMR 1).

Similarity is therefore non-increasing in distance. For exact search, a candidate matches a threshold
``t`` iff ``distance <= max_distance(t)``. See ``docs/similarity.md`` for what the thresholds mean.

Pure numpy; imports nothing else from faceledger.
"""
from __future__ import annotations

import functools
import json
import math
from importlib import resources

import numpy as np

__all__ = ["SimilarityScale", "similarity_from_fmr", "fmr_from_similarity"]

_KNEE_FMR = 1e-2  # below: logarithmic branch; above: linear branch
_KNEE_SIM = 60.0
_LOG10_FMR_AT_99 = -5.9  # 40 - 10 * (-5.9) = 99: the logarithmic branch ends here ...
_LOG10_FMR_AT_100 = -9.0  # ... and the last Similarity point spans -5.9 to -9
_FMR_AT_100 = 10.0 ** _LOG10_FMR_AT_100


def _similarity_from_log10_fmr(log10_fmr):
    """Similarity for log10(FMR) values (array in, array out), 0..100."""
    L = np.minimum(np.asarray(log10_fmr, dtype=np.float64), 0.0)
    log_branch = 40.0 - 10.0 * L
    top_branch = 99.0 + (_LOG10_FMR_AT_99 - L) / (_LOG10_FMR_AT_99 - _LOG10_FMR_AT_100)
    fmr = np.power(10.0, L)
    lin_branch = _KNEE_SIM * (1.0 - fmr) / (1.0 - _KNEE_FMR)
    s = np.where(fmr <= _KNEE_FMR, np.where(L >= _LOG10_FMR_AT_99, log_branch, top_branch), lin_branch)
    return np.clip(s, 0.0, 100.0)


def similarity_from_fmr(fmr):
    """The definition: Similarity for a false match rate (float or array)."""
    f = np.asarray(fmr, dtype=np.float64)
    with np.errstate(divide="ignore"):
        s = _similarity_from_log10_fmr(np.log10(np.clip(f, 0.0, 1.0)))
    return float(s) if s.ndim == 0 else s


def fmr_from_similarity(similarity: float) -> float:
    """Inverse of the definition: the FMR a Similarity value stands for (100 -> 1e-9, 0 -> 1)."""
    s = float(similarity)
    if not (0.0 <= s <= 100.0) or math.isnan(s):
        raise ValueError(f"similarity must be within [0, 100], got {similarity!r}")
    if s > 99.0:
        return 10.0 ** (_LOG10_FMR_AT_99 - (s - 99.0) * (_LOG10_FMR_AT_99 - _LOG10_FMR_AT_100))
    if s >= _KNEE_SIM:
        return 10.0 ** ((40.0 - s) / 10.0)
    return 1.0 - s * (1.0 - _KNEE_FMR) / _KNEE_SIM


class SimilarityScale:
    """Maps embedding distance to Similarity 0..100 for one model (see module docstring)."""

    def __init__(self, model: str, distance, log10_fmr, meta: dict | None = None):
        d = np.asarray(distance, dtype=np.float64)
        L = np.asarray(log10_fmr, dtype=np.float64)
        if d.ndim != 1 or d.shape != L.shape or d.size < 2:
            raise ValueError("distance and log10_fmr must be 1-d arrays of the same length >= 2")
        if not (np.all(np.diff(d) > 0) and np.all(np.diff(L) > 0)):
            raise ValueError("distance and log10_fmr must both be strictly increasing")
        if L[0] > _LOG10_FMR_AT_100 + 1e-9 or L[-1] > 0.0:
            raise ValueError(f"table must start at or below log10(FMR) = {_LOG10_FMR_AT_100:g} (Similarity 100) "
                             "and end at or below 0")
        self.model = model
        self._d = d
        self._L = L
        self.meta = dict(meta or {})

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, obj: dict) -> "SimilarityScale":
        meta = {k: v for k, v in obj.items() if k not in ("distance", "log10_fmr")}
        return cls(obj["model"], obj["distance"], obj["log10_fmr"], meta)

    @classmethod
    def load(cls, model: str = "dlib-resnet-v1", band: str | None = None) -> "SimilarityScale":
        """The packaged table for ``model`` (``faceledger/data/similarity-<model>.json``); cached.

        ``band``: a quality band of the pair compared (vision.face_quality.PAIR_BANDS): ``None`` or "calibrated"
        is the model's main table; "degraded-one" / "degraded-both" (one or both faces outside the range the
        main table was calibrated on) and "covered-one" / "covered-both" (one covered face with one inside the
        range, or two covered faces) read ``similarity-<model>.<band>.json``, built by
        ``bench/degradation.py calibrate``; "turned-both" (two turned faces) by ``bench/pose_calibrate.py
        calibrate``. ValueError when the model has no such table.
        """
        return _load_packaged(model, None if band in (None, "calibrated") else band)

    @classmethod
    def has_band(cls, model: str, band: str | None) -> bool:
        """Whether ``load(model, band)`` has a table (the main one always counts)."""
        try:
            cls.load(model, band)
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------ mapping
    def log10_fmr(self, distance):
        """log10 of the impostor CDF at ``distance`` (interpolated; clipped to the table's ends)."""
        x = np.asarray(distance, dtype=np.float64)
        L = np.interp(x, self._d, self._L, left=self._L[0], right=0.0)
        return float(L) if L.ndim == 0 else L

    def distance_at_log10_fmr(self, log10_fmr: float) -> float:
        """The distance whose FMR is ``10**log10_fmr`` (the table's inverse, clipped to its ends)."""
        return float(np.interp(float(log10_fmr), self._L, self._d))

    def similarity(self, distance):
        """Similarity 0..100 for a distance (float) or distances (array, same shape)."""
        x = np.asarray(distance, dtype=np.float64)
        s = _similarity_from_log10_fmr(np.interp(x, self._d, self._L, left=self._L[0], right=0.0))
        s = np.where(np.isnan(x), 0.0, s)
        return float(s) if s.ndim == 0 else s

    def fmr(self, similarity: float) -> float:
        """The false match rate a Similarity value stands for (the definition's inverse)."""
        return fmr_from_similarity(similarity)

    def max_distance(self, similarity_threshold: float) -> float:
        """The largest distance whose Similarity is >= ``similarity_threshold`` (0 -> inf).

        For exact search: a candidate matches iff ``distance <= max_distance(threshold)``.
        """
        t = float(similarity_threshold)
        if not (0.0 <= t <= 100.0) or math.isnan(t):
            raise ValueError(f"similarity threshold must be within [0, 100], got {similarity_threshold!r}")
        if t == 0.0:
            return math.inf
        target = math.log10(fmr_from_similarity(t))
        # log10_fmr is strictly increasing, so the inverse is another linear interpolation.
        return float(np.interp(target, self._L, self._d))

    def to_dict(self) -> dict:
        out = dict(self.meta)
        out.update(model=self.model, distance=self._d.tolist(), log10_fmr=self._L.tolist())
        return out

    def __repr__(self) -> str:
        return (f"SimilarityScale(model={self.model!r}, points={self._d.size}, "
                f"d80={self.max_distance(80):.4f}, d99={self.max_distance(99):.4f})")


@functools.lru_cache(maxsize=None)
def _load_packaged(model: str, band: str | None = None) -> SimilarityScale:
    name = f"similarity-{model}.json" if band is None else f"similarity-{model}.{band}.json"
    ref = resources.files("faceledger").joinpath("data", name)
    try:
        text = ref.read_text(encoding="utf-8")
    except FileNotFoundError:
        what = "" if band is None else f" and band {band!r}"
        raise ValueError(f"no similarity table is packaged for model {model!r}{what}") from None
    obj = json.loads(text)
    if obj.get("model") != model or obj.get("band") != band:
        raise ValueError(f"similarity table {name} says model {obj.get('model')!r}, band {obj.get('band')!r}")
    return SimilarityScale.from_dict(obj)
