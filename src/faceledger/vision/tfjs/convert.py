"""TensorFlow.js graph model (``model.json`` + shards) -> ONNX graph.

Written from TensorFlow's op semantics (NHWC layout): each TF op becomes one or a
few ONNX ops; convolutions and pools run in ONNX's NCHW layout between a pair of
Transposes (onnxruntime's transpose optimiser cancels the pairs between
consecutive layers).  Constant inputs that TF passes as tensors (shapes, axes,
paddings, slice bounds, sizes) must be constants of the graph.

    model = convert_model_json("blazeface.json")           # onnx.ModelProto
    onnx.save(model, "blazeface.onnx")

Graph-model JSON: ``modelTopology.node`` is a list of
``{"name", "op", "input": ["node", "node:1", "^control"], "attr": {...}}``; attr
values are ``{"i": "3"}``, ``{"f": 0.2}``, ``{"b": true}``, ``{"s": base64}``,
``{"type": "DT_FLOAT"}``, ``{"list": {"i"|"s"|"f": [...]}}``, ``{"shape": ...}``;
``Const`` values come from ``weightsManifest`` by node name.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .weights import read_manifest

__all__ = ["ConversionError", "TfGraph", "convert", "convert_model_json", "load_model_json", "OPSET"]

OPSET = 18
#: Bumped whenever the converter's output changes, so that converted models cached on disk are rebuilt
#: (2: ReLU6 written as Relu/Minimum/Maximum becomes one Clip, see fuse_clips).
CONVERTER_VERSION = 2
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min

_TF_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_BOOL": np.bool_,
    "DT_UINT8": np.uint8,
    "DT_INT8": np.int8,
    "DT_HALF": np.float16,
    "DT_DOUBLE": np.float64,
}


class ConversionError(ValueError):
    pass


@dataclass
class TfGraph:
    """A TF graph as in a tfjs graph model: nodes (dicts, TF order) + constant values."""

    nodes: list[dict]
    weights: dict[str, np.ndarray]
    outputs: list[str] = field(default_factory=list)  # default graph outputs (may be empty)


def load_model_json(path: str | Path) -> TfGraph:
    path = Path(path)
    doc = json.loads(path.read_text())
    if doc.get("format", "graph-model") != "graph-model":
        raise ConversionError(f"{path}: format {doc.get('format')!r} is not a graph model")
    topo = doc["modelTopology"]
    if topo.get("library", {}).get("function"):
        raise ConversionError(f"{path}: graphs with functions (control flow) are not supported")
    weights = read_manifest(doc.get("weightsManifest", []), path.parent)
    outputs = []
    sig = doc.get("signature") or (doc.get("userDefinedMetadata") or {}).get("signature")
    if sig and sig.get("outputs"):
        outputs = [v.get("name", k) for k, v in sig["outputs"].items()]
    return TfGraph(nodes=list(topo["node"]), weights=weights, outputs=outputs)


def convert_model_json(path: str | Path, **kw):
    return convert(load_model_json(path), **kw)


# ---------------------------------------------------------------- attributes


def _attr(node: dict, key: str, default=None):
    a = (node.get("attr") or {}).get(key)
    if a is None:
        return default
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "b" in lst:
            return [bool(v) for v in lst["b"]]
        return []
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "type" in a:
        return a["type"]
    if "shape" in a:
        return a["shape"]
    if "tensor" in a:
        return a["tensor"]
    return default


def _tensor_attr_value(t: dict) -> np.ndarray:
    """Small Const values embedded in the node (``attr.value.tensor``)."""
    dtype = _TF_DTYPES.get(t.get("dtype", "DT_FLOAT"), np.float32)
    dims = [int(d.get("size", 0)) for d in (t.get("tensorShape") or {}).get("dim", [])]
    for key in ("floatVal", "intVal", "int64Val", "boolVal", "halfVal", "doubleVal"):
        if key in t:
            vals = np.array(t[key], dtype=dtype)
            n = int(np.prod(dims)) if dims else 1
            if vals.size == 1 and n != 1:
                vals = np.full(n, vals.reshape(()), dtype=dtype)
            return vals.reshape(dims)
    if "tensorContent" in t:
        return np.frombuffer(base64.b64decode(t["tensorContent"]), dtype=dtype).reshape(dims).copy()
    n = int(np.prod(dims)) if dims else 1
    if n == 0:
        return np.zeros(dims, dtype=dtype)
    raise ConversionError("Const without a value (not in the weights manifest)")


def _split_input(ref: str) -> tuple[str, int]:
    name, _, idx = ref.partition(":")
    return name, int(idx) if idx else 0


# ---------------------------------------------------------------- builder


class _Builder:
    def __init__(self) -> None:
        from onnx import helper

        self.h = helper
        self.nodes: list = []
        self.inits: dict[str, object] = {}
        self.consts: dict[str, np.ndarray] = {}  # ONNX tensor name -> value (constants)
        self.dtype: dict[str, np.dtype] = {}
        self.rank: dict[str, int | None] = {}
        self._n = 0

    def uniq(self, base: str) -> str:
        self._n += 1
        return f"{base}__{self._n}"

    def const(self, value: np.ndarray, base: str = "const", name: str | None = None) -> str:
        from onnx import numpy_helper

        value = np.asarray(value)
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        name = name or self.uniq(base)
        self.inits[name] = numpy_helper.from_array(value, name)
        self.consts[name] = value
        self.dtype[name] = value.dtype
        self.rank[name] = value.ndim
        return name

    def op(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, *,
           base: str | None = None, dtype=None, rank: int | None = None, **attrs) -> list[str]:
        if isinstance(outputs, int):
            outs = [self.uniq(base or op_type) for _ in range(outputs)]
        else:
            outs = list(outputs)
        self.nodes.append(self.h.make_node(op_type, list(inputs), outs, name=self.uniq(op_type), **attrs))
        for o in outs:
            self.dtype[o] = np.dtype(dtype) if dtype is not None else self.dtype.get(inputs[0]) if inputs else None
            self.rank[o] = rank
        return outs

    def op1(self, *a, **kw) -> str:
        return self.op(*a, **kw)[0]

    def nchw(self, x: str) -> str:
        return self.op1("Transpose", [x], perm=[0, 3, 1, 2], rank=4)

    def nhwc(self, x: str, out: str | None = None) -> str:
        return self.op("Transpose", [x], [out] if out else 1, perm=[0, 2, 3, 1], rank=4)[0]


def _np_dtype_to_onnx(dt) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(np.dtype(dt))


# ---------------------------------------------------------------- conversion


class _Converter:
    def __init__(self, graph: TfGraph, input_shapes: dict[str, Sequence[int | str | None]] | None) -> None:
        self.g = graph
        self.b = _Builder()
        self.names: dict[str, str] = {}  # TF tensor ref "node:idx" -> ONNX tensor name
        self.input_shapes = input_shapes or {}
        self.inputs: list = []
        self.by_name = {n["name"]: n for n in graph.nodes}

    # tensor references ------------------------------------------------------
    def ref(self, tf_ref: str) -> str:
        name, idx = _split_input(tf_ref)
        key = f"{name}:{idx}"
        if key not in self.names:
            raise ConversionError(f"input {tf_ref} is not produced by an earlier node")
        return self.names[key]

    def set_out(self, node: dict, onnx_names: Sequence[str]) -> None:
        for i, t in enumerate(onnx_names):
            self.names[f"{node['name']}:{i}"] = t

    def cval(self, tf_ref: str, what: str) -> np.ndarray:
        t = self.ref(tf_ref)
        if t not in self.b.consts:
            raise ConversionError(f"{what} ({tf_ref}) must be a constant")
        return self.b.consts[t]

    def is_const(self, t: str) -> bool:
        return t in self.b.consts

    # main loop --------------------------------------------------------------
    def run(self, outputs: list[str] | None):
        order = self._topo_order()
        for node in order:
            op = node["op"]
            fn = getattr(self, f"op_{op}", None)
            if fn is None:
                raise ConversionError(f"unsupported op {op} (node {node['name']})")
            ins = [i for i in node.get("input", []) if not i.startswith("^")]
            try:
                res = fn(node, ins)
            except ConversionError:
                raise
            except Exception as e:  # noqa: BLE001
                raise ConversionError(f"{op} node {node['name']}: {e}") from e
            if isinstance(res, str):
                res = [res]
            self.set_out(node, res)
        return self._finish(outputs)

    def _topo_order(self) -> list[dict]:
        seen: set[str] = set()
        order: list[dict] = []
        for root in self.g.nodes:
            stack = [(root["name"], False)]
            while stack:
                name, done = stack.pop()
                if done:
                    if name not in seen:
                        seen.add(name)
                        order.append(self.by_name[name])
                    continue
                if name in seen:
                    continue
                stack.append((name, True))
                for i in self.by_name[name].get("input", []):
                    dep = _split_input(i.lstrip("^"))[0]
                    if dep not in seen:
                        if dep not in self.by_name:
                            raise ConversionError(f"node {name}: unknown input {i}")
                        stack.append((dep, False))
        return order

    def _finish(self, outputs: list[str] | None):
        from onnx import TensorProto, helper

        if not outputs:
            outputs = list(self.g.outputs)
        if not outputs:
            consumed = {_split_input(i.lstrip("^"))[0] for n in self.g.nodes for i in n.get("input", [])}
            outputs = [n["name"] for n in self.g.nodes if n["name"] not in consumed and n["op"] != "Const"]
        b = self.b
        out_vi = []
        seen = set()
        for o in outputs:
            t = self.ref(o)
            name = o if ":" in o else o
            if t in self.b.consts or t in seen or t in {i.name for i in self.inputs}:
                t = b.op1("Identity", [t])
            seen.add(t)
            # rename the producing tensor to the TF name
            b.nodes.append(helper.make_node("Identity", [t], [name], name=b.uniq("out")))
            dt = b.dtype.get(t)
            elem = _np_dtype_to_onnx(dt) if dt is not None else TensorProto.FLOAT
            out_vi.append(helper.make_tensor_value_info(name, elem, None))
        used = {i for n in b.nodes for i in n.input}
        inits = [t for name, t in b.inits.items() if name in used]
        graph = helper.make_graph(b.nodes, "tfjs", self.inputs, out_vi, initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="faceledger.tfjs")
        model.ir_version = 8
        # give the outputs their inferred shapes (the checker wants one on each output)
        import onnx

        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            known = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
            for vi in model.graph.output:
                if vi.name in known and known[vi.name].type.tensor_type.HasField("shape"):
                    vi.type.CopyFrom(known[vi.name].type)
        except Exception:  # noqa: BLE001 (shapes are only decoration here)
            pass
        return model

    # --------------------------------------------------------------- sources
    def op_Placeholder(self, node, ins):
        from onnx import helper

        name = node["name"]
        dt = _TF_DTYPES[_attr(node, "dtype", "DT_FLOAT")]
        shape = self.input_shapes.get(name)
        if shape is None:
            s = _attr(node, "shape")
            if s is not None and not s.get("unknownRank"):
                shape = [int(d.get("size", -1)) for d in s.get("dim", [])]
        if shape is not None:
            shape = [d if isinstance(d, str) else ("N" if (d is None or int(d) < 0) else int(d)) for d in shape]
        self.inputs.append(helper.make_tensor_value_info(name, _np_dtype_to_onnx(dt), shape))
        self.b.dtype[name] = np.dtype(dt)
        self.b.rank[name] = None if shape is None else len(shape)
        return name

    def op_Const(self, node, ins):
        name = node["name"]
        if name in self.g.weights:
            v = self.g.weights[name]
        else:
            v = _tensor_attr_value(_attr(node, "value"))
        dt = _attr(node, "dtype")
        if dt in _TF_DTYPES:
            v = np.asarray(v).astype(_TF_DTYPES[dt])
        return self.b.const(np.asarray(v), name=name)

    def op_Identity(self, node, ins):
        x = self.ref(ins[0])
        return x

    op_StopGradient = op_Identity
    op_Snapshot = op_Identity

    def op_IdentityN(self, node, ins):
        return [self.ref(i) for i in ins]

    # --------------------------------------------------------------- convs
    def _conv_pads(self, node, kernel_hw: Sequence[int]) -> dict:
        padding = _attr(node, "padding", "VALID")
        if padding == "VALID":
            return {"pads": [0, 0, 0, 0]}
        if padding == "SAME":
            strides, dil = self._hw(node, "strides"), self._hw(node, "dilations")
            if strides == [1, 1]:
                # stride 1: TF pads (k_eff - 1) in total, the smaller half first, whatever
                # the input size (explicit pads also allow dilations, which auto_pad does not)
                tot = [(k - 1) * d for k, d in zip(kernel_hw, dil)]
                return {"pads": [tot[0] // 2, tot[1] // 2, tot[0] - tot[0] // 2, tot[1] - tot[1] // 2]}
            if dil != [1, 1]:
                raise ConversionError("SAME padding with strides and dilations both > 1")
            return {"auto_pad": "SAME_UPPER"}
        if padding == "EXPLICIT":
            p = _attr(node, "explicit_paddings", [])
            if len(p) != 8:
                raise ConversionError(f"explicit_paddings {p}")
            # NHWC order: [n0, n1, h0, h1, w0, w1, c0, c1]
            return {"pads": [p[2], p[4], p[3], p[5]]}
        raise ConversionError(f"padding {padding!r}")

    def _hw(self, node, key: str, default=(1, 1, 1, 1)) -> list[int]:
        v = _attr(node, key, list(default)) or list(default)
        fmt = _attr(node, "data_format", "NHWC")
        if fmt not in ("NHWC",):
            raise ConversionError(f"data_format {fmt}")
        if len(v) == 4:
            return [v[1], v[2]]
        if len(v) == 2:
            return list(v)
        if len(v) == 1:
            return [v[0], v[0]]
        raise ConversionError(f"{key}={v}")

    def _conv(self, node, ins, depthwise: bool, fused: bool) -> str:
        b = self.b
        x, w = self.ref(ins[0]), self.ref(ins[1])
        if w not in b.consts:
            raise ConversionError("convolution filters must be constant")
        wv = b.consts[w].astype(np.float32)
        kh, kw, cin, cout = wv.shape
        if depthwise:
            # [kh, kw, cin, mult] -> [cin*mult, 1, kh, kw]; TF channel index = c * mult + m
            wo = wv.reshape(kh, kw, cin * cout).transpose(2, 0, 1)[:, None, :, :]
            group = cin
        else:
            wo = wv.transpose(3, 2, 0, 1)
            group = 1
        attrs = dict(strides=self._hw(node, "strides"), dilations=self._hw(node, "dilations"),
                     kernel_shape=[kh, kw], group=group, **self._conv_pads(node, (kh, kw)))
        conv_in = [b.nchw(x), b.const(np.ascontiguousarray(wo), "W")]
        post: list[str] = []
        extra: list[str] = []
        if fused:
            post = list(_attr(node, "fused_ops", []))
            extra = [self.ref(i) for i in ins[2:]]
            if post and post[0] == "BiasAdd":
                bias = extra[0]
                if bias in b.consts and b.consts[bias].ndim == 1:
                    conv_in.append(b.const(b.consts[bias].astype(np.float32), "B"))
                    post = post[1:]
                    extra = extra[1:]
                else:
                    post = ["BiasAdd"] + post[1:]
        y = b.op1("Conv", conv_in, rank=4, **attrs)
        y = b.nhwc(y)
        return self._apply_fused(node, y, post, extra)

    def _apply_fused(self, node, y: str, post: list[str], extra: list[str]) -> str:
        b = self.b
        for f in post:
            if f == "BiasAdd":
                y = b.op1("Add", [y, extra.pop(0)], rank=b.rank.get(y))
            elif f == "Relu":
                y = b.op1("Relu", [y], rank=b.rank.get(y))
            elif f == "Relu6":
                y = b.op1("Clip", [y, b.const(np.float32(0)), b.const(np.float32(6))], rank=b.rank.get(y))
            elif f == "Elu":
                y = b.op1("Elu", [y], rank=b.rank.get(y))
            elif f == "Sigmoid":
                y = b.op1("Sigmoid", [y], rank=b.rank.get(y))
            elif f == "Tanh":
                y = b.op1("Tanh", [y], rank=b.rank.get(y))
            elif f == "LeakyRelu":
                y = b.op1("LeakyRelu", [y], alpha=float(_attr(node, "leakyrelu_alpha", 0.2)), rank=b.rank.get(y))
            elif f == "Prelu":
                y = b.op1("PRelu", [y, extra.pop(0)], rank=b.rank.get(y))
            else:
                raise ConversionError(f"fused op {f} in {node['op']}")
        return y

    def op_Conv2D(self, node, ins):
        return self._conv(node, ins, depthwise=False, fused=False)

    def op__FusedConv2D(self, node, ins):
        return self._conv(node, ins, depthwise=False, fused=True)

    def op_DepthwiseConv2dNative(self, node, ins):
        return self._conv(node, ins, depthwise=True, fused=False)

    def op_FusedDepthwiseConv2dNative(self, node, ins):
        return self._conv(node, ins, depthwise=True, fused=True)

    op__FusedDepthwiseConv2dNative = op_FusedDepthwiseConv2dNative

    def _matmul(self, node, ins, fused: bool) -> str:
        b = self.b
        a, w = self.ref(ins[0]), self.ref(ins[1])
        if _attr(node, "transpose_a", False) or _attr(node, "adj_x", False):
            a = b.op1("Transpose", [a], perm=[1, 0], rank=2)
        if _attr(node, "transpose_b", False) or _attr(node, "adj_y", False):
            if w in b.consts:
                w = b.const(np.ascontiguousarray(b.consts[w].T))
            else:
                w = b.op1("Transpose", [w], perm=[1, 0], rank=2)
        y = b.op1("MatMul", [a, w], rank=2)
        if fused:
            return self._apply_fused(node, y, list(_attr(node, "fused_ops", [])), [self.ref(i) for i in ins[2:]])
        return y

    def op_MatMul(self, node, ins):
        return self._matmul(node, ins, False)

    def op__FusedMatMul(self, node, ins):
        return self._matmul(node, ins, True)

    # --------------------------------------------------------------- elementwise
    def _binary(self, onnx_op: str):
        def f(node, ins):
            a, c = self.ref(ins[0]), self.ref(ins[1])
            ra, rc = self.b.rank.get(a), self.b.rank.get(c)
            rank = None if ra is None or rc is None else max(ra, rc)
            return self.b.op1(onnx_op, [a, c], rank=rank)
        return f

    def __getattr__(self, item):
        binary = {"op_Add": "Add", "op_AddV2": "Add", "op_BiasAdd": "Add", "op_Sub": "Sub",
                  "op_Mul": "Mul", "op_RealDiv": "Div", "op_Div": "Div", "op_Minimum": "Min",
                  "op_Maximum": "Max", "op_Pow": "Pow", "op_Greater": "Greater", "op_Less": "Less",
                  "op_GreaterEqual": "GreaterOrEqual", "op_LessEqual": "LessOrEqual"}
        unary = {"op_Relu": "Relu", "op_Sigmoid": "Sigmoid", "op_Tanh": "Tanh", "op_Abs": "Abs",
                 "op_Neg": "Neg", "op_Exp": "Exp", "op_Log": "Log", "op_Sqrt": "Sqrt", "op_Floor": "Floor",
                 "op_Elu": "Elu", "op_Reciprocal": "Reciprocal", "op_LogicalNot": "Not", "op_Round": "Round"}
        if item in binary:
            return self._binary(binary[item])
        if item in unary:
            return lambda node, ins: self.b.op1(unary[item], [self.ref(ins[0])], rank=self.b.rank.get(self.ref(ins[0])))
        raise AttributeError(item)

    def op_Relu6(self, node, ins):
        x = self.ref(ins[0])
        return self.b.op1("Clip", [x, self.b.const(np.float32(0)), self.b.const(np.float32(6))], rank=self.b.rank.get(x))

    def op_LeakyRelu(self, node, ins):
        x = self.ref(ins[0])
        return self.b.op1("LeakyRelu", [x], alpha=float(_attr(node, "alpha", 0.2)), rank=self.b.rank.get(x))

    def op_Prelu(self, node, ins):
        x, a = self.ref(ins[0]), self.ref(ins[1])
        return self.b.op1("PRelu", [x, a], rank=self.b.rank.get(x))

    def op_Square(self, node, ins):
        x = self.ref(ins[0])
        return self.b.op1("Mul", [x, x], rank=self.b.rank.get(x))

    def op_Rsqrt(self, node, ins):
        x = self.ref(ins[0])
        return self.b.op1("Reciprocal", [self.b.op1("Sqrt", [x], rank=self.b.rank.get(x))], rank=self.b.rank.get(x))

    def op_Softmax(self, node, ins):
        x = self.ref(ins[0])
        return self.b.op1("Softmax", [x], axis=-1, rank=self.b.rank.get(x))

    def op_Equal(self, node, ins):
        return self.b.op1("Equal", [self.ref(ins[0]), self.ref(ins[1])], dtype=np.bool_)

    def op_Cast(self, node, ins):
        dt = _TF_DTYPES[_attr(node, "DstT")]
        x = self.ref(ins[0])
        return self.b.op1("Cast", [x], to=_np_dtype_to_onnx(dt), dtype=dt, rank=self.b.rank.get(x))

    def op_FloorDiv(self, node, ins):
        b = self.b
        a, c = self.ref(ins[0]), self.ref(ins[1])
        if np.issubdtype(b.dtype.get(a) or np.float32, np.integer):
            # exact division of (a - floormod(a, c)) truncates to the floor quotient
            m = b.op1("Mod", [a, c], fmod=0)
            return b.op1("Div", [b.op1("Sub", [a, m]), c])
        return b.op1("Floor", [b.op1("Div", [a, c])])

    def op_FloorMod(self, node, ins):
        b = self.b
        a, c = self.ref(ins[0]), self.ref(ins[1])
        if np.issubdtype(b.dtype.get(a) or np.float32, np.integer):
            return b.op1("Mod", [a, c], fmod=0)
        q = b.op1("Floor", [b.op1("Div", [a, c])])
        return b.op1("Sub", [a, b.op1("Mul", [q, c])])

    # --------------------------------------------------------------- reductions
    def _reduce(self, onnx_op: str):
        def f(node, ins):
            b = self.b
            x = self.ref(ins[0])
            axes = np.atleast_1d(self.cval(ins[1], "reduction axes")).astype(np.int64)
            keep = bool(_attr(node, "keep_dims", False))
            r = b.rank.get(x)
            rank = None if r is None else (r if keep else r - len(set(axes.tolist())))
            return b.op1(onnx_op, [x, b.const(axes)], keepdims=int(keep), rank=rank)
        return f

    def op_Mean(self, node, ins):
        return self._reduce("ReduceMean")(node, ins)

    def op_Sum(self, node, ins):
        return self._reduce("ReduceSum")(node, ins)

    def op_Max(self, node, ins):
        return self._reduce("ReduceMax")(node, ins)

    def op_Min(self, node, ins):
        return self._reduce("ReduceMin")(node, ins)

    def op_Prod(self, node, ins):
        return self._reduce("ReduceProd")(node, ins)

    # --------------------------------------------------------------- pools
    def _pool(self, node, ins, onnx_op: str) -> str:
        b = self.b
        x = self.ref(ins[0])
        k = self._hw(node, "ksize")
        attrs = dict(kernel_shape=k, strides=self._hw(node, "strides"))
        padding = _attr(node, "padding", "VALID")
        if padding == "SAME":
            attrs["auto_pad"] = "SAME_UPPER"
        elif padding == "VALID":
            attrs["pads"] = [0, 0, 0, 0]
        else:
            raise ConversionError(f"pool padding {padding}")
        if onnx_op == "AveragePool":
            attrs["count_include_pad"] = 0  # TF averages over the valid cells only
        y = b.op1(onnx_op, [b.nchw(x)], rank=4, **attrs)
        return b.nhwc(y)

    def op_MaxPool(self, node, ins):
        return self._pool(node, ins, "MaxPool")

    def op_AvgPool(self, node, ins):
        return self._pool(node, ins, "AveragePool")

    # --------------------------------------------------------------- shapes
    def _pad(self, node, ins, value_ref: str | None, mode: str = "constant") -> str:
        b = self.b
        x = self.ref(ins[0])
        p = self.cval(ins[1], "paddings").astype(np.int64).reshape(-1, 2)
        pads = np.concatenate([p[:, 0], p[:, 1]])
        inputs = [x, b.const(pads)]
        if value_ref is not None:
            v = self.ref(value_ref)
            inputs.append(v)
        return b.op1("Pad", inputs, mode=mode, rank=len(p))

    def op_Pad(self, node, ins):
        return self._pad(node, ins, None)

    def op_PadV2(self, node, ins):
        return self._pad(node, ins, ins[2])

    def op_MirrorPad(self, node, ins):
        mode = _attr(node, "mode", "REFLECT")
        if mode != "REFLECT":
            raise ConversionError(f"MirrorPad mode {mode}")
        return self._pad(node, ins, None, mode="reflect")

    def _shape_input(self, ref: str) -> str:
        b = self.b
        t = self.ref(ref)
        if t in b.consts:
            return b.const(b.consts[t].astype(np.int64).reshape(-1))
        return b.op1("Cast", [t], to=_np_dtype_to_onnx(np.int64), dtype=np.int64, rank=1)

    def op_Reshape(self, node, ins):
        b = self.b
        x = self.ref(ins[0])
        t = self.ref(ins[1])
        rank = int(b.consts[t].size) if t in b.consts else None
        # TF: a 0 in the shape is a zero-sized dimension (ONNX copies the input's unless allowzero)
        return b.op1("Reshape", [x, self._shape_input(ins[1])], rank=rank, allowzero=1)

    def op_Squeeze(self, node, ins):
        b = self.b
        x = self.ref(ins[0])
        axes = _attr(node, "squeeze_dims", None) or _attr(node, "axis", None) or []
        r = b.rank.get(x)
        if not axes:
            return b.op1("Squeeze", [x], rank=None)
        return b.op1("Squeeze", [x, b.const(np.array(axes, dtype=np.int64))],
                     rank=None if r is None else r - len(axes))

    def op_ExpandDims(self, node, ins):
        b = self.b
        x = self.ref(ins[0])
        axis = int(np.asarray(self.cval(ins[1], "ExpandDims axis")).reshape(-1)[0])
        r = b.rank.get(x)
        if axis < 0:
            if r is None:
                raise ConversionError("ExpandDims with a negative axis needs a known rank")
            axis += r + 1
        return b.op1("Unsqueeze", [x, b.const(np.array([axis], dtype=np.int64))], rank=None if r is None else r + 1)

    def op_Transpose(self, node, ins):
        perm = self.cval(ins[1], "Transpose perm").astype(np.int64).tolist()
        return self.b.op1("Transpose", [self.ref(ins[0])], perm=perm, rank=len(perm))

    def op_ConcatV2(self, node, ins):
        b = self.b
        axis = int(np.asarray(self.cval(ins[-1], "ConcatV2 axis")).reshape(-1)[0])
        xs = [self.ref(i) for i in ins[:-1]]
        if len(xs) == 1:
            return xs[0]
        return b.op1("Concat", xs, axis=axis, rank=b.rank.get(xs[0]))

    def op_Pack(self, node, ins):
        b = self.b
        axis = int(_attr(node, "axis", 0))
        xs = [self.ref(i) for i in ins]
        r = b.rank.get(xs[0])
        if axis < 0:
            if r is None:
                raise ConversionError("Pack with a negative axis needs a known rank")
            axis += r + 1
        ax = b.const(np.array([axis], dtype=np.int64))
        us = [b.op1("Unsqueeze", [x, ax], rank=None if r is None else r + 1) for x in xs]
        return us[0] if len(us) == 1 else b.op1("Concat", us, axis=axis, rank=None if r is None else r + 1)

    def op_SparseToDense(self, node, ins):
        """Folded at conversion when every input is a constant (TF.js graphs use it for shape arithmetic: NanoDet).
        TF's semantics: indices 0-D, 1-D (positions of a 1-D output, or one index of a higher-rank one) or
        (N, rank); values a scalar or N values; every other element the default."""
        idx = np.asarray(self.cval(ins[0], "SparseToDense indices")).astype(np.int64)
        shape = tuple(int(v) for v in np.atleast_1d(self.cval(ins[1], "SparseToDense output_shape")))
        values = np.asarray(self.cval(ins[2], "SparseToDense values"))
        default = np.asarray(self.cval(ins[3], "SparseToDense default_value"))
        if any(v < 0 for v in shape) or int(np.prod(shape, dtype=np.int64)) > 1 << 24:
            raise ConversionError(f"SparseToDense output shape {shape} is not a small constant")
        if idx.ndim < 2:
            idx = idx.reshape(-1, 1) if len(shape) == 1 else idx.reshape(1, -1)
        if idx.shape[1] != len(shape) or ((idx < 0) | (idx >= np.array(shape, dtype=np.int64))).any():
            raise ConversionError(f"SparseToDense indices do not fit the output shape {shape}")
        out = np.full(shape, default, dtype=values.dtype)
        out[tuple(idx.T)] = np.broadcast_to(values, (idx.shape[0],))
        return self.b.const(out)

    def op_Shape(self, node, ins):
        b = self.b
        s = b.op1("Shape", [self.ref(ins[0])], dtype=np.int64, rank=1)
        dt = _TF_DTYPES[_attr(node, "out_type", "DT_INT32")]
        return b.op1("Cast", [s], to=_np_dtype_to_onnx(dt), dtype=dt, rank=1)

    def _split(self, x: str, axis: int, sizes: list[int], n_out: int) -> list[str]:
        b = self.b
        r = b.rank.get(x)
        if sizes is None:
            return b.op("Split", [x], n_out, axis=axis, num_outputs=n_out, rank=r)
        return b.op("Split", [x, b.const(np.array(sizes, dtype=np.int64))], n_out, axis=axis, rank=r)

    def op_SplitV(self, node, ins):
        sizes = self.cval(ins[1], "SplitV size_splits").astype(np.int64).tolist()
        axis = int(np.asarray(self.cval(ins[2], "SplitV axis")).reshape(-1)[0])
        if -1 in sizes:
            raise ConversionError("SplitV with an inferred (-1) size is not supported")
        return self._split(self.ref(ins[0]), axis, sizes, len(sizes))

    def op_Split(self, node, ins):
        axis = int(np.asarray(self.cval(ins[0], "Split axis")).reshape(-1)[0])
        n = int(_attr(node, "num_split"))
        return self._split(self.ref(ins[1]), axis, None, n)

    def op_StridedSlice(self, node, ins):
        b = self.b
        x = self.ref(ins[0])
        begin = self.cval(ins[1], "StridedSlice begin").astype(np.int64).reshape(-1).tolist()
        end = self.cval(ins[2], "StridedSlice end").astype(np.int64).reshape(-1).tolist()
        strides = self.cval(ins[3], "StridedSlice strides").astype(np.int64).reshape(-1).tolist()
        bm, em = _attr(node, "begin_mask", 0), _attr(node, "end_mask", 0)
        elm, nam, sam = _attr(node, "ellipsis_mask", 0), _attr(node, "new_axis_mask", 0), _attr(node, "shrink_axis_mask", 0)
        n = len(begin)
        rank = b.rank.get(x)
        if elm and rank is None:
            raise ConversionError("StridedSlice with an ellipsis needs a known input rank")
        real = sum(1 for i in range(n) if not (nam >> i) & 1 and not (elm >> i) & 1)
        starts, ends, axes, steps, squeeze = [], [], [], [], []
        out_tokens: list[str] = []  # "new" | "keep"
        dim = 0
        for i in range(n):
            if (elm >> i) & 1:
                span = rank - real
                out_tokens += ["keep"] * span
                dim += span
                continue
            if (nam >> i) & 1:
                out_tokens.append("new")
                continue
            s = strides[i]
            if (sam >> i) & 1:
                bgn = begin[i]
                starts.append(bgn)
                ends.append(bgn + 1 if bgn != -1 else INT64_MAX)
                steps.append(1)
                axes.append(dim)
                squeeze.append(dim)
            else:
                st = begin[i] if not (bm >> i) & 1 else (0 if s > 0 else INT64_MAX)
                en = end[i] if not (em >> i) & 1 else (INT64_MAX if s > 0 else INT64_MIN)
                if not ((bm >> i) & 1 and (em >> i) & 1 and s == 1):
                    starts.append(st)
                    ends.append(en)
                    steps.append(s)
                    axes.append(dim)
                out_tokens.append("keep")
            dim += 1
        y = x
        if axes:
            y = b.op1("Slice", [y, b.const(np.array(starts, np.int64)), b.const(np.array(ends, np.int64)),
                                b.const(np.array(axes, np.int64)), b.const(np.array(steps, np.int64))],
                      rank=rank)
        out_rank = None if rank is None else rank - len(squeeze) + out_tokens.count("new")
        if squeeze:
            y = b.op1("Squeeze", [y, b.const(np.array(squeeze, np.int64))],
                      rank=None if rank is None else rank - len(squeeze))
        new_axes = [k for k, t in enumerate(out_tokens) if t == "new"]
        if new_axes:
            y = b.op1("Unsqueeze", [y, b.const(np.array(new_axes, np.int64))], rank=out_rank)
        if y == x:
            y = b.op1("Identity", [x], rank=rank)
        return y

    def op_Slice(self, node, ins):
        b = self.b
        x = self.ref(ins[0])
        begin = self.cval(ins[1], "Slice begin").astype(np.int64).reshape(-1)
        size = self.cval(ins[2], "Slice size").astype(np.int64).reshape(-1)
        end = np.where(size < 0, INT64_MAX, begin + size)
        return b.op1("Slice", [x, b.const(begin), b.const(end), b.const(np.arange(len(begin), dtype=np.int64))],
                     rank=b.rank.get(x))

    def op_ResizeBilinear(self, node, ins):
        return self._resize(node, ins, "linear")

    def op_ResizeNearestNeighbor(self, node, ins):
        return self._resize(node, ins, "nearest")

    def _resize(self, node, ins, mode: str) -> str:
        b = self.b
        x = self.ref(ins[0])
        size = self.cval(ins[1], "resize size").astype(np.int64).reshape(-1)
        ac = bool(_attr(node, "align_corners", False))
        hp = bool(_attr(node, "half_pixel_centers", False))
        if ac:
            ctm = "align_corners"
        elif hp:
            ctm = "half_pixel" if mode == "linear" else "tf_half_pixel_for_nn"
        else:
            ctm = "asymmetric"
        attrs = dict(mode=mode, coordinate_transformation_mode=ctm)
        if mode == "nearest":
            attrs["nearest_mode"] = "round_prefer_ceil" if ac else "floor"
        xc = b.nchw(x)
        nc = b.op1("Slice", [b.op1("Shape", [xc], dtype=np.int64, rank=1), b.const(np.array([0], np.int64)),
                             b.const(np.array([2], np.int64))], rank=1)
        sizes = b.op1("Concat", [nc, b.const(size)], axis=0, rank=1)
        y = b.op1("Resize", [xc, "", "", sizes], rank=4, **attrs)
        return b.nhwc(y)

    def op_TopKV2(self, node, ins):
        b = self.b
        x = self.ref(ins[0])
        k = self.cval(ins[1], "TopKV2 k").astype(np.int64).reshape(1)
        vals, idx = b.op("TopK", [x, b.const(k)], 2, axis=-1, largest=1, sorted=1, rank=b.rank.get(x))
        b.dtype[idx] = np.dtype(np.int64)
        idx32 = b.op1("Cast", [idx], to=_np_dtype_to_onnx(np.int32), dtype=np.int32, rank=b.rank.get(x))
        return [vals, idx32]

    def op_GatherV2(self, node, ins):
        b = self.b
        params, idx = self.ref(ins[0]), self.ref(ins[1])
        axis = int(np.asarray(self.cval(ins[2], "GatherV2 axis")).reshape(-1)[0])
        if _attr(node, "batch_dims", 0):
            raise ConversionError("GatherV2 with batch_dims is not supported")
        rp, ri = b.rank.get(params), b.rank.get(idx)
        rank = None if rp is None or ri is None else rp + ri - 1
        return b.op1("Gather", [params, idx], axis=axis, dtype=b.dtype.get(params), rank=rank)

    def op_Fill(self, node, ins):
        b = self.b
        shape = self._shape_input(ins[0])
        v = self.ref(ins[1])
        return b.op1("Expand", [v, shape], dtype=b.dtype.get(v))

    def op_DepthToSpace(self, node, ins):
        b = self.b
        x = self.ref(ins[0])
        y = b.op1("DepthToSpace", [b.nchw(x)], blocksize=int(_attr(node, "block_size")), mode="DCR", rank=4)
        return b.nhwc(y)


def convert(graph: TfGraph, *, outputs: Iterable[str] | None = None,
            input_shapes: dict[str, Sequence[int | str | None]] | None = None, check: bool = True):
    """TF graph -> ``onnx.ModelProto`` (opset :data:`OPSET`).

    ``outputs``: TF tensor names (``node`` or ``node:1``); default: the model's
    signature outputs, else every non-Const node nothing else consumes.
    ``input_shapes``: override a Placeholder's shape (``None``/-1/str = dynamic).
    """
    conv = _Converter(graph, input_shapes)
    model = conv.run(list(outputs) if outputs else None)
    fuse_clips(model)
    if check:
        import onnx

        onnx.checker.check_model(model)
    return model


def _scalar(model, name: str, constants: dict) -> float | None:
    """The value of a one-element constant (a Constant node's output or an initializer), else None."""
    from onnx import numpy_helper

    if name in constants:
        v = constants[name]
    else:
        init = next((i for i in model.graph.initializer if i.name == name), None)
        if init is None:
            return None
        v = numpy_helper.to_array(init)
    return float(v.reshape(-1)[0]) if v.size == 1 and np.issubdtype(v.dtype, np.floating) else None


def fuse_clips(model) -> int:
    """``Max(Min(x, hi), lo)`` with scalar ``lo <= hi`` -> ``Clip(x, lo, hi)``, in place; a ``Relu`` feeding
    only that ``Min`` is dropped when ``lo >= 0``. The same numbers; returns how many were fused.

    TensorFlow.js graph models write ReLU6 as Relu, Minimum(6), Maximum(0) (MobileNets: faceres). Three
    element-wise ops after every convolution keep onnxruntime from fusing the activation into the
    convolution and from keeping its blocked (NCHWc) layout between layers: Clip it can fuse.
    """
    from onnx import helper, numpy_helper

    nodes = list(model.graph.node)
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in nodes
                 if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    consumers: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    outputs = {o.name for o in model.graph.output}
    producer = {o: n for n in nodes for o in n.output}
    drop: set[int] = set()
    replace: dict[int, object] = {}
    fused = 0
    for n in nodes:
        if n.op_type != "Max" or len(n.input) != 2:
            continue
        m = producer.get(n.input[0])
        lo = _scalar(model, n.input[1], constants)
        if m is None or m.op_type != "Min" or len(m.input) != 2 or lo is None:
            continue
        hi = _scalar(model, m.input[1], constants)
        if hi is None or lo > hi or consumers.get(m.output[0], 0) != 1 or m.output[0] in outputs:
            continue
        x = m.input[0]
        r = producer.get(x)
        if r is not None and r.op_type == "Relu" and lo >= 0 and consumers.get(x, 0) == 1 and x not in outputs:
            drop.add(id(r))
            x = r.input[0]
        lo_name, hi_name = f"{n.output[0]}__clip_lo", f"{n.output[0]}__clip_hi"
        model.graph.initializer.extend([numpy_helper.from_array(np.array(lo, np.float32), lo_name),
                                        numpy_helper.from_array(np.array(hi, np.float32), hi_name)])
        replace[id(n)] = helper.make_node("Clip", [x, lo_name, hi_name], list(n.output), name=f"{n.name}_clip")
        drop.add(id(m))
        fused += 1
    if fused:
        kept = [replace.get(id(n), n) for n in nodes if id(n) not in drop]
        used = {i for n in kept for i in n.input} | outputs
        kept = [n for n in kept if n.op_type != "Constant" or n.output[0] in used]
        inits = [i for i in model.graph.initializer if i.name in used]
        del model.graph.node[:]
        model.graph.node.extend(kept)
        del model.graph.initializer[:]
        model.graph.initializer.extend(inits)
    return fused
