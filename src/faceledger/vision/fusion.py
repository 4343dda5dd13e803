"""``faceledger-fusion-v1``: dlib's ResNet and faceres, fused into one unit vector.

The default face model (see docs/models.md and docs/evaluation.md, "Make 1:N search safe"). For each
face, from one set of 5-point landmarks:

* ``d``: dlib-resnet-v1's descriptor of the 150 px chip, L2-normalised (128-d);
* ``f``: faceres's descriptor (its authors' preprocessing, 224 px chip with dlib padding 0.5),
  L2-normalised (1024-d);
* the face's vector is ``[sqrt(w) d, f] / sqrt(w + 1)`` with ``w = 2``: a unit vector whose cosine with
  another is ``(w cos_d + cos_f) / (w + 1)``, the fused score.  Euclidean distance between unit vectors
  (``sqrt(2 - 2 cos)``) ranks exactly as that score, so stores and indexes keep Euclidean distance.

Measured on the Congress-style split of lfw_dev (bench/identify_models.py): mated rank-1 at no more than
one false match among 500 strangers 0.664 (two: 0.683), against 0.307 (0.388) for dlib's descriptor as
face_recognition uses it. Averaging in each chip's mirror image (``flip=True``) gave 0.657 (0.663): no
gain at one or two false matches (+0.02 to +0.05 at five to ten) for twice the cost, so the model does
not flip. Embeddings are 1152 floats (4.5 KiB a face), nine times dlib's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["FusedChips", "FusionEmbedder", "FUSION_WEIGHT", "FUSION_MODEL"]

FUSION_MODEL = "faceledger-fusion-v1"
#: weight of the dlib cosine against faceres's (measured in bench/identify_models.py --weights)
FUSION_WEIGHT = 2.0
FACERES_PADDING = 0.5


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


@dataclass
class FusedChips:
    """The two aligned chips of each face: ``dlib`` (N, 150, 150, 3) and ``faceres`` (N, 224, 224, 3)."""

    dlib: np.ndarray
    faceres: np.ndarray

    def __len__(self) -> int:
        return len(self.dlib)


class FusionEmbedder:
    """The fused descriptor (1152-d, unit length)."""

    name = FUSION_MODEL

    def __init__(self, dlib_embedder=None, faceres_embedder=None, *, weight: float = FUSION_WEIGHT,
                 flip: bool = False) -> None:
        from .faceres import FaceresEmbedder
        from .onnx_models import OnnxResNetEmbedder

        self.dlib = dlib_embedder if dlib_embedder is not None else OnnxResNetEmbedder()
        self.faceres = faceres_embedder if faceres_embedder is not None else FaceresEmbedder(
            padding=FACERES_PADDING, flip=False)
        self.weight = float(weight)
        #: average each chip's descriptor with its mirror image's (not faceledger-fusion-v1: see above)
        self.flip = bool(flip)
        if self.flip:
            self.name = FUSION_MODEL + "-flip"
        self.dim = int(self.dlib.dim) + int(self.faceres.dim)

    def chips(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> FusedChips:
        return FusedChips(self.dlib.chips(image, landmarks), self.faceres.chips(image, landmarks))

    @staticmethod
    def join_chips(parts: Sequence[FusedChips]) -> FusedChips:
        return FusedChips(np.concatenate([p.dlib for p in parts]), np.concatenate([p.faceres for p in parts]))

    def embed_chips(self, chips: FusedChips) -> np.ndarray:
        n = len(chips)
        if n == 0:
            return np.empty((0, self.dim), np.float32)
        if self.flip:
            d = _unit(self.dlib.embed_chips(np.ascontiguousarray(np.concatenate([chips.dlib, chips.dlib[:, :, ::-1]]))))
            f = _unit(self.faceres.embed_chips(np.ascontiguousarray(
                np.concatenate([chips.faceres, chips.faceres[:, :, ::-1]]))))
            d, f = _unit(d[:n] + d[n:]), _unit(f[:n] + f[n:])
        else:
            d = _unit(self.dlib.embed_chips(chips.dlib))
            f = _unit(self.faceres.embed_chips(chips.faceres))
        w = self.weight
        return np.hstack([math.sqrt(w) * d, f]).astype(np.float32) / np.float32(math.sqrt(w + 1.0))

    def embed(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed_chips(self.chips(image, landmarks))
