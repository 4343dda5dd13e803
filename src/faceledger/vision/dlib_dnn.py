"""Read dlib's serialized DNN file for the face recognition ResNet, and build the same
network as an ONNX graph.

This is the project's own reader of dlib's serialization format (written from dlib's
format description, not derived from its code):

* integers (any width, signed or not): one control byte -- bit 0x80 set for a
  negative number, low 4 bits = number of magnitude bytes that follow -- then that
  many bytes, little-endian;
* ``bool``: one ASCII byte, ``'1'`` or ``'0'``;
* strings: an integer length, then the bytes;
* ``float``/``double``: two integers, a signed mantissa ``m`` and an exponent ``e``
  (value ``m * 2**e``; exponents 32000/32001/32002 stand for +inf/-inf/NaN);
* a tensor (``resizable_tensor``): integer version 2, four integer dimensions
  (num_samples, k, nr, nc) and then the values as raw little-endian IEEE float32;
  an ``alias_tensor`` (a view description): integer version 1 and four dimensions.

A network ``add_loss_layer<LOSS, add_layer<L1, add_layer<L2, ... input>>>`` is written
outside-in: the loss layer's version and details, then for every wrapper its version
followed by the whole subnetwork, then (only for layers with a computation, i.e.
``add_layer``) the layer's own details and book-keeping fields.  Tags and skips write
only a version, so the graph topology (which ``add_prev`` adds which ``tag``) is not in
the file: it comes from :func:`resnet_v1_architecture`, the architecture of
``dlib_face_recognition_resnet_model_v1``, and the reader checks the file against it
layer by layer (names, filter counts, kernel sizes, strides, paddings, tensor shapes).

Layer semantics (inference):

* ``input_rgb_image_sized<150>``: ``(pixel - channel_mean) / 256``, planes R, G, B;
* ``con``: cross-correlation, filters (out, in, nr, nc), a bias per filter; default
  padding is ``nr/2`` for stride 1 and 0 otherwise;
* ``affine``: ``gamma * x + beta`` per channel;
* ``max_pool``/``avg_pool``: windows clipped to the input (the average is over the
  clipped window), output size ``1 + (n + 2 pad - window) / stride``;
* ``add_prev``: element-wise sum of two tensors of possibly different shapes; the
  output has the larger size in every dimension and each input counts as zero where
  it does not extend (here: the shortcut has fewer channels, and at 8x8 -> 4x4 the
  strided 3x3 branch is 3x3 while the pooled shortcut is 4x4);
* ``avg_pool_everything``: global average; ``fc_no_bias``: ``x @ W``, W (in, out);
* ``loss_metric``: the descriptor is the output of the last ``fc`` as it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DlibFormatError",
    "DnnLayer",
    "DlibNetwork",
    "read_resnet_v1",
    "resnet_v1_architecture",
    "to_onnx",
    "network_flops",
]


class DlibFormatError(ValueError):
    """The file is not the dlib network this reader expects."""


# ----------------------------------------------------------------------------- reader


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def int(self) -> int:
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def bool(self) -> bool:
        b = self._take(1)
        if b == b"1":
            return True
        if b == b"0":
            return False
        raise DlibFormatError(f"bad bool byte {b!r} at byte {self.pos - 1}")

    def str(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 20:
            raise DlibFormatError(f"bad string length {n} at byte {self.pos}")
        return self._take(n).decode("latin-1")

    def float(self) -> float:
        if self.data[self.pos] & 0x70:
            raise DlibFormatError("old ASCII float format is not supported")
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32000:
            return float("inf")
        if exponent == 32001:
            return float("-inf")
        if exponent == 32002:
            return float("nan")
        return float(np.ldexp(float(mantissa), exponent))

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"unexpected tensor version {version} at byte {self.pos}")
        dims = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in dims):
            raise DlibFormatError(f"bad tensor dimensions {dims}")
        n = int(np.prod(dims, dtype=np.int64))
        raw = self._take(4 * n)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"unexpected alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


# ----------------------------------------------------------------------- architecture


def _ares(n: int, down: bool) -> list[tuple]:
    """Outside-in layer list of dlib's ``ares<N>`` / ``ares_down<N>`` (affine BN)."""
    stride = 2 if down else 1
    block = [  # block<N, affine, stride> = affine<con<N,3,3,1,1,relu<affine<con<N,3,3,s,s>>>>>
        ("affine",),
        ("con", n, 3, 3, 1, 1),
        ("relu",),
        ("affine",),
        ("con", n, 3, 3, stride, stride),
    ]
    if down:
        # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<tag1<SUB>>>>>>>
        return [("relu",), ("add_prev", 2), ("avg_pool", 2, 2, 2, 2), ("skip", 1), ("tag", 2),
                *block, ("tag", 1)]
    # relu<add_prev1<block<tag1<SUB>>>>
    return [("relu",), ("add_prev", 1), *block, ("tag", 1)]


def resnet_v1_architecture() -> list[tuple]:
    """The layers of ``dlib_face_recognition_resnet_model_v1``, outermost first
    (as in dlib's ``anet_type`` in its python face recognition tool)."""
    layers: list[tuple] = [("fc_no_bias", 128), ("avg_pool_everything",)]
    layers += _ares(256, True)  # alevel0
    layers += _ares(256, False) + _ares(256, False) + _ares(256, True)  # alevel1
    layers += _ares(128, False) + _ares(128, False) + _ares(128, True)  # alevel2
    layers += _ares(64, False) + _ares(64, False) + _ares(64, False) + _ares(64, True)  # alevel3
    layers += _ares(32, False) + _ares(32, False) + _ares(32, False)  # alevel4
    layers += [("max_pool", 3, 3, 2, 2), ("relu",), ("affine",), ("con", 32, 7, 7, 2, 2)]
    layers += [("input_rgb_image_sized", 150)]
    return layers


@dataclass
class DnnLayer:
    kind: str  # one of the architecture kinds
    arg: tuple = ()  # the architecture's template arguments
    params: dict = field(default_factory=dict)  # numpy arrays and numbers read from the file


@dataclass
class DlibNetwork:
    """A parsed network: ``layers`` innermost (input) first."""

    layers: list[DnnLayer]
    loss: dict
    sha256: str
    input_size: int
    channel_means: tuple[float, float, float]


def _pool_padding(window: int, stride: int) -> int:
    return 0 if stride != 1 else window // 2


def _read_details(r: _Reader, spec: tuple) -> DnnLayer:
    kind, arg = spec[0], tuple(spec[1:])
    name = r.str()
    p: dict = {"version": name}
    if kind == "con":
        n, nr, nc, sy, sx = arg
        if name not in ("con_4", "con_5", "con_6"):
            raise DlibFormatError(f"expected a con_ layer, found {name!r}")
        params = r.tensor()
        num_filters, fnr, fnc, fsy, fsx = r.int(), r.int(), r.int(), r.int(), r.int()
        pad_y, pad_x = r.int(), r.int()
        filters = r.alias()
        biases = r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        use_bias = r.bool() if name in ("con_5", "con_6") else True
        if name == "con_6":
            r.bool()  # use_relu (a fused relu is only used by dlib when it fuses layers)
        want = (n, nr, nc, sy, sx, 0 if sy != 1 else nr // 2, 0 if sx != 1 else nc // 2)
        got = (num_filters, fnr, fnc, fsy, fsx, pad_y, pad_x)
        if got != want:
            raise DlibFormatError(f"con layer {got} does not match the architecture {want}")
        if filters[0] != n or filters[2:] != (nr, nc):
            raise DlibFormatError(f"con filters {filters} do not match {n}x?x{nr}x{nc}")
        nw = int(np.prod(filters))
        flat = params.reshape(-1)
        nb = n if use_bias else 0
        if use_bias and int(np.prod(biases)) != n:
            raise DlibFormatError(f"con biases {biases} do not match {n} filters")
        if flat.size != nw + nb:
            raise DlibFormatError(f"con params hold {flat.size} values, expected {nw + nb}")
        p["weight"] = flat[:nw].reshape(filters).copy()
        p["bias"] = flat[nw:].copy() if use_bias else np.zeros(n, np.float32)
        p.update(stride=(sy, sx), pads=(want[5], want[6]))
    elif kind == "affine":
        if name in ("bn_con2", "bn_fc2"):
            raise DlibFormatError("batch-norm layers in place of affine layers are not supported")
        if name not in ("affine_", "affine_2"):
            raise DlibFormatError(f"expected an affine_ layer, found {name!r}")
        params = r.tensor().reshape(-1)
        gamma, beta = r.alias(), r.alias()
        mode = r.int()
        disabled = r.bool() if name == "affine_2" else False
        k = int(np.prod(gamma))
        if mode != 0 or int(np.prod(beta)) != k or params.size != 2 * k or disabled:
            raise DlibFormatError(f"affine layer: mode {mode}, gamma {gamma}, params {params.size}")
        p["gamma"], p["beta"] = params[:k].copy(), params[k:].copy()
    elif kind == "relu":
        if name == "relu_2":
            if r.bool():
                raise DlibFormatError("disabled relu layers are not supported")
        elif name != "relu_":
            raise DlibFormatError(f"expected a relu_ layer, found {name!r}")
    elif kind in ("max_pool", "avg_pool", "avg_pool_everything"):
        base = "avg_pool" if kind != "max_pool" else "max_pool"
        if name != base + "_2":
            raise DlibFormatError(f"expected a {base}_2 layer, found {name!r}")
        got = (r.int(), r.int(), r.int(), r.int(), r.int(), r.int())
        if kind == "avg_pool_everything":
            want = (0, 0, 1, 1, 0, 0)
        else:
            wy, wx, sy, sx = arg
            want = (wy, wx, sy, sx, _pool_padding(wy, sy), _pool_padding(wx, sx))
        if got != want:
            raise DlibFormatError(f"{kind} {got} does not match the architecture {want}")
        p.update(window=got[:2], stride=got[2:4], pads=got[4:6])
    elif kind == "add_prev":
        if name != "add_prev_":
            raise DlibFormatError(f"expected an add_prev_ layer, found {name!r}")
    elif kind == "fc_no_bias":
        if name not in ("fc_2", "fc_3"):
            raise DlibFormatError(f"expected an fc_ layer, found {name!r}")
        num_outputs, num_inputs = r.int(), r.int()
        params = r.tensor().reshape(-1)
        weights, _biases = r.alias(), r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if name == "fc_3":
            r.bool()
        if num_outputs != arg[0] or bias_mode != 1 or weights[:2] != (num_inputs, num_outputs):
            raise DlibFormatError(f"fc layer: {num_outputs} outputs, mode {bias_mode}, weights {weights}")
        if params.size != num_inputs * num_outputs:
            raise DlibFormatError(f"fc params hold {params.size} values")
        p["weight"] = params.reshape(num_inputs, num_outputs).copy()
    else:  # pragma: no cover - architecture table and reader out of step
        raise DlibFormatError(f"no reader for layer kind {kind!r}")
    return DnnLayer(kind, arg, p)


def _skip_bookkeeping(r: _Reader, version: int, input_layer: bool) -> None:
    """The fields an add_layer writes after its details (none are needed for inference)."""
    r.bool()  # this_layer_setup_called
    r.bool()  # gradient_input_is_stale
    r.bool()  # get_output_and_gradient_input_disabled
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if input_layer:
        r.tensor()  # grad_final
        if version >= 3:
            r.int()  # sample expansion factor
    elif version == 2:
        r.tensor()  # params_grad


def read_resnet_v1(path: str | Path) -> DlibNetwork:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` (checked against its architecture)."""
    data = Path(path).read_bytes()
    r = _Reader(data)
    arch = resnet_v1_architecture()

    if r.int() != 1:
        raise DlibFormatError("not a dlib add_loss_layer (version != 1)")
    loss_name = r.str()
    if loss_name == "loss_metric_2":
        loss = {"margin": r.float(), "dist_thresh": r.float()}
    elif loss_name == "loss_metric_":
        loss = {}
    else:
        raise DlibFormatError(f"expected loss_metric, found {loss_name!r}")

    # Outside-in: one version per wrapper, down to the add_layer whose subnet is the input.
    wrappers = arch[:-1]
    versions = []
    for spec in wrappers[:-1]:
        v = r.int()
        ok = (1, 2) if spec[0] not in ("tag", "skip") else (1,)
        if v not in ok:
            raise DlibFormatError(f"unexpected version {v} for {spec} at byte {r.pos}")
        versions.append(v)
    v_in = r.int()
    if v_in not in (2, 3):
        raise DlibFormatError(f"unexpected input add_layer version {v_in}")
    name = r.str()
    if name != "input_rgb_image_sized":
        raise DlibFormatError(f"expected input_rgb_image_sized, found {name!r}")
    means = (r.float(), r.float(), r.float())
    nr, nc = r.int(), r.int()
    if (nr, nc) != (arch[-1][1], arch[-1][1]):
        raise DlibFormatError(f"input size {nr}x{nc}")
    first = _read_details(r, wrappers[-1])
    _skip_bookkeeping(r, v_in, input_layer=True)
    layers = [first]
    # Inside-out: the remaining wrappers close in reverse order.
    for spec, v in zip(reversed(wrappers[:-1]), reversed(versions)):
        if spec[0] in ("tag", "skip"):
            layers.append(DnnLayer(spec[0], tuple(spec[1:])))
            continue
        layers.append(_read_details(r, spec))
        _skip_bookkeeping(r, v, input_layer=False)
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} bytes left over after the network")
    return DlibNetwork(
        layers=layers,
        loss=loss,
        sha256=hashlib.sha256(data).hexdigest(),
        input_size=nr,
        channel_means=tuple(float(np.float32(m)) for m in means),  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------ shapes/flops


def _conv_out(n: int, window: int, stride: int, pad: int) -> int:
    return 1 + (n + 2 * pad - window) // stride


def _walk_shapes(net: DlibNetwork):
    """Yield (layer, input shape(s), output shape) with shapes (k, nr, nc), inside-out."""
    shape = (3, net.input_size, net.input_size)
    tags: dict[int, tuple] = {}
    for layer in net.layers:
        ins = shape
        if layer.kind == "con":
            w = layer.params["weight"]
            sy, sx = layer.params["stride"]
            py, px = layer.params["pads"]
            if w.shape[1] != shape[0]:
                raise DlibFormatError(f"con expects {w.shape[1]} channels, gets {shape[0]}")
            shape = (w.shape[0], _conv_out(shape[1], w.shape[2], sy, py), _conv_out(shape[2], w.shape[3], sx, px))
        elif layer.kind in ("max_pool", "avg_pool"):
            (wy, wx), (sy, sx), (py, px) = layer.params["window"], layer.params["stride"], layer.params["pads"]
            shape = (shape[0], _conv_out(shape[1], wy, sy, py), _conv_out(shape[2], wx, sx, px))
        elif layer.kind == "avg_pool_everything":
            shape = (shape[0], 1, 1)
        elif layer.kind == "fc_no_bias":
            if layer.params["weight"].shape[0] != int(np.prod(shape)):
                raise DlibFormatError("fc input size mismatch")
            shape = (layer.params["weight"].shape[1], 1, 1)
        elif layer.kind == "affine":
            if layer.params["gamma"].size != shape[0]:
                raise DlibFormatError("affine channel mismatch")
        elif layer.kind == "tag":
            tags[layer.arg[0]] = shape
        elif layer.kind == "skip":
            shape = tags[layer.arg[0]]
        elif layer.kind == "add_prev":
            other = tags[layer.arg[0]]
            ins = (shape, other)
            shape = tuple(max(a, b) for a, b in zip(shape, other))
        yield layer, ins, shape


def network_flops(net: DlibNetwork) -> int:
    """Floating-point operations for one face (a multiply-add counts as 2; convolutions
    and the fc layer only -- element-wise layers add well under 1%)."""
    total = 0
    for layer, ins, out in _walk_shapes(net):
        if layer.kind == "con":
            w = layer.params["weight"]
            total += 2 * int(np.prod(w.shape[1:])) * int(np.prod(out))
        elif layer.kind == "fc_no_bias":
            total += 2 * layer.params["weight"].size
    return total


# ------------------------------------------------------------------------------- ONNX


def to_onnx(net: DlibNetwork, *, opset: int = 17, producer: str = "faceledger", fold_affine: bool = True):
    """The network as an ``onnx.ModelProto``.

    Input ``chips``: uint8 (N, 150, 150, 3) RGB face chips as dlib's ``get_face_chip``
    returns them; output ``descriptors``: float32 (N, 128).  With ``fold_affine`` each
    ``affine`` layer is folded into the convolution before it (exact up to float
    rounding; measured equivalence in tests/test_onnx_embedder.py).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: list = []
    nodes: list = []
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    size = net.input_size
    x = "chips"
    # (N, H, W, 3) uint8 -> (N, 3, H, W) float32, (v - mean) / 256
    t = fresh("nchw")
    nodes.append(helper.make_node("Transpose", [x], [t], perm=[0, 3, 1, 2]))
    f = fresh("float")
    nodes.append(helper.make_node("Cast", [t], [f], to=TensorProto.FLOAT))
    mean = np.array(net.channel_means, np.float32).reshape(1, 3, 1, 1)
    c = fresh("centred")
    nodes.append(helper.make_node("Sub", [f, const("channel_means", mean)], [c]))
    cur = fresh("scaled")
    nodes.append(helper.make_node("Mul", [c, const("inv256", np.array(1 / 256, np.float32))], [cur]))

    shapes = list(_walk_shapes(net))
    tags: dict[int, tuple[str, tuple]] = {}
    shape = (3, size, size)
    i = 0
    layers = net.layers
    while i < len(layers):
        layer, ins, out = shapes[i]
        kind = layer.kind
        if kind == "con":
            w = layer.params["weight"].astype(np.float32)
            b = layer.params["bias"].astype(np.float32)
            # fold a following affine layer: gamma * (conv(x) + b) + beta
            if fold_affine and i + 1 < len(layers) and layers[i + 1].kind == "affine":
                g = layers[i + 1].params["gamma"].astype(np.float64)
                be = layers[i + 1].params["beta"].astype(np.float64)
                w = (w.astype(np.float64) * g[:, None, None, None]).astype(np.float32)
                b = (b.astype(np.float64) * g + be).astype(np.float32)
                i += 1
            py, px = layer.params["pads"]
            y = fresh("conv")
            nodes.append(helper.make_node(
                "Conv", [cur, const(y + "_w", w), const(y + "_b", b)], [y],
                kernel_shape=list(w.shape[2:]), strides=list(layer.params["stride"]),
                pads=[py, px, py, px],
            ))
            cur = y
        elif kind == "affine":
            y = fresh("affine")
            g = layer.params["gamma"].reshape(1, -1, 1, 1)
            be = layer.params["beta"].reshape(1, -1, 1, 1)
            m = fresh("affine_mul")
            nodes.append(helper.make_node("Mul", [cur, const(y + "_g", g)], [m]))
            nodes.append(helper.make_node("Add", [m, const(y + "_b", be)], [y]))
            cur = y
        elif kind == "relu":
            y = fresh("relu")
            nodes.append(helper.make_node("Relu", [cur], [y]))
            cur = y
        elif kind in ("max_pool", "avg_pool"):
            (wy, wx), (sy, sx), (py, px) = layer.params["window"], layer.params["stride"], layer.params["pads"]
            y = fresh(kind)
            attrs = dict(kernel_shape=[wy, wx], strides=[sy, sx], pads=[py, px, py, px])
            if kind == "avg_pool":
                attrs["count_include_pad"] = 0
            nodes.append(helper.make_node("MaxPool" if kind == "max_pool" else "AveragePool", [cur], [y], **attrs))
            cur = y
        elif kind == "avg_pool_everything":
            y = fresh("gap")
            nodes.append(helper.make_node("GlobalAveragePool", [cur], [y]))
            cur = y
        elif kind == "tag":
            tags[layer.arg[0]] = (cur, out)
        elif kind == "skip":
            cur = tags[layer.arg[0]][0]
        elif kind == "add_prev":
            (k1, r1, c1), (k2, r2, c2) = ins
            other = tags[layer.arg[0]][0]
            k, r, cc = out

            def padded(name: str, kk: int, rr: int, c_: int) -> str:
                if (kk, rr, c_) == (k, r, cc):
                    return name
                y_ = fresh("pad")
                pads = np.array([0, 0, 0, 0, 0, k - kk, r - rr, cc - c_], np.int64)
                nodes.append(helper.make_node("Pad", [name, const(y_ + "_p", pads)], [y_]))
                return y_

            a = padded(cur, k1, r1, c1)
            bb = padded(other, k2, r2, c2)
            y = fresh("add")
            nodes.append(helper.make_node("Add", [a, bb], [y]))
            cur = y
        elif kind == "fc_no_bias":
            fl = fresh("flat")
            nodes.append(helper.make_node("Flatten", [cur], [fl], axis=1))
            nodes.append(helper.make_node("MatMul", [fl, const("fc_w", layer.params["weight"])], ["descriptors"]))
            cur = "descriptors"
        else:  # pragma: no cover
            raise DlibFormatError(f"no ONNX lowering for {kind!r}")
        shape = out
        i += 1
    if cur != "descriptors":
        raise DlibFormatError("the network does not end in its fc layer")

    graph = helper.make_graph(
        nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", size, size, 3])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["N", shape[0]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name=producer)
    model.ir_version = min(model.ir_version, 8)
    model.doc_string = f"converted from dlib file sha256 {net.sha256}"
    onnx.checker.check_model(model)
    return model
