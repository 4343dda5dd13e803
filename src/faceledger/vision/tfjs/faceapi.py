"""face-api's networks as TF graphs, for the same converter as graph models.

``@vladmandic/face-api`` ships weights only (``model/<net>-weights_manifest.json``
+ shards); the architecture is in its TypeScript (``src/<net>/``).  The builders
below re-state those architectures as TF-style graph nodes (the JSON node format of
graph models), so that :func:`faceledger.vision.tfjs.convert` turns them into ONNX
exactly as it converts ``model.json`` files.  Batch-norm and scale layers are folded
into the convolution weights (in float64, then stored as float32).

* ``face_recognition_model``: the ResNet-34-like port of dlib's face descriptor;
  input (N, 150, 150, 3) RGB 0-255, output (N, 128) ``descriptor``.
* ``tiny_face_detector_model``: Tiny-YOLOv2 with separable convolutions; input
  (N, S, S, 3) RGB 0-255 (S a multiple of 32), output (N, S/32, S/32, 25) ``grid``.
* ``ssd_mobilenetv1_model``: MobileNetV1 SSD; input (N, 512, 512, 3) RGB 0-255,
  outputs ``box_encodings`` (N, 5118, 4) and ``scores`` (N, 5118); the anchors
  (``Output/extra_dim``) are returned as ``anchors`` by :func:`ssd_mobilenetv1`.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from .convert import TfGraph
from .weights import read_manifest_file

__all__ = ["GraphBuilder", "face_recognition", "ssd_mobilenetv1", "tiny_face_detector",
           "FACE_RECOGNITION_MEAN_RGB", "TINY_FACE_MEAN_RGB", "TINY_FACE_ANCHORS"]

#: from face-api src/faceRecognitionNet/FaceRecognitionNet.ts
FACE_RECOGNITION_MEAN_RGB = (122.782, 117.001, 104.298)
#: from face-api src/tinyFaceDetector/const.ts
TINY_FACE_MEAN_RGB = (117.001, 114.697, 97.404)
TINY_FACE_ANCHORS = np.array([(1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061),
                              (4.266906, 5.178857), (9.041765, 10.66308)])
TINY_FACE_IOU = 0.4
SSD_IOU = 0.5
_LEAKY = 0.10000000149011612
_BN_EPS = 0.0010000000474974513


def _attr(v):
    if isinstance(v, bool):
        return {"b": v}
    if isinstance(v, int):
        return {"i": str(v)}
    if isinstance(v, float):
        return {"f": v}
    if isinstance(v, str):
        if v.startswith("DT_"):
            return {"type": v}
        return {"s": base64.b64encode(v.encode()).decode()}
    if isinstance(v, (list, tuple)):
        if v and isinstance(v[0], str):
            return {"list": {"s": [base64.b64encode(s.encode()).decode() for s in v]}}
        return {"list": {"i": [str(int(i)) for i in v]}}
    if isinstance(v, dict):
        return v
    raise TypeError(v)


class GraphBuilder:
    """Emit TF graph-model nodes (dicts) and constant values."""

    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.weights: dict[str, np.ndarray] = {}
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def placeholder(self, name: str, shape, dtype: str = "DT_FLOAT") -> str:
        self.nodes.append({"name": name, "op": "Placeholder", "attr": {
            "dtype": {"type": dtype}, "shape": {"shape": {"dim": [{"size": str(s)} for s in shape]}}}})
        return name

    def const(self, value, base: str = "const") -> str:
        value = np.asarray(value)
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        elif value.dtype == np.int64:
            value = value.astype(np.int32)
        n = self.name(base)
        dt = {np.float32: "DT_FLOAT", np.int32: "DT_INT32", np.bool_: "DT_BOOL"}[value.dtype.type]
        self.nodes.append({"name": n, "op": "Const", "attr": {"dtype": {"type": dt}}})
        self.weights[n] = value
        return n

    def op(self, op: str, inputs, name: str | None = None, **attrs) -> str:
        n = name or self.name(op)
        node = {"name": n, "op": op, "input": list(inputs),
                "attr": {k: _attr(v) for k, v in attrs.items()}}
        if "T" not in attrs:
            node["attr"]["T"] = {"type": "DT_FLOAT"}
        self.nodes.append(node)
        return n

    # common layers ----------------------------------------------------------
    def conv(self, x, w, b=None, *, strides=1, padding="SAME", act=None, depthwise=False, name=None) -> str:
        s = [1, strides, strides, 1]
        wn = self.const(w, "filters")
        if b is None and act is None:
            op = "DepthwiseConv2dNative" if depthwise else "Conv2D"
            return self.op(op, [x, wn], name, strides=s, padding=padding, data_format="NHWC",
                           dilations=[1, 1, 1, 1])
        fused = (["BiasAdd"] if b is not None else []) + ([act] if act else [])
        ins = [x, wn] + ([self.const(b, "bias")] if b is not None else [])
        op = "FusedDepthwiseConv2dNative" if depthwise else "_FusedConv2D"
        kw = {"leakyrelu_alpha": _LEAKY} if act == "LeakyRelu" else {}
        return self.op(op, ins, name, strides=s, padding=padding, data_format="NHWC",
                       dilations=[1, 1, 1, 1], fused_ops=fused, num_args=len(ins) - 2, **kw)

    def pool(self, op, x, k, s, padding) -> str:
        return self.op(op, [x], ksize=[1, k, k, 1], strides=[1, s, s, 1], padding=padding, data_format="NHWC")

    def pad(self, x, paddings) -> str:
        return self.op("Pad", [x, self.const(np.array(paddings, np.int32), "paddings")])

    def normalize(self, x, mean_rgb, div: float) -> str:
        x = self.op("Sub", [x, self.const(np.array(mean_rgb, np.float32), "mean")])
        return self.op("RealDiv", [x, self.const(np.float32(div), "div")])

    def graph(self, outputs) -> TfGraph:
        return TfGraph(nodes=self.nodes, weights=self.weights, outputs=list(outputs))


def _w(weights: dict, name: str) -> np.ndarray:
    return np.asarray(weights[name], dtype=np.float64)


def face_recognition(manifest: Path, batch: int | str = -1) -> TfGraph:
    """face-api's FaceRecognitionNet (src/faceRecognitionNet/)."""
    W = read_manifest_file(manifest)
    g = GraphBuilder()
    x = g.placeholder("input", [batch, 150, 150, 3])
    x = g.normalize(x, FACE_RECOGNITION_MEAN_RGB, 255.0)
    size = 150

    def conv_layer(x, prefix, stride, relu, padding):
        w = _w(W, f"{prefix}/conv/filters")
        b = _w(W, f"{prefix}/conv/bias")
        sc, sb = _w(W, f"{prefix}/scale/weights"), _w(W, f"{prefix}/scale/biases")
        # (conv(x, w) + b) * sc + sb  ==  conv(x, w * sc) + (b * sc + sb)
        return g.conv(x, w * sc, b * sc + sb, strides=stride, padding=padding, act="Relu" if relu else None)

    def residual(x, prefix):
        out = conv_layer(x, f"{prefix}/conv1", 1, True, "SAME")
        out = conv_layer(out, f"{prefix}/conv2", 1, False, "SAME")
        return g.op("Relu", [g.op("AddV2", [out, x])])

    def residual_down(x, prefix, size):
        out = conv_layer(x, f"{prefix}/conv1", 2, True, "VALID")
        out = conv_layer(out, f"{prefix}/conv2", 1, False, "SAME")
        conv_size = (size - 3) // 2 + 1
        pool_size = size // 2
        pooled = g.pool("AvgPool", x, 2, 2, "VALID")
        if conv_size != pool_size:  # face-api appends a zero row and column
            out = g.pad(out, [[0, 0], [0, pool_size - conv_size], [0, pool_size - conv_size], [0, 0]])
        cin = W[f"{prefix}/conv1/conv/filters"].shape[2]
        cout = W[f"{prefix}/conv1/conv/filters"].shape[3]
        if cin != cout:  # zero channels appended to the shortcut
            pooled = g.pad(pooled, [[0, 0], [0, 0], [0, 0], [0, cout - cin]])
        return g.op("Relu", [g.op("AddV2", [pooled, out])]), pool_size

    x = conv_layer(x, "conv32_down", 2, True, "VALID")
    size = (size - 7) // 2 + 1
    x = g.pool("MaxPool", x, 3, 2, "VALID")
    size = (size - 3) // 2 + 1
    for p in ("conv32_1", "conv32_2", "conv32_3"):
        x = residual(x, p)
    x, size = residual_down(x, "conv64_down", size)
    for p in ("conv64_1", "conv64_2", "conv64_3"):
        x = residual(x, p)
    x, size = residual_down(x, "conv128_down", size)
    for p in ("conv128_1", "conv128_2"):
        x = residual(x, p)
    x, size = residual_down(x, "conv256_down", size)
    for p in ("conv256_1", "conv256_2"):
        x = residual(x, p)
    x, size = residual_down(x, "conv256_down_out", size)
    x = g.op("Mean", [x, g.const(np.array([1, 2], np.int32), "axes")], keep_dims=False)
    g.op("MatMul", [x, g.const(_w(W, "fc"), "fc")], name="descriptor", transpose_a=False, transpose_b=False)
    return g.graph(["descriptor"])


def tiny_face_detector(manifest: Path, input_size: int = 416, batch: int | str = -1) -> TfGraph:
    """face-api's TinyFaceDetector (TinyYolov2Base.runMobilenet with separable convs)."""
    if input_size % 32:
        raise ValueError("input_size must be a multiple of 32")
    W = read_manifest_file(manifest)
    g = GraphBuilder()
    x = g.placeholder("input", [batch, input_size, input_size, 3])
    x = g.normalize(x, TINY_FACE_MEAN_RGB, 255.0)
    x = g.conv(x, _w(W, "conv0/filters"), _w(W, "conv0/bias"), padding="VALID", act="LeakyRelu")
    for i in range(1, 6):
        x = g.pool("MaxPool", x, 2, 2, "SAME")
        x = g.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        x = g.conv(x, _w(W, f"conv{i}/depthwise_filter"), padding="VALID", depthwise=True)
        x = g.conv(x, _w(W, f"conv{i}/pointwise_filter"), _w(W, f"conv{i}/bias"), padding="VALID", act="LeakyRelu")
    x = g.pool("MaxPool", x, 2, 1, "SAME")
    for i in (6, 7):
        if f"conv{i}/depthwise_filter" in W:
            x = g.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
            x = g.conv(x, _w(W, f"conv{i}/depthwise_filter"), padding="VALID", depthwise=True)
            x = g.conv(x, _w(W, f"conv{i}/pointwise_filter"), _w(W, f"conv{i}/bias"), padding="VALID", act="LeakyRelu")
    g.conv(x, _w(W, "conv8/filters"), _w(W, "conv8/bias"), padding="VALID", name="grid")
    return g.graph(["grid"])


def ssd_mobilenetv1(manifest: Path, batch: int | str = -1) -> tuple[TfGraph, np.ndarray]:
    """face-api's SsdMobilenetv1 up to the box encodings and face scores; returns the
    graph and the anchors (5118, 4) as ``[y0, x0, y1, x1]`` in 0-1 units."""
    W = read_manifest_file(manifest)
    g = GraphBuilder()
    x = g.placeholder("input", [batch, 512, 512, 3])
    x = g.op("Sub", [g.op("RealDiv", [x, g.const(np.float32(127.5))]), g.const(np.float32(1.0))])

    def pointwise(x, prefix, idx, stride):
        return g.conv(x, _w(W, f"{prefix}/Conv2d_{idx}_pointwise/weights"),
                      _w(W, f"{prefix}/Conv2d_{idx}_pointwise/convolution_bn_offset"),
                      strides=stride, padding="SAME", act="Relu6")

    x = pointwise(x, "MobilenetV1", 0, 2)
    conv11 = None
    for i in range(1, 14):
        p = f"MobilenetV1/Conv2d_{i}_depthwise"
        a = _w(W, f"{p}/BatchNorm/gamma") / np.sqrt(_w(W, f"{p}/BatchNorm/moving_variance") + _BN_EPS)
        b = _w(W, f"{p}/BatchNorm/beta") - _w(W, f"{p}/BatchNorm/moving_mean") * a
        w = _w(W, f"{p}/depthwise_weights") * a[None, None, :, None]
        x = g.conv(x, w, b, strides=2 if i in (2, 4, 6, 12) else 1, depthwise=True, act="Relu6")
        x = pointwise(x, "MobilenetV1", i, 1)
        if i == 11:
            conv11 = x
    feats = [conv11, x]
    c = x
    for i in range(8):
        c = pointwise(c, "Prediction", i, 2 if i % 2 else 1)
        if i % 2:
            feats.append(c)
    boxes, classes = [], []
    for i, (f, cells) in enumerate(zip(feats, (32, 16, 8, 4, 2, 1))):  # feature map sizes for 512
        p = f"Prediction/BoxPredictor_{i}"
        wb = _w(W, f"{p}/BoxEncodingPredictor/weights")
        n = cells * cells * (wb.shape[3] // 4)
        be = g.conv(f, wb, _w(W, f"{p}/BoxEncodingPredictor/biases"))
        boxes.append(g.op("Reshape", [be, g.const(np.array([-1, n, 4], np.int32), "shape")]))
        cp = g.conv(f, _w(W, f"{p}/ClassPredictor/weights"), _w(W, f"{p}/ClassPredictor/biases"))
        classes.append(g.op("Reshape", [cp, g.const(np.array([-1, n, 3], np.int32), "shape")]))
    bx = g.op("ConcatV2", boxes + [g.const(np.int32(1), "axis")], N=len(boxes))
    cl = g.op("ConcatV2", classes + [g.const(np.int32(1), "axis")], N=len(classes))
    g.op("Identity", [bx], name="box_encodings")
    face = g.op("StridedSlice", [cl, g.const(np.array([0, 0, 1], np.int32)), g.const(np.array([0, 0, 2], np.int32)),
                                 g.const(np.array([1, 1, 1], np.int32))],
                begin_mask=3, end_mask=3, ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=4, Index="DT_INT32")
    g.op("Sigmoid", [face], name="scores")
    anchors = np.asarray(W["Output/extra_dim"], dtype=np.float32).reshape(-1, 4)
    return g.graph(["box_encodings", "scores"]), anchors
