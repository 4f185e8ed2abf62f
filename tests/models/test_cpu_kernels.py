"""test_cpu_kernels.py — the fast CPU kernels (src/backends/cpu/, oneDNN) against the reference
kernels and against ONNX Runtime, run as engines.

Each family below is one ONNX model of several independent branches at awkward sizes (odd
channels, groups, dilations, asymmetric pads, auto_pad, ceil_mode, batch broadcasting, 1-D and
3-D), most ending in an activation that the build fuses into the node before it. Each model is
built once (`kiln build`, a profile fixed at the inputs' shapes) and run three ways:
    the engine with the fast kernels (KILN_CPU_VERBOSE=1: every node named in the family must
        report "onednn" on stderr, so a silent fall-back to the reference cannot pass);
    the same engine with KILN_CPU_REF=1 (the reference kernels, in double; no node may report);
    onnxruntime on the .onnx model.
Every float output must agree with both: max |fast - other| <= TOL * max |other| (normalised
error); 8-bit outputs of the int8 kernels (QLinearConv, QLinearMatMul) within one quantization
step, MatMulInteger's int32 sums exactly.
Inputs are fresh normal draws (seed printed on failure), never zeros.

Run:   pytest tests/models/test_cpu_kernels.py
Needs: the kiln binary ($KILN_BUILD_DIR/kiln or build/kiln) built with oneDNN (KILN_HAVE_DNNL);
       onnx, onnxruntime, numpy.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kilnrun

TOL = 1e-5        # normalised error against the reference kernels (double) and against ORT
TIMEOUT = 120
F = TensorProto.FLOAT
SEED = int.from_bytes(os.urandom(4), "little")


class Graph:
    """A model of independent branches: g.input(), g.weight(), g.node(), g.output(), g.model()."""

    def __init__(self, opset: int, rng: np.random.Generator):
        self.opset, self.rng = opset, rng
        self.nodes, self.inits, self.inputs, self.outputs, self.feeds = [], [], [], [], {}
        self.fast = []  # node names that must run on a fast kernel
        self.kernel = {}  # ... and which ("onednn" unless named here)
        self.no_ort = set()  # outputs onnxruntime does not compute exactly here (see int8_family)
        self.n = 0

    def _name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def input(self, shape, dtype=np.float32, positive=False):
        name = self._name("in")
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            x = self.rng.integers(info.min, info.max, size=shape, endpoint=True)
        else:
            x = self.rng.standard_normal(shape)
        if positive:
            x = np.abs(x) + 0.1
        self.feeds[name] = x.astype(dtype)
        self.inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape))
        return name

    def const(self, arr):
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def weight(self, *shape, fan_in=None):
        fan_in = fan_in or (int(np.prod(shape[1:])) if len(shape) > 1 else 1)
        return self.const((self.rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32))

    def node(self, op, inputs, fast=None, n_out=1, kernel="onednn", **attrs):
        """Adds a node; `fast` names it (it must then run on the fast kernel `kernel`). Returns its
        output, or its n_out outputs as a list."""
        name = fast or self._name("n_" + op)
        outs = [self._name(op.lower() + "_") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        if fast:
            self.fast.append(fast)
            self.kernel[fast] = kernel
        return outs[0] if n_out == 1 else outs

    def output(self, x, label):
        """Exposes x as graph output `label`."""
        self.nodes.append(helper.make_node("Identity", [x], [label], name=f"out_{label}"))
        self.outputs.append(label)

    def model(self) -> onnx.ModelProto:
        """The model, its outputs typed by onnx's shape inference."""
        def make(outputs):
            g = helper.make_graph(self.nodes, "cpu_kernels", self.inputs, outputs, initializer=self.inits)
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="kiln-tests")
            m.ir_version = 8 if self.opset <= 17 else 10
            return m
        untyped = [helper.make_value_info(o, helper.make_tensor_type_proto(TensorProto.UNDEFINED, None)) for o in self.outputs]
        inferred = onnx.shape_inference.infer_shapes(make(untyped), strict_mode=True)
        types = {v.name: v for v in inferred.graph.output}
        m = make([types[o] for o in self.outputs])
        onnx.checker.check_model(m, full_check=True)
        return m


def act(g: Graph, x, kind):
    """An activation after x, in the form the build fuses into the producer."""
    if kind == "relu":
        return g.node("Relu", [x])
    if kind == "clip":
        return g.node("Clip", [x, g.const(np.float32(-0.5)), g.const(np.float32(0.7))])
    if kind == "sigmoid":
        return g.node("Sigmoid", [x])
    if kind == "tanh":
        return g.node("Tanh", [x])
    if kind == "leaky":
        return g.node("LeakyRelu", [x], alpha=0.13)
    if kind == "hardswish":
        return g.node("HardSwish", [x])
    if kind == "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x])])
    if kind == "gelu":
        return g.node("Gelu", [x])
    if kind == "gelu_tanh":
        return g.node("Gelu", [x], approximate="tanh")
    assert kind is None
    return x


# ---- the families ---------------------------------------------------------------------------------

def conv_family(g: Graph):
    cases = [  # name, X, W, attrs, bias, activation
        ("conv_odd", (2, 5, 13, 11), (7, 5, 3, 3), dict(pads=[1, 0, 2, 1], strides=[2, 1]), True, "relu"),
        ("conv_group_dil", (1, 6, 17, 15), (9, 2, 3, 3), dict(group=3, dilations=[2, 3], pads=[2, 2, 2, 2]), True, "clip"),
        ("conv_depthwise", (1, 13, 19, 19), (13, 1, 5, 5), dict(group=13, strides=[2, 2], auto_pad="SAME_UPPER"), True, "sigmoid"),
        ("conv_1d", (2, 7, 37), (5, 7, 4), dict(strides=[3], auto_pad="SAME_LOWER"), True, "leaky"),
        ("conv_3d", (1, 3, 7, 9, 8), (4, 3, 3, 2, 3), dict(pads=[1, 0, 1, 1, 1, 0]), False, "tanh"),
        ("conv_1x1", (1, 19, 13, 13), (11, 19, 1, 1), {}, True, "hardswish"),
        ("conv_5x5_gelu", (1, 4, 23, 21), (10, 4, 5, 5), dict(pads=[2, 1, 2, 1]), True, "gelu"),
        ("conv_silu", (3, 8, 9, 9), (16, 8, 3, 3), dict(pads=[1, 1, 1, 1]), True, "silu"),
        ("conv_plain", (1, 3, 31, 29), (5, 3, 7, 7), dict(strides=[2, 2], pads=[3, 3, 3, 3]), True, None),
    ]
    for name, xs, ws, attrs, bias, a in cases:
        ins = [g.input(xs), g.weight(*ws)] + ([g.weight(ws[0], fan_in=1)] if bias else [])
        g.output(act(g, g.node("Conv", ins, fast=name, **attrs), a), name)
    cases_t = [  # ConvTranspose: name, X, W (C, M/group, k...), attrs, activation
        ("convt_group", (1, 6, 7, 9), (6, 4, 3, 3), dict(group=2, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 0]), "relu"),
        ("convt_1d_dil", (2, 3, 11), (3, 5, 3), dict(dilations=[2], strides=[3]), None),
    ]
    for name, xs, ws, attrs, a in cases_t:
        ins = [g.input(xs), g.weight(*ws), g.weight(ws[1] * attrs.get("group", 1), fan_in=1)]
        g.output(act(g, g.node("ConvTranspose", ins, fast=name, **attrs), a), name)


def matmul_family(g: Graph):
    mm = g.node("MatMul", [g.input((3, 1, 5, 7)), g.input((4, 7, 9))], fast="mm_bcast")         # (3, 4, 5, 9)
    g.output(mm, "mm_bcast")
    g.output(g.node("MatMul", [g.input((7,)), g.input((2, 7, 5))], fast="mm_1d_a"), "mm_1d_a")   # (2, 5)
    g.output(g.node("MatMul", [g.input((3, 4, 7)), g.input((7,))], fast="mm_1d_b"), "mm_1d_b")   # (3, 4)
    g.output(g.node("MatMul", [g.input((2, 3, 6, 13)), g.input((2, 3, 13, 11))], fast="mm_batched"), "mm_batched")
    # MatMul + bias Add (+ activation): kiln.FusedMatMul, the batch folded into M
    for name, a, k, n in [("fmm_relu", "relu", 13, 11), ("fmm_silu", "silu", 33, 17), ("fmm_gelu", "gelu_tanh", 64, 37)]:
        y = g.node("MatMul", [g.input((2, 6, k)), g.weight(k, n)], fast=name)
        g.output(act(g, g.node("Add", [y, g.weight(n, fan_in=1)]), a), name)
    cases = [  # name, A, B, C, attrs, activation
        ("gemm_bias", (5, 9), (12, 9), (12,), dict(transB=1), "relu"),
        ("gemm_alpha_beta", (9, 5), (9, 7), (5, 1), dict(transA=1, alpha=0.7, beta=1.3), None),
        ("gemm_trans_scalar_c", (9, 5), (7, 9), (), dict(transA=1, transB=1, beta=0.5), "tanh"),
        ("gemm_no_c", (6, 8), (8, 3), None, dict(alpha=2.0), None),
        ("gemm_full_c", (4, 6), (6, 10), (4, 10), {}, "sigmoid"),
    ]
    for name, sa, sb, sc, attrs, a in cases:
        ins = [g.input(sa), g.weight(*sb)]
        if sc is not None:
            ins.append(g.const(g.rng.standard_normal(sc).astype(np.float32)))
        g.output(act(g, g.node("Gemm", ins, fast=name, **attrs), a), name)


def pool_family(g: Graph):
    cases = [  # op, name, X, attrs
        ("MaxPool", "max_ceil", (1, 5, 13, 13), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
        ("MaxPool", "max_dil", (2, 3, 15, 14), dict(kernel_shape=[3, 2], dilations=[2, 2])),
        ("MaxPool", "max_1d", (2, 7, 29), dict(kernel_shape=[4], strides=[3], auto_pad="SAME_UPPER")),
        ("AveragePool", "avg_incl", (1, 9, 11, 12), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
        ("AveragePool", "avg_ceil", (1, 9, 12, 11), dict(kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1)),
        ("AveragePool", "avg_3d", (1, 3, 7, 8, 9), dict(kernel_shape=[2, 3, 2], pads=[0, 1, 1, 1, 1, 0])),
        ("GlobalAveragePool", "gap", (2, 7, 5, 9), {}),
        ("GlobalMaxPool", "gmp", (2, 7, 5, 9), {}),
    ]
    for op, name, xs, attrs in cases:
        g.output(g.node(op, [g.input(xs)], fast=name, **attrs), name)


def norm_eltwise_family(g: Graph):
    g.output(g.node("Softmax", [g.input((3, 5, 37))], fast="softmax_last", axis=-1), "softmax_last")
    g.output(g.node("Softmax", [g.input((2, 13, 4))], fast="softmax_mid", kernel="cpu", axis=1), "softmax_mid")
    g.output(g.node("LogSoftmax", [g.input((3, 16, 4, 7))], fast="logsoftmax_mid", kernel="cpu", axis=1), "logsoftmax_mid")
    g.output(g.node("LogSoftmax", [g.input((4, 19))], fast="logsoftmax", axis=-1), "logsoftmax")
    g.output(g.node("LayerNormalization", [g.input((2, 7, 33)), g.weight(33, fan_in=1), g.weight(33, fan_in=1)],
                    fast="ln_last", axis=-1, epsilon=1e-5), "ln_last")
    g.output(g.node("LayerNormalization", [g.input((3, 4, 5)), g.weight(4, 5, fan_in=1)], fast="ln_axis1", axis=1,
                    epsilon=1e-3), "ln_axis1")
    a = g.input((2, 5, 7))
    g.output(g.node("Add", [a, g.input((2, 5, 7))], fast="add_same"), "add_same")
    g.output(g.node("Add", [g.input((3, 6, 9)), g.weight(9, fan_in=1)], fast="add_row"), "add_row")
    g.output(g.node("Mul", [g.const(np.float32(0.37)), g.input((4, 11))], fast="mul_scalar_first"), "mul_scalar_first")
    g.output(g.node("Sub", [g.input((2, 3, 4, 5)), g.input((3, 1, 5))], fast="sub_bcast"), "sub_bcast")
    # per-channel operands away from dim 1 and the last dims (seen as [before, run, after] by the kernel)
    g.output(g.node("Div", [g.input((3, 9, 10)), g.input((3, 1, 1), positive=True)], fast="div_chan_dim0"), "div_chan_dim0")
    g.output(g.node("Sub", [g.input((2, 3, 4, 5, 6)), g.input((3, 4, 1, 1))], fast="sub_run_5d"), "sub_run_5d")
    g.output(g.node("Mul", [g.input((4, 6, 5)), g.input((6, 1))], fast="mul_mid_3d"), "mul_mid_3d")
    g.output(g.node("Div", [g.input((6, 7)), g.input((7,), positive=True)], fast="div_row"), "div_row")
    g.output(g.node("Sum", [g.input((5, 1, 9)), g.input((3, 5, 4, 9))], fast="sum_two"), "sum_two")
    for op, attrs in [("Relu", {}), ("LeakyRelu", dict(alpha=0.21)), ("Sigmoid", {}), ("Tanh", {}), ("Exp", {}),
                      ("Abs", {}), ("HardSwish", {}), ("Gelu", {})]:
        name = "u_" + op.lower()
        g.output(g.node(op, [g.input((3, 17, 5))], fast=name, **attrs), name)
    g.output(g.node("Sqrt", [g.input((5, 13), positive=True)], fast="u_sqrt"), "u_sqrt")
    g.output(g.node("Pow", [g.input((3, 8, 33)), g.const(np.float32(2.0))], fast="pow_square", kernel="cpu"), "pow_square")
    g.output(g.node("Pow", [g.input((4, 9), positive=True), g.const(np.float32(3.0))]), "pow_cube")  # the reference
    g.output(g.node("Transpose", [g.input((2, 3, 5, 7))], fast="transpose_nhwc", perm=[0, 2, 3, 1]), "transpose_nhwc")
    g.output(g.node("Transpose", [g.input((4, 9, 6))], fast="transpose_rev"), "transpose_rev")


def int8_family(g: Graph):
    """QLinearConv / QLinearMatMul / MatMulInteger at full 8-bit ranges (weights up to +-127).
    With uint8 activations onnxruntime is no oracle on CPUs without VNNI: its u8 x s8 kernels add
    pairs of products in 16 bits with saturation (MatMulInteger off by ~2.5e4 on this AVX2 EPYC),
    so those outputs are checked against the reference kernels (exact integers) only; the int8
    activation cases are checked against both."""
    c = g.const
    f32 = np.float32
    cases = [  # name, X dtype, X, W, group, attrs, per-channel W scale, x/w/y zero points, bias, y dtype
        ("qconv_u8_pc", np.uint8, (1, 5, 13, 11), (7, 5, 3, 3), 1, dict(pads=[1, 1, 1, 1]), True, (128, 0, 120), True, np.uint8),
        ("qconv_s8_group", np.int8, (2, 6, 9, 9), (9, 2, 3, 3), 3, dict(strides=[2, 2], pads=[1, 0, 1, 0]), False, (-3, 0, 5), False, np.int8),
        ("qconv_depthwise", np.uint8, (1, 8, 15, 15), (8, 1, 5, 5), 8, dict(dilations=[2, 2], pads=[4, 4, 4, 4]), True, (17, 0, 100), True, np.uint8),
        ("qconv_1d_wzp", np.int8, (2, 4, 23), (5, 4, 3), 1, dict(strides=[2]), False, (0, 3, 0), True, np.int8),
    ]
    for name, xt, xs, ws, group, attrs, per_ch, (zx, zw, zy), bias, yt in cases:
        m, k = ws[0], int(np.prod(ws[1:]))
        w = g.rng.integers(-127, 128, size=ws).astype(np.int8)
        x = g.input(xs, xt)
        rms = np.sqrt(np.mean((g.feeds[x] - float(zx)) ** 2) * np.mean((w - float(zw)) ** 2) * k)  # of the sums
        wscale = (g.rng.uniform(0.5, 1.5, m) if per_ch else np.array([1.0])).astype(f32) * f32(0.01)
        xscale, yscale = f32(0.02), f32(0.02 * 0.01 * rms / 40)  # |y - zy| ~ 40 steps
        ins = [x, c(xscale), c(np.array(zx, xt)), c(w), c(wscale), c(np.array(zw, np.int8)), c(yscale), c(np.array(zy, yt))]
        if bias:
            ins.append(c(g.rng.integers(-20000, 20000, size=m).astype(np.int32)))
        g.output(g.node("QLinearConv", ins, fast=name, group=group, **attrs), name)
        if xt == np.uint8:
            g.no_ort.add(name)
    # Sums past 2^24 (all weights positive, K = 3136): floats may round them, Y stays within a step.
    # The bias takes the sums' mean out again so that Y is not saturated.
    w = g.rng.integers(0, 128, size=(6, 64, 7, 7)).astype(np.int8)
    x = g.input((1, 64, 11, 11), np.uint8)
    mean = float(np.mean(g.feeds[x]))
    bias = -np.round(mean * w.reshape(6, -1).astype(np.float64).sum(1)).astype(np.int32)
    rms = 74.0 * np.sqrt(np.mean(w.astype(np.float64) ** 2) * 64 * 49)
    ins = [x, c(f32(0.02)), c(np.array(0, np.uint8)), c(w), c(np.full(6, 0.01, f32)), c(np.array(0, np.int8)),
           c(f32(0.02 * 0.01 * rms / 40)), c(np.array(128, np.uint8)), c(bias)]
    g.output(g.node("QLinearConv", ins, fast="qconv_big_sums"), "qconv_big_sums")
    g.no_ort.add("qconv_big_sums")
    for name, at, sa, sb, per_col, (za, zb, zy), yt in [
            ("qmm_u8_pc", np.uint8, (2, 7, 33), (33, 19), True, (131, 0, 125), np.uint8),
            ("qmm_s8_bcast", np.int8, (3, 1, 5, 16), (2, 16, 11), False, (2, -4, -1), np.int8)]:
        n, k = sb[-1], sb[-2]
        bscale = (g.rng.uniform(0.5, 1.5, n) if per_col else np.array([1.0])).astype(f32) * f32(0.01)
        ins = [g.input(sa, at), c(f32(0.03)), c(np.array(za, at)), c(g.rng.integers(-127, 128, size=sb).astype(np.int8)),
               c(bscale), c(np.array(zb, np.int8)), c(f32(0.03 * 0.01 * 74 * 73 * np.sqrt(k) / 40)), c(np.array(zy, yt))]
        g.output(g.node("QLinearMatMul", ins, fast=name), name)
        if at == np.uint8:
            g.no_ort.add(name)
    b = c(g.rng.integers(-127, 128, size=(24, 13)).astype(np.int8))
    g.output(g.node("MatMulInteger", [g.input((3, 5, 24), np.uint8), b, c(np.array(7, np.uint8)), c(np.array(-2, np.int8))],
                    fast="mmi_u8"), "mmi_u8")
    g.no_ort.add("mmi_u8")
    g.output(g.node("MatMulInteger", [g.input((4, 9), np.int8), c(g.rng.integers(-127, 128, size=(9, 6)).astype(np.int8))],
                    fast="mmi_s8"), "mmi_s8")
    # ConvInteger (uint8 and per-tensor zero points: what ONNX Runtime takes)
    w = g.rng.integers(0, 256, size=(6, 4, 3, 3)).astype(np.uint8)
    g.output(g.node("ConvInteger", [g.input((2, 4, 9, 10), np.uint8), c(w), c(np.array(131, np.uint8)), c(np.array(120, np.uint8))],
                    fast="cint_u8", pads=[1, 1, 1, 1]), "cint_u8")
    w = g.rng.integers(0, 256, size=(5, 3, 4)).astype(np.uint8)
    g.output(g.node("ConvInteger", [g.input((1, 3, 17), np.uint8), c(w), c(np.array(7, np.uint8))], fast="cint_1d",
                    strides=[2]), "cint_1d")
    # K * 255 * 255 > 2^24 (K = 288): the exact sum is not guaranteed in floats, so the reference runs
    w = g.rng.integers(0, 256, size=(2, 32, 3, 3)).astype(np.uint8)
    g.output(g.node("ConvInteger", [g.input((1, 32, 5, 5), np.uint8), c(w)]), "cint_big_k")
    # K * 255 * 127 > 2^24: the exact int32 sum is not guaranteed in floats, so the reference runs
    g.output(g.node("MatMulInteger", [g.input((2, 600), np.uint8), c(g.rng.integers(-127, 128, size=(600, 3)).astype(np.int8))]),
             "mmi_big_k")
    g.no_ort.add("mmi_big_k")


def quant_family(g: Graph):
    """QuantizeLinear / DequantizeLinear on src/backends/cpu/quant.c: float32 <-> int8 and uint8, per
    tensor and per axis, with and without zero points (the Q/DQ pairs of QAT models)."""
    c, f32 = g.const, np.float32

    def q(name, inputs, **attrs):
        return g.node("QuantizeLinear", inputs, fast=name, kernel="cpu", **attrs)

    def dq(name, inputs, **attrs):
        return g.node("DequantizeLinear", inputs, fast=name, kernel="cpu", **attrs)

    g.output(q("q_u8_tensor", [g.input((3, 7, 11)), c(f32(0.02)), c(np.array(128, np.uint8))]), "q_u8_tensor")
    g.output(q("q_s8_axis", [g.input((2, 5, 9)), c(g.rng.uniform(0.01, 0.03, 5).astype(f32)),
                              c(g.rng.integers(-20, 20, 5).astype(np.int8))], axis=1), "q_s8_axis")
    g.output(q("q_no_zp", [g.input((6, 10), positive=True), c(f32(0.007))]), "q_no_zp")
    g.output(dq("dq_u8_tensor", [g.input((4, 13), np.uint8), c(f32(0.05)), c(np.array(100, np.uint8))]), "dq_u8_tensor")
    g.output(dq("dq_s8_axis", [g.input((3, 6, 4), np.int8), c(g.rng.uniform(0.01, 0.03, 6).astype(f32)),
                               c(g.rng.integers(-20, 20, 6).astype(np.int8))], axis=1), "dq_s8_axis")


def attention_family(g: Graph):
    """Attention (opset 23) on src/backends/cpu/attention.c: 4-D and 3-D layouts, a value head size
    other than the key's, GQA, causal, float and bool masks that broadcast, a scale, past keys
    and values with the present outputs. (A mask shorter than the keys, which ONNX Runtime
    refuses, is checked by the node tests as engines.) Also RMSNormalization, another opset-23 op."""
    def attn(name, inputs, n_out=1, **attrs):
        return g.node("Attention", inputs, fast=name, n_out=n_out, kernel="cpu", **attrs)

    g.output(attn("attn_4d", [g.input((2, 3, 5, 8)), g.input((2, 3, 7, 8)), g.input((2, 3, 7, 6))]), "attn_4d")
    g.output(attn("attn_3d_gqa_causal", [g.input((2, 5, 16)), g.input((2, 7, 8)), g.input((2, 7, 6))],
                  q_num_heads=4, kv_num_heads=2, is_causal=1), "attn_3d_gqa_causal")
    g.output(attn("attn_float_mask", [g.input((1, 2, 5, 4)), g.input((1, 2, 9, 4)), g.input((1, 2, 9, 4)),
                                      g.input((5, 9))], scale=0.3), "attn_float_mask")
    keep = g.rng.random((2, 1, 5, 8)) < 0.7
    keep[..., 0] = True  # every row keeps a key
    g.output(attn("attn_bool_mask", [g.input((2, 2, 5, 4)), g.input((2, 2, 8, 4)), g.input((2, 2, 8, 4)),
                                     g.const(keep)]), "attn_bool_mask")
    y, pk, pv = attn("attn_past", [g.input((1, 2, 3, 4)), g.input((1, 2, 3, 4)), g.input((1, 2, 3, 4)), "",
                                   g.input((1, 2, 5, 4)), g.input((1, 2, 5, 4))], n_out=3, is_causal=1)
    g.output(y, "attn_past")
    g.output(pk, "attn_present_key")
    g.output(pv, "attn_present_value")
    # RMSNormalization (opset 23 too; layernorm_fuse makes it from exported RMSNorms) on elementwise.c's loop
    g.output(g.node("RMSNormalization", [g.input((2, 7, 33)), g.weight(33, fan_in=1)], fast="rms_last", kernel="cpu",
                    epsilon=1e-5), "rms_last")
    g.output(g.node("RMSNormalization", [g.input((3, 4, 5)), g.weight(4, 5, fan_in=1)], fast="rms_two_axes", kernel="cpu",
                    axis=-2, epsilon=1e-3), "rms_two_axes")


FAMILIES = {"conv": (conv_family, 20), "matmul": (matmul_family, 20), "pool": (pool_family, 17),
            "norm_eltwise": (norm_eltwise_family, 20), "int8": (int8_family, 17), "attention": (attention_family, 23),
            "quant": (quant_family, 19)}


# ---- running ------------------------------------------------------------------------------------

def kiln(args, env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_CPU_REF", "KILN_CPU_VERBOSE")}
    env.update(env_extra)
    r = subprocess.run([str(kilnrun.kiln_binary()), *map(str, args)], capture_output=True, text=True,
                       timeout=TIMEOUT, env=env)
    assert r.returncode == 0, f"kiln {' '.join(map(str, args))} failed: {r.stderr.strip()}"
    return r


def int_err(got: np.ndarray, exp: np.ndarray) -> int:
    assert got.shape == exp.shape and got.dtype == exp.dtype, f"{got.dtype}{got.shape} vs {exp.dtype}{exp.shape}"
    return int(np.abs(got.astype(np.int64) - exp.astype(np.int64)).max())


def norm_err(got: np.ndarray, exp: np.ndarray) -> float:
    assert got.shape == exp.shape and got.dtype == exp.dtype, f"{got.dtype}{got.shape} vs {exp.dtype}{exp.shape}"
    scale = float(np.abs(exp).max()) or 1.0
    return float(np.abs(got.astype(np.float64) - exp.astype(np.float64)).max()) / scale


def run_family(tmp_path, build_family, opset):
    rng = np.random.default_rng(SEED)
    g = Graph(opset, rng)
    build_family(g)
    model = tmp_path / "model.onnx"
    onnx.save(g.model(), model)
    inputs = tmp_path / "inputs.npz"
    kilnrun.save_npz(inputs, g.feeds)
    engine = tmp_path / "model.kiln"
    kiln(["build", model, "-o", engine, "--shapes", kilnrun.shapes_arg(g.feeds)], {})

    fast = kiln(["run", engine, "--inputs", inputs, "--output", tmp_path / "fast.npz"], {"KILN_CPU_VERBOSE": "1"})
    report = {m.group(1): m.group(2) for m in re.finditer(r"^kiln cpu: node '([^']*)' \(\S+\) \S+: (.*)$", fast.stderr, re.M)}
    for name in g.fast:
        assert report.get(name) == g.kernel[name], f"node {name} did not run on {g.kernel[name]}: {report.get(name, 'no report')}"
    ref = kiln(["run", engine, "--inputs", inputs, "--output", tmp_path / "ref.npz"], {"KILN_CPU_REF": "1", "KILN_CPU_VERBOSE": "1"})
    assert "kiln cpu:" not in ref.stderr, f"KILN_CPU_REF=1 still ran fast kernels: {ref.stderr}"

    got, want = kilnrun.load_npz(tmp_path / "fast.npz"), kilnrun.load_npz(tmp_path / "ref.npz")
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ort_out = dict(zip(names, sess.run(None, g.feeds)))
    for name in g.no_ort:
        ort_out[name] = want[name]
    bad = []
    for name in names:
        if got[name].dtype == np.int32:  # MatMulInteger: the exact sums
            e_ref, e_ort = int_err(got[name], want[name]), int_err(got[name], ort_out[name])
            ok = e_ref == 0 and e_ort == 0
        elif np.issubdtype(got[name].dtype, np.integer):  # requantized: within one step (see dnnl_conv.c)
            e_ref, e_ort = int_err(got[name], want[name]), int_err(got[name], ort_out[name])
            step = 0 if name.startswith("q_") else 1  # QuantizeLinear (quant.c): bit-identical
            ok = e_ref <= step and e_ort <= step
            w = want[name].astype(np.int64)
            info = np.iinfo(want[name].dtype)
            saturated = float(np.mean((w == info.min) | (w == info.max)))
            assert np.ptp(w) > 40 and saturated < 0.2, f"{name}: a weak case: range {np.ptp(w)} steps, {saturated:.0%} saturated"
        else:
            e_ref, e_ort = norm_err(got[name], want[name]), norm_err(got[name], ort_out[name])
            ok = e_ref <= TOL and e_ort <= TOL
        if not ok:
            bad.append(f"{name}: vs reference {e_ref:.3g}, vs onnxruntime {e_ort:.3g}")
    assert not bad, f"seed {SEED}: errors above the bounds (floats: normalised {TOL:g}; 8-bit: one step; int32: none):\n  " + "\n  ".join(bad)
    return g, engine


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family(tmp_path, family):
    build_family, opset = FAMILIES[family]
    run_family(tmp_path, build_family, opset)


def test_inspect_names_the_kernels(tmp_path):
    """kiln inspect says onednn for the fast nodes, and ref for all of them under KILN_CPU_REF=1."""
    g, engine = run_family(tmp_path, pool_family, 17)
    for env, want in (({}, "onednn"), ({"KILN_CPU_REF": "1"}, "ref")):
        d = json.loads(kiln(["inspect", engine, "--json"], env).stdout)
        kernels = {layer["name"]: layer["kernel"] for layer in d["layers"]}
        for name in g.fast:
            assert kernels.get(name) == want, f"{name}: kernel {kernels.get(name)} with {env or 'defaults'}"
