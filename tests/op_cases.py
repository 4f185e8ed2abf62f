"""Small ONNX graphs at awkward sizes, each with fresh random inputs: the op cases that the GPU
suite (tests/gpu/test_gpu_ops.py) and the reduced-precision suite (tests/models/test_precision.py)
run against kiln's reference interpreter. CASES maps a name to a function returning
(onnx model, feeds)."""
from __future__ import annotations

import os

import numpy as np
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT
RNG = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


def rnd(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def init(name, arr):
    return numpy_helper.from_array(arr, name)


# ---- the cases: (model, feeds) at awkward sizes --------------------------------------------------

def c_add_bcast():
    return model([helper.make_node("Add", ["a", "b"], ["y"])], [vi("a", F, [3, 1, 5]), vi("b", F, [7, 5])],
                 [vi("y", F, None)]), {"a": rnd(3, 1, 5), "b": rnd(7, 5)}


def c_chain():
    n = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Sigmoid", ["m"], ["g"]),
         helper.make_node("Mul", ["m", "g"], ["silu"]), helper.make_node("Tanh", ["silu"], ["t"]),
         helper.make_node("Sub", ["t", "x"], ["y"])]
    return model(n, [vi("x", F, [2, 3, 37, 11])], [vi("y", F, None)], [init("s", rnd(1, 3, 1, 1))]), {"x": rnd(2, 3, 37, 11)}


def c_unary():
    n = [helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Sqrt", ["a"], ["s"]),
         helper.make_node("Exp", ["e"], ["x2"]), helper.make_node("Add", ["s", "x2"], ["y"])]
    return model(n, [vi("x", F, [1001])], [vi("y", F, None)]), {"x": rnd(1001, lo=-3, hi=3)}


def c_where_clip():
    n = [helper.make_node("Greater", ["x", "z"], ["c"]), helper.make_node("Clip", ["x", "lo", "hi"], ["cl"]),
         helper.make_node("Where", ["c", "cl", "z"], ["y"])]
    return model(n, [vi("x", F, [5, 33]), vi("z", F, [33])], [vi("y", F, None)],
                 [init("lo", np.array(-0.3, np.float32)), init("hi", np.array(0.4, np.float32))]), \
        _apart_from_z(rnd(5, 33), rnd(33))


def _apart_from_z(x, z):
    """x at least 0.05 from z, so x > z does not flip when both are rounded to 16 bits (a flipped
    Where picks the other branch: a rounding error no bound should absorb)."""
    d = x - z
    x = z + np.where(d >= 0, 1.0, -1.0) * np.maximum(np.abs(d), 0.05)
    return {"x": x.astype(np.float32), "z": z}


def c_conv(groups=1, cin=6, cout=10, stride=2, act=True):
    w = rnd(cout, cin // groups, 3, 3)
    n = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 0, 1, 2], strides=[stride, stride], group=groups)]
    n.append(helper.make_node("Relu" if act else "Identity", ["c"], ["y"]))
    return model(n, [vi("x", F, [2, cin, 17, 13])], [vi("y", F, None)], [init("w", w), init("b", rnd(cout))]), \
        {"x": rnd(2, cin, 17, 13)}


def c_conv_depthwise():
    return c_conv(groups=8, cin=8, cout=8, stride=1)


def c_conv_transpose():
    n = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])]
    return model(n, [vi("x", F, [1, 4, 9, 7])], [vi("y", F, None)], [init("w", rnd(4, 5, 3, 3)), init("b", rnd(5))]), \
        {"x": rnd(1, 4, 9, 7)}


def c_matmul_batched():
    return model([helper.make_node("MatMul", ["a", "b"], ["y"])], [vi("a", F, [3, 7, 33]), vi("b", F, [33, 17])],
                 [vi("y", F, None)]), {"a": rnd(3, 7, 33), "b": rnd(33, 17)}


def c_matmul_bias_gelu():
    n = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])]
    return model(n, [vi("x", F, [2, 19, 64])], [vi("y", F, None)], [init("w", rnd(64, 96)), init("b", rnd(96))]), \
        {"x": rnd(2, 19, 64)}


def c_gemm():
    n = [helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1, alpha=0.7, beta=1.3)]
    return model(n, [vi("a", F, [5, 40])], [vi("y", F, None)], [init("w", rnd(23, 40)), init("c", rnd(23))]), {"a": rnd(5, 40)}


def c_layernorm():
    n = [helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1, epsilon=1e-5)]
    return model(n, [vi("x", F, [3, 7, 131])], [vi("y", F, None)], [init("s", rnd(131)), init("b", rnd(131))]), \
        {"x": rnd(3, 7, 131, lo=-4, hi=4)}


def c_softmax():
    return model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], [vi("x", F, [4, 3, 1000])], [vi("y", F, None)]), \
        {"x": rnd(4, 3, 1000, lo=-5, hi=5)}


def c_softmax_mid_axis():
    return model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [vi("x", F, [2, 9, 5])], [vi("y", F, None)]), \
        {"x": rnd(2, 9, 5, lo=-5, hi=5)}


def c_reduce():
    n = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 3], keepdims=1),
         helper.make_node("ReduceMax", ["x"], ["M"], axes=[2], keepdims=0)]
    return model(n, [vi("x", F, [3, 5, 7, 9])], [vi("m", F, None), vi("M", F, None)], opset=13), {"x": rnd(3, 5, 7, 9)}


def c_attention():
    b, h, s, d = 2, 4, 37, 64
    n = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]), helper.make_node("MatMul", ["q", "kt"], ["qk"]),
         helper.make_node("Mul", ["qk", "sc"], ["qks"]), helper.make_node("Softmax", ["qks"], ["p"], axis=-1),
         helper.make_node("MatMul", ["p", "v"], ["y"])]
    ins = [vi(x, F, [b, h, s, d]) for x in ("q", "k", "v")]
    return model(n, ins, [vi("y", F, None)], [init("sc", np.array(1 / 8, np.float32))], opset=23), \
        {x: rnd(b, h, s, d) for x in ("q", "k", "v")}


def c_pool():
    n = [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
         helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[2, 3], strides=[1, 2], count_include_pad=0),
         helper.make_node("GlobalAveragePool", ["x"], ["g"])]
    return model(n, [vi("x", F, [2, 5, 15, 11])], [vi("m", F, None), vi("a", F, None), vi("g", F, None)]), \
        {"x": rnd(2, 5, 15, 11)}


def c_resize():
    n = [helper.make_node("Resize", ["x", "", "s"], ["l"], mode="linear"),
         helper.make_node("Resize", ["x", "", "s"], ["n"], mode="nearest")]
    return model(n, [vi("x", F, [1, 3, 7, 5])], [vi("l", F, None), vi("n", F, None)],
                 [init("s", np.array([1, 1, 2, 3], np.float32))], opset=13), {"x": rnd(1, 3, 7, 5)}


def c_data_movement():
    n = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
         helper.make_node("Slice", ["t", "st", "en", "ax", "sp"], ["sl"]),
         helper.make_node("Concat", ["sl", "sl"], ["c"], axis=1),
         helper.make_node("Reshape", ["c", "shp"], ["r"]),
         helper.make_node("Gather", ["r", "idx"], ["g"], axis=1),
         helper.make_node("Pad", ["g", "pads"], ["y"], mode="reflect")]
    inits = [init("st", np.array([5, -1], np.int64)), init("en", np.array([0, -100], np.int64)),
             init("ax", np.array([1, 2], np.int64)), init("sp", np.array([-2, -3], np.int64)),
             init("shp", np.array([2, -1, 6], np.int64)), init("idx", np.array([[0, 2], [1, -1]], np.int64)),
             init("pads", np.array([0, 0, 0, 1, 0, 0, 0, 2], np.int64))]
    return model(n, [vi("x", F, [2, 6, 7, 9])], [vi("y", F, None)], inits, opset=13), {"x": rnd(2, 6, 7, 9)}


def c_cast_int():
    n = [helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64), helper.make_node("Add", ["i", "one"], ["y"])]
    return model(n, [vi("x", F, [4, 9])], [vi("y", TensorProto.INT64, None)], [init("one", np.array(1, np.int64))]), \
        {"x": rnd(4, 9, lo=-50, hi=50)}


# ---- element-wise groups: one kiln.FusedElementwise node each where the pass runs (CUDA builds
# by default, CPU builds with KILN_EW_FUSE=1; src/passes/ew_fuse.c) ----

def c_ew_silu_bias():
    """x * sigmoid(x) + b, b per channel (1, C, 1, 1): a DAG (x read twice), a broadcast operand."""
    n = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["m"]),
         helper.make_node("Add", ["m", "b"], ["y"])]
    return model(n, [vi("x", F, [2, 5, 9, 7])], [vi("y", F, None)], [init("b", rnd(1, 5, 1, 1))]), \
        {"x": rnd(2, 5, 9, 7, lo=-4, hi=4)}


def c_ew_sub_div_bcast():
    """(a - m) / s with m on the last axis and s a scalar, then a second tensor operand: broadcast
    by index arithmetic, innermost dim a multiple of 8 (the vector walk of broadcast operands)."""
    n = [helper.make_node("Sub", ["a", "m"], ["d"]), helper.make_node("Div", ["d", "s"], ["q"]),
         helper.make_node("Mul", ["q", "g"], ["y"])]
    return model(n, [vi("a", F, [3, 11, 16]), vi("g", F, [11, 1])], [vi("y", F, None)],
                 [init("m", rnd(16)), init("s", np.array(1.7, np.float32))]), \
        {"a": rnd(3, 11, 16), "g": rnd(11, 1)}


def c_ew_clip_relu():
    """clip(relu(x * 2 + 1), 0, 2.5) at a size that leaves a vector tail (1001 elements)."""
    n = [helper.make_node("Mul", ["x", "two"], ["m"]), helper.make_node("Add", ["m", "one"], ["a"]),
         helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Clip", ["r", "lo", "hi"], ["y"])]
    inits = [init("two", np.array(2, np.float32)), init("one", np.array(1, np.float32)),
             init("lo", np.array(0, np.float32)), init("hi", np.array(2.5, np.float32))]
    return model(n, [vi("x", F, [7, 143])], [vi("y", F, None)], inits), {"x": rnd(7, 143, lo=-2, hi=2)}


def c_ew_math():
    """Unary math, the activations with attributes, Pow, Max/Min of two, over two inputs."""
    n = [helper.make_node("Abs", ["x"], ["ab"]), helper.make_node("Sqrt", ["ab"], ["sq"]),
         helper.make_node("Pow", ["sq", "p3"], ["pw"]), helper.make_node("LeakyRelu", ["x"], ["lr"], alpha=0.2),
         helper.make_node("Max", ["pw", "lr"], ["mx"]), helper.make_node("HardSigmoid", ["z"], ["hs"], alpha=0.3, beta=0.4),
         helper.make_node("Min", ["mx", "hs"], ["mn"]), helper.make_node("Tanh", ["mn"], ["th"]),
         helper.make_node("Erf", ["th"], ["er"]), helper.make_node("Neg", ["er"], ["ng"]),
         helper.make_node("Exp", ["ng"], ["ex"]), helper.make_node("Log", ["ex"], ["lg"]),
         helper.make_node("HardSwish", ["lg"], ["y"])]
    return model(n, [vi("x", F, [4, 33]), vi("z", F, [4, 33])], [vi("y", F, None)],
                 [init("p3", np.array(1.5, np.float32))], opset=14), {"x": rnd(4, 33, lo=-2, hi=2), "z": rnd(4, 33, lo=-3, hi=3)}


def c_ew_output_mid():
    """A chain whose middle value is also a graph output: fused on both sides of it, never away."""
    n = [helper.make_node("Mul", ["x", "k"], ["m"]), helper.make_node("Tanh", ["m"], ["mid"]),
         helper.make_node("Mul", ["mid", "mid"], ["sq"]), helper.make_node("Sub", ["one", "sq"], ["y"])]
    return model(n, [vi("x", F, [6, 40])], [vi("mid", F, None), vi("y", F, None)],
                 [init("k", rnd(40)), init("one", np.array(1, np.float32))]), {"x": rnd(6, 40)}


CASES = {f.__name__[2:]: f for f in [c_add_bcast, c_chain, c_unary, c_where_clip, c_conv, c_conv_depthwise,
                                      c_conv_transpose, c_matmul_batched, c_matmul_bias_gelu, c_gemm, c_layernorm,
                                      c_softmax, c_softmax_mid_axis, c_reduce, c_attention, c_pool, c_resize,
                                      c_data_movement, c_cast_int, c_ew_silu_bias, c_ew_sub_div_bcast,
                                      c_ew_clip_relu, c_ew_math, c_ew_output_mid]}
EW_CASES = [k for k in CASES if k.startswith("ew_")]


