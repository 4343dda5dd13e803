"""Sexual content in images: nsfwjs' MobileNetV2 "mid" classifier (npm ``nsfwjs`` 4.4.0, MIT).

The package ships the TF.js graph model inside JavaScript bundles (``dist/models/mobilenet_v2_mid/*.min.js``);
:mod:`faceledger.vision.tfjs.jsbundle` reads them without running them, the project's TF.js converter turns the
graph into ONNX (cached), and onnxruntime runs it. The package is fetched from the npm registry by
:mod:`faceledger.vision.npm`, pinned to its version and sha512.

:class:`NsfwClassifier` gives the five class probabilities of the whole image (it is resized to 224x224, RGB in
0-1, as nsfwjs does): Drawing (safe drawings and anime), Hentai (explicit drawings), Neutral, Porn, Sexy
(suggestive, not explicit). It sees nothing else: no violence, drugs, alcohol, gestures, gambling or hate
symbols.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..vision import npm
from . import OnnxModel
from ..vision.models import ModelsUnavailable

PACKAGE = "nsfwjs"
MODEL_DIR = "dist/models/mobilenet_v2_mid"
CLASSES = ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")  # nsfwjs' NSFW_CLASSES, in output order
INPUT_SIZE = 224


def _onnx_path() -> Path:
    from ..vision.tfjs import convert_model_json
    from ..vision.tfjs.jsbundle import load_bundled_model
    from ..vision.tfjs_models import cached_onnx

    spec = npm.PINNED[PACKAGE]
    try:
        files = npm.package_files(PACKAGE, [f"{MODEL_DIR}/*.min.js"])
    except Exception as exc:  # registry unreachable, integrity mismatch, unwritable cache
        raise ModelsUnavailable(
            f"DetectModerationLabels needs npm {PACKAGE}@{spec.version} ({type(exc).__name__}: {exc}); fill the "
            f"model cache where the npm registry can be reached (`faceledger models fetch`), or give "
            f"`faceledger models fetch --tarball FILE` the tarball of `npm pack {PACKAGE}@{spec.version}`") from exc
    model_js = next(f for f in files if f.name == "model.min.js")

    def build():
        with tempfile.TemporaryDirectory() as tmp:
            return convert_model_json(load_bundled_model(model_js, Path(tmp)))

    return cached_onnx(f"nsfwjs-{spec.version}-mobilenet_v2_mid", build)


class NsfwClassifier(OnnxModel):
    """P(Drawing, Hentai, Neutral, Porn, Sexy) of an image (see the module's docstring). Thread-safe."""

    model_version = f"nsfwjs-{npm.PINNED[PACKAGE].version}-mobilenet_v2_mid"

    def __init__(self, threads: int = 1) -> None:
        super().__init__(_onnx_path(), threads)

    @staticmethod
    def preprocess(rgb: np.ndarray) -> np.ndarray:
        """(1, 224, 224, 3) float32 in 0-1: the whole image resized (aspect ratio not kept), as nsfwjs does."""
        image = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
        return (np.asarray(image, dtype=np.float32) / 255.0)[None]

    def classify(self, rgb: np.ndarray) -> dict[str, float]:
        """{class: probability} for ``rgb`` ((H, W, 3) uint8 RGB); the five sum to 1."""
        x = self.preprocess(rgb)
        with self._lock:
            (p,) = self._session.run(None, {self._input: x})
        return {name: float(v) for name, v in zip(CLASSES, p[0])}
