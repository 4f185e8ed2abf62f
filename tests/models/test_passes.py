"""test_passes.py — kiln's graph optimization passes (src/passes/), through tests/unit/passes_check.c.

Each test builds a small ONNX model holding one pattern (onnx.helper), runs
    passes_check MODEL.onnx INPUTS.npz [--no-fusion]
which runs the model on the reference backend without passes, runs kiln_passes_run, runs it again,
and also writes the optimized graph out as an engine graph and runs that re-imported copy. It prints
a JSON report: per pass {removed, fused, folded}, the ops left, the fused activations, and the
largest output differences. Each test checks
  (a) that the pattern was rewritten (the ops it consists of are gone, the counts in the report), and
  (b) that nothing changed: max |fused - unfused| <= 1e-4 * max |unfused| (f16: 5e-3), the graph
      outputs kept their names, and the re-imported engine graph gives the same outputs;
and negative cases check that patterns with an extra reader of an intermediate value, or an
intermediate that is a graph output, are left alone (and the outputs still agree).
The light models of ../shared/testdata/onnx-light run through every pass too (their weights are
ConstantOfShape nodes: folding makes them constants, then BN folding and fusions apply), and
ResNet-50 once more with random weights, so that its output depends on the input. Reports are
printed (pytest -rP or -s shows them).

Inputs come from np.random.default_rng() unseeded, at awkward sizes, never zeros.
Run:   pytest tests/models/test_passes.py -rP
Needs: $KILN_BUILD_DIR/tests/passes_check (default <repo>/build/tests/passes_check),
       $KILN_SHARED_DIR (default <repo>/../shared) for the light models; onnx, numpy.
"""
from __future__ import annotations

import collections
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kilnrun
from op_cases import CASES, EW_CASES

RNG = np.random.default_rng()
TOL = 1e-4
LIGHT = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
         "squeezenet", "vgg19", "zfnet512"]


def passes_check_binary() -> Path:
    path = kilnrun.kiln_build_dir() / "tests" / "passes_check"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"passes_check not found or not executable: {path} (build it: cmake --build build; "
                    f"or point KILN_BUILD_DIR at the build directory)", pytrace=False)
    return path


# ---- building models -----------------------------------------------------------------------------

class Builder:
    """A graph under construction: g.input(...), g.const(...), g.op(...), g.output(...), g.model()."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.feeds: dict[str, np.ndarray] = {}
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def input(self, name: str, shape, dtype=np.float32, data=None, dims=None) -> str:
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self.inputs.append(helper.make_tensor_value_info(name, elem, dims if dims is not None else list(shape)))
        self.feeds[name] = data if data is not None else rand(shape, dtype)
        return name

    def const(self, arr, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type: str, *inputs, outputs: int = 1, name: str | None = None, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name or self.name(op_type), **attrs))
        return outs[0] if outputs == 1 else outs

    def output(self, name: str, dtype=np.float32) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), None))

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "passes_test", self.inputs, self.outputs, self.inits)
        opsets = [helper.make_opsetid("", self.opset)]
        m = helper.make_model(graph, opset_imports=opsets)
        m.ir_version = helper.find_min_ir_version_for(opsets)
        # Output shapes from onnx's inference (the checker wants them), then the checker.
        inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(m).graph.value_info}
        for out in m.graph.output:
            if out.name in inferred and inferred[out.name].type.tensor_type.HasField("shape"):
                out.type.CopyFrom(inferred[out.name].type)
            elif not out.type.tensor_type.HasField("shape"):
                out.type.tensor_type.shape.SetInParent()
        onnx.checker.check_model(m)
        return m


def rand(shape, dtype=np.float32, lo=0.25):
    """Random values away from zero: |x| >= lo."""
    x = RNG.standard_normal(shape)
    x = np.where(x >= 0, x + lo, x - lo)
    return x.astype(dtype)


def positive(shape, dtype=np.float32):
    return RNG.uniform(0.5, 1.5, shape).astype(dtype)


# ---- running ------------------------------------------------------------------------------------

def check(tmp_path, g: Builder | onnx.ModelProto, feeds=None, *, no_fusion=False, tol=TOL, roundtrip=True,
          timeout=900, ew_fuse=False) -> dict:
    """Runs passes_check; asserts the outputs agree and kept their names; returns the report with
    "ops" (Counter of ops after) added."""
    model = g.model() if isinstance(g, Builder) else g
    feeds = g.feeds if isinstance(g, Builder) else feeds
    mpath, npath = tmp_path / "model.onnx", tmp_path / "inputs.npz"
    onnx.save(model, mpath)
    kilnrun.save_npz(npath, feeds)
    cmd = [str(passes_check_binary()), str(mpath), str(npath)] + (["--no-fusion"] if no_fusion else []) + \
        (["--ew-fuse"] if ew_fuse else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"passes_check failed ({r.returncode}): {r.stderr.strip()}"
    rep = json.loads(r.stdout)
    rep["ops"] = collections.Counter(rep["ops_after"])
    scale = max(rep["max_abs_ref"], 1e-3)
    assert rep["outputs_kept"], "graph outputs were renamed or lost"
    assert rep["max_abs_diff"] <= tol * scale, f"outputs changed: max abs diff {rep['max_abs_diff']} (scale {scale})"
    if roundtrip:
        assert "roundtrip_error" not in rep, f"engine graph round trip: {rep.get('roundtrip_error')}"
        assert rep["roundtrip_diff"] <= tol * scale, f"re-imported engine graph differs by {rep['roundtrip_diff']}"
    return rep


def count(rep: dict, pass_name: str, what: str = "fused") -> int:
    return int(rep["passes"].get(pass_name, {}).get(what, 0))


def summary(rep: dict) -> str:
    done = {k: {a: int(b) for a, b in v.items() if b} for k, v in rep["passes"].items() if any(v.values())}
    return (f"nodes {rep['nodes_before']} -> {rep['nodes_after']}; passes {done}; "
            f"ops after {dict(rep['ops'])}; acts {dict(collections.Counter(rep['acts_after']))}; "
            f"max abs diff {rep['max_abs_diff']:.3g} (output scale {rep['max_abs_ref']:.3g})")


# ---- folding and cleanup ------------------------------------------------------------------------

def test_constant_fold(tmp_path):
    g = Builder(17)
    x = g.input("x", (3, 7))
    c = g.op("Mul", g.op("Add", g.const(rand((3, 7))), g.const(rand((7,)))), g.const(rand((1,))))
    c = g.op("Transpose", g.op("Reshape", g.op("Transpose", c, perm=[1, 0]), g.const(np.array([3, 7]))), perm=[0, 1])
    # a huge ConstantOfShape (> 64 MiB) stays; a random generator stays
    big = g.op("ConstantOfShape", g.const(np.array([2100, 8100], np.int64)),
               value=numpy_helper.from_array(np.array([1e-9], np.float32)))
    rnd = g.op("RandomUniformLike", g.const(rand((3, 7))), seed=3.0)
    z = g.op("Mul", rnd, g.const(np.zeros((1,), np.float32)))
    y = g.op("Add", g.op("Add", g.op("Add", x, c), g.op("ReduceSum", big, keepdims=0)), z)
    g.output(y)
    rep = check(tmp_path, g)
    print(summary(rep))
    assert count(rep, "constant_fold", "folded") == 5
    assert rep["ops"]["ConstantOfShape"] == 1 and rep["ops"]["RandomUniformLike"] == 1
    assert "Transpose" not in rep["ops"] and "Reshape" not in rep["ops"]


def test_constant_fold_graph_output(tmp_path):
    """A graph output computed from constants only becomes a constant and keeps its name."""
    g = Builder(17)
    x = g.input("x", (2, 5))
    g.output(g.op("Relu", x))
    g.output(g.op("Sqrt", g.op("Abs", g.const(rand((4, 3))))))
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["Relu"]


@pytest.mark.parametrize("dynamic", [False, True])
def test_shape_fold(tmp_path, dynamic):
    """Shape / Size / Gather-of-Shape of known dims become constants; constant folding then folds the
    Concat feeding Reshape. With a dynamic batch, the Reshape's shape built from Shape(x) becomes a
    constant with 0 (copy) for the batch."""
    g = Builder(17)
    x = g.input("x", (2, 3, 5, 7), dims=["N", 3, 5, 7] if dynamic else None)
    s = g.op("Shape", x)
    shape = g.op("Concat", g.op("Gather", s, g.const(np.array([0]))), g.op("Gather", s, g.const(np.array([1]))),
                 g.const(np.array([-1])), axis=0)
    r = g.op("Reshape", x, shape)
    # Shape(x, start=1) is known even with a dynamic N; Size(x) only with a static one
    n = g.op("Cast", g.op("ReduceProd", g.op("Shape", x, start=1), keepdims=0), to=TensorProto.FLOAT)
    if not dynamic:
        n = g.op("Div", n, g.op("Cast", g.op("Size", x), to=TensorProto.FLOAT))
    y = g.op("Mul", r, n)
    g.output(y)
    rep = check(tmp_path, g)
    print(summary(rep))
    # static: Shape(x), Shape(x, start=1), Size(x); dynamic: Shape(x, start=1), Gather(Shape(x), [1])
    # and the Reshape's shape, now [0 ("copy N"), 3, -1]
    assert count(rep, "shape_fold", "folded") == 3
    assert sorted(rep["ops_after"]) == ["Mul", "Reshape"]


def test_identity_elim(tmp_path):
    g = Builder(13)
    x = g.input("x", (2, 5, 3))
    t = g.op("Identity", x)
    t = g.op("Dropout", t)
    t = g.op("Cast", t, to=TensorProto.FLOAT)
    t = g.op("Reshape", t, g.const(np.array([2, 5, 3])))
    t = g.op("Transpose", t, perm=[0, 1, 2])
    t = g.op("Squeeze", g.op("Unsqueeze", t, g.const(np.array([0]))), g.const(np.array([0])))
    t = g.op("Relu", t)
    g.output(t)
    # a graph output that an Identity writes: its name must survive
    out2 = g.op("Identity", g.op("Mul", x, g.const(rand((3,)))))
    g.output(out2)
    # an Identity from a graph input to a graph output must stay
    g.output(g.op("Identity", x))
    # Dropout in training mode stays
    g.output(g.op("Dropout", x, g.const(np.array(0.5, np.float32)), g.const(np.array(True)), seed=5))
    rep = check(tmp_path, g)
    print(summary(rep))
    assert rep["ops"]["Identity"] == 1
    assert rep["ops"]["Dropout"] == 1
    for op in ("Cast", "Transpose"):
        assert op not in rep["ops"]
    assert count(rep, "identity_elim", "removed") >= 6


def test_dropout_mask_used_stays(tmp_path):
    g = Builder(13)
    x = g.input("x", (4, 3))
    y, mask = g.op("Dropout", x, outputs=2)
    g.output(y)
    g.output(mask, np.bool_)
    rep = check(tmp_path, g)
    assert rep["ops"]["Dropout"] == 1


def test_subgraph_capture(tmp_path):
    """Values that If branches read from the outer graph (by name) keep their names: the Identity
    producing one stays; the Relu writing the other fuses into its Conv, which then writes it."""
    g = Builder(17)
    x = g.input("x", (2, 3, 5, 5))
    c = g.op("Relu", g.op("Conv", x, g.const(rand((4, 3, 1, 1)))))
    t = g.op("Identity", c)
    then = helper.make_graph([helper.make_node("Neg", [t], ["then_out"])], "then", [],
                             [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Abs", [c], ["else_out"])], "else", [],
                              [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)])
    cond = g.input("cond", (), np.bool_, data=np.array(RNG.random() < 0.5))
    g.output(g.op("If", cond, then_branch=then, else_branch=other))
    rep = check(tmp_path, g)
    assert rep["ops"]["Identity"] == 1 and "Relu" not in rep["ops"] and rep["acts_after"] == ["Conv+Relu"]


def test_dead_code(tmp_path):
    g = Builder(17)
    x = g.input("x", (3, 4))
    g.op("Tanh", g.op("Sigmoid", x))  # read by nothing
    g.output(g.op("Relu", x))
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["Relu"]
    assert count(rep, "dead_code", "removed") == 2


# ---- BatchNormalization and per-channel scale folding ---------------------------------------------

def bn_params(g, c, dtype):
    return [g.const(rand((c,), dtype)), g.const(rand((c,), dtype)), g.const(rand((c,), dtype)),
            g.const(positive((c,), dtype))]


@pytest.mark.parametrize("dtype,tol", [(np.float32, TOL), (np.float64, TOL), (np.float16, 5e-3)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("group", [1, 3])
def test_bn_fold_conv(tmp_path, dtype, tol, bias, group):
    g = Builder(15)
    x = g.input("x", (2, 6, 11, 9), dtype)
    ins = [x, g.const(rand((9, 6 // group, 3, 3), dtype) * 0.3)] + ([g.const(rand((9,), dtype))] if bias else [])
    y = g.op("BatchNormalization", g.op("Conv", *ins, pads=[1, 1, 1, 1], group=group), *bn_params(g, 9, dtype),
             epsilon=1e-3)
    g.output(y, dtype)
    rep = check(tmp_path, g, tol=tol)
    assert rep["ops_after"] == ["Conv"]
    assert count(rep, "bn_fold") == 1


@pytest.mark.parametrize("group", [1, 2])
def test_bn_fold_conv_transpose(tmp_path, group):
    g = Builder(15)
    x = g.input("x", (2, 4, 5, 7))
    w = g.const(rand((4, 6 // group, 3, 2)) * 0.3)
    y = g.op("BatchNormalization", g.op("ConvTranspose", x, w, strides=[2, 1], group=group), *bn_params(g, 6, np.float32))
    g.output(y)
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["ConvTranspose"]


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (11,), (1, 11), (5, 11)])
def test_bn_fold_gemm(tmp_path, trans_b, c_shape):
    g = Builder(15)
    x = g.input("x", (5, 13))
    w = g.const(rand((11, 13) if trans_b else (13, 11)) * 0.3)
    ins = [x, w] + ([g.const(rand(c_shape))] if c_shape else [])
    y = g.op("BatchNormalization", g.op("Gemm", *ins, transB=trans_b, beta=0.7), *bn_params(g, 11, np.float32))
    g.output(y)
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["Gemm"]


def test_bn_fold_negative(tmp_path):
    """The conv output has another reader / is a graph output: BN stays; BN after a non-conv stays."""
    g = Builder(15)
    x = g.input("x", (2, 3, 8, 8))
    c1 = g.op("Conv", x, g.const(rand((4, 3, 1, 1))))
    g.output(g.op("BatchNormalization", c1, *bn_params(g, 4, np.float32)))
    g.output(g.op("Relu", c1))
    c2 = g.op("Conv", x, g.const(rand((4, 3, 1, 1))))
    g.output(g.op("BatchNormalization", c2, *bn_params(g, 4, np.float32)))
    g.output(c2)
    g.output(g.op("BatchNormalization", g.op("Sigmoid", x), *bn_params(g, 3, np.float32)))
    rep = check(tmp_path, g)
    assert rep["ops"]["BatchNormalization"] == 3
    assert count(rep, "bn_fold") == 0


def test_scale_fold(tmp_path):
    """Conv -> Mul(per-channel) -> Add(per-channel) -> Relu: one Conv+Relu. A Mul varying along the
    width and a Mul after a BN without conv (folded into the BN) are checked too."""
    g = Builder(15)
    x = g.input("x", (2, 3, 7, 6))
    t = g.op("Conv", x, g.const(rand((5, 3, 3, 3))), g.const(rand((5,))))
    t = g.op("Add", g.op("Mul", t, g.const(rand((5, 1, 1)))), g.const(rand((1, 5, 1, 1))))
    t = g.op("Div", g.op("Mul", g.const(rand((1,))), t), g.const(positive((5, 1, 1))))
    g.output(g.op("Relu", t))
    w = g.op("Mul", g.op("Conv", x, g.const(rand((5, 3, 3, 3)))), g.const(rand((1, 1, 1, 4))))  # along the width
    g.output(w)
    b = g.op("Add", g.op("Mul", g.op("BatchNormalization", x, *bn_params(g, 3, np.float32)), g.const(rand((3, 1, 1)))),
             g.const(rand((3, 1, 1))))
    g.output(b)
    rep = check(tmp_path, g)
    print(summary(rep))
    assert count(rep, "scale_fold") == 6
    assert rep["ops"] == collections.Counter({"Conv": 2, "Mul": 1, "BatchNormalization": 1})
    assert rep["acts_after"] == ["Conv+Relu"]


# ---- activation fusion ---------------------------------------------------------------------------

ACTS = {
    # name: (opset, builder(g, x) -> y, expected act name)
    "relu": (13, lambda g, x: g.op("Relu", x), "Relu"),
    "clip": (13, lambda g, x: g.op("Clip", x, g.const(np.array(-0.5, np.float32)), g.const(np.array(1.25, np.float32))), "Clip"),
    "clip_max_only": (13, lambda g, x: g.op("Clip", x, "", g.const(np.array(0.75, np.float32))), "Clip"),
    "clip_opset10": (10, lambda g, x: g.op("Clip", x, min=-0.25, max=6.0), "Clip"),
    "sigmoid": (13, lambda g, x: g.op("Sigmoid", x), "Sigmoid"),
    "silu": (13, lambda g, x: g.op("Mul", x, g.op("Sigmoid", x)), "SiLU"),
    "silu_swapped": (13, lambda g, x: g.op("Mul", g.op("Sigmoid", x), x), "SiLU"),
    "hardswish": (14, lambda g, x: g.op("HardSwish", x), "HardSwish"),
    "hardsigmoid_mul": (13, lambda g, x: g.op("Mul", x, g.op("HardSigmoid", x, alpha=1 / 6, beta=0.5)), "HardSwish"),
    "gelu": (20, lambda g, x: g.op("Gelu", x), "Gelu"),
    "gelu_tanh": (20, lambda g, x: g.op("Gelu", x, approximate="tanh"), "GeluTanh"),
    "leaky_relu": (13, lambda g, x: g.op("LeakyRelu", x, alpha=0.13), "LeakyRelu"),
    "tanh": (13, lambda g, x: g.op("Tanh", x), "Tanh"),
}


def producer(g, kind, x):
    if kind == "Conv":
        return g.op("Conv", x, g.const(rand((5, 3, 3, 3)) * 0.5), g.const(rand((5,))), pads=[1, 0, 1, 0])
    if kind == "Gemm":
        return g.op("Gemm", x, g.const(rand((7, 9)) * 0.5), g.const(rand((7,))), transB=1)
    return g.op("MatMul", x, g.const(rand((9, 7)) * 0.5))


PRODUCER_INPUT = {"Conv": (2, 3, 6, 5), "Gemm": (4, 9), "MatMul": (2, 3, 9)}


@pytest.mark.parametrize("prod", ["Conv", "Gemm", "MatMul"])
@pytest.mark.parametrize("act", list(ACTS))
def test_act_fuse(tmp_path, prod, act):
    opset, make, expected = ACTS[act]
    g = Builder(opset)
    x = g.input("x", PRODUCER_INPUT[prod])
    g.output(make(g, producer(g, prod, x)))
    rep = check(tmp_path, g)
    assert rep["ops_after"] == [prod], summary(rep)
    assert rep["acts_after"] == [f"{prod}+{expected}"]


def test_act_fuse_negative(tmp_path):
    """Not fused: the product also read elsewhere, or a graph output itself; SiLU whose x has a third
    reader; an integer MatMul; an activation after a non-producer."""
    g = Builder(13)
    x = g.input("x", (4, 9))
    a = producer(g, "Gemm", x)
    g.output(g.op("Relu", a))
    g.output(g.op("Neg", a))
    b = producer(g, "Gemm", x)
    g.output(g.op("Relu", b))
    g.output(b)
    c = producer(g, "Gemm", x)
    g.output(g.op("Mul", c, g.op("Sigmoid", c)))
    g.output(g.op("Abs", c))
    i = g.input("i", (3, 4), np.int32, data=RNG.integers(1, 9, (3, 4)).astype(np.int32))
    g.output(g.op("Relu", g.op("MatMul", i, g.const(RNG.integers(-5, 5, (4, 2)).astype(np.int32)))), np.int32)
    g.output(g.op("Relu", g.op("Add", x, x)))
    rep = check(tmp_path, g)
    assert rep["acts_after"] == [] and count(rep, "act_fuse") == 0
    assert rep["ops"]["Relu"] == 4 and rep["ops"]["Sigmoid"] == 1


# ---- MatMul + bias -> FusedMatMul -----------------------------------------------------------------

@pytest.mark.parametrize("bias_shape", [(11,), (1, 1, 11)])
def test_matmul_bias(tmp_path, bias_shape):
    g = Builder(17)
    x = g.input("x", (2, 7, 13))
    y = g.op("Relu", g.op("Add", g.const(rand(bias_shape)), g.op("MatMul", x, g.const(rand((13, 11)) * 0.3))))
    g.output(y)
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["FusedMatMul"]
    assert rep["acts_after"] == ["FusedMatMul+Relu"]
    assert count(rep, "matmul_bias") == 1


def test_matmul_bias_negative(tmp_path):
    """A bias that varies along rows, a bias that would broadcast the product, and a product that is
    also read elsewhere are not fused."""
    g = Builder(17)
    x = g.input("x", (2, 7, 13))
    g.output(g.op("Add", g.op("MatMul", x, g.const(rand((13, 11)))), g.const(rand((7, 11)))))
    g.output(g.op("Add", g.op("MatMul", x, g.const(rand((13, 11)))), g.const(rand((3, 1, 1, 11)))))
    m = g.op("MatMul", x, g.const(rand((13, 11))))
    g.output(g.op("Add", m, g.const(rand((11,)))))
    g.output(m)
    rep = check(tmp_path, g)
    assert "FusedMatMul" not in rep["ops"] and rep["ops"]["Add"] == 3


# ---- LayerNormalization --------------------------------------------------------------------------

def layernorm(g, x, axes, *, gamma=None, beta=None, square="pow", eps=1e-5):
    def mean(v):
        if g.opset >= 18:
            return g.op("ReduceMean", v, g.const(np.array(axes, np.int64)), keepdims=1)
        return g.op("ReduceMean", v, axes=axes, keepdims=1)
    d = g.op("Sub", x, mean(x))
    p = g.op("Pow", d, g.const(np.array(2.0, np.float32))) if square == "pow" else g.op("Mul", d, d)
    n = g.op("Div", d, g.op("Sqrt", g.op("Add", mean(p), g.const(np.array(eps, np.float32)))))
    if gamma is not None:
        n = g.op("Mul", n, g.const(gamma))
    if beta is not None:
        n = g.op("Add", g.const(beta), n)
    return n


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("affine", ["none", "gamma", "both"])
@pytest.mark.parametrize("square", ["pow", "mul"])
def test_layernorm_fuse(tmp_path, opset, affine, square):
    g = Builder(opset)
    x = g.input("x", (2, 7, 13), data=RNG.normal(0.3, 1.5, (2, 7, 13)).astype(np.float32))
    gamma = rand((13,)) if affine != "none" else None
    beta = rand((13,)) if affine == "both" else None
    g.output(layernorm(g, x, [-1], gamma=gamma, beta=beta, square=square, eps=1e-3))
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["LayerNormalization"], summary(rep)
    assert count(rep, "layernorm_fuse") == 1


def test_layernorm_fuse_two_axes(tmp_path):
    """Normalising the last two axes: axis = -2; a (1, 5, 1) gamma broadcast over them."""
    g = Builder(17)
    x = g.input("x", (3, 5, 6))
    g.output(layernorm(g, x, [1, 2], gamma=rand((1, 5, 1)), beta=rand((6,))))
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["LayerNormalization"]


def test_layernorm_fuse_negative(tmp_path):
    """An intermediate (the centred x) that is also a graph output, a middle axis, and an opset
    without LayerNormalization: no LayerNormalization. What is left after the centring, d / sqrt(
    mean(d^2) + eps), is an RMSNorm of the centred x, and becomes RMSNormalization where its axes
    are trailing (the mean of x stays a ReduceMean)."""
    g = Builder(17)
    x = g.input("x", (2, 7, 13))
    out = layernorm(g, x, [-1])
    g.output(out)
    g.output(next(n.output[0] for n in g.nodes if n.op_type == "Sub"))  # the centred x
    g.output(layernorm(g, x, [1]))
    rep = check(tmp_path, g)
    assert "LayerNormalization" not in rep["ops"] and rep["ops"]["RMSNormalization"] == 1, summary(rep)
    assert rep["ops"]["ReduceMean"] == 3, summary(rep)
    g13 = Builder(13)
    x = g13.input("x", (2, 7, 13))
    g13.output(layernorm(g13, x, [-1]))
    rep = check(tmp_path, g13)
    assert "LayerNormalization" not in rep["ops"] and rep["ops"]["ReduceMean"] == 1, summary(rep)
    assert rep["ops"]["RMSNormalization"] == 1, summary(rep)


def rmsnorm(g, x, axes, *, gamma=None, form="mul_div1", square="pow", eps=1e-6, one=1.0, exponent=2.0):
    """An exported RMSNorm: x * 1/sqrt(mean(x^2) + eps) [* gamma], in the forms exporters write."""
    if g.opset >= 18:
        v = g.op("ReduceMean", g.op("Pow", x, g.const(np.array(exponent, np.float32))) if square == "pow" else
                 g.op("Mul", x, x), g.const(np.array(axes, np.int64)), keepdims=1)
    else:
        v = g.op("ReduceMean", g.op("Pow", x, g.const(np.array(exponent, np.float32))) if square == "pow" else
                 g.op("Mul", x, x), axes=axes, keepdims=1)
    s = g.op("Sqrt", g.op("Add", g.const(np.array(eps, np.float32)), v))
    if form == "div":
        n = g.op("Div", x, s)
    elif form == "mul_div1":  # torch.rsqrt through the TorchScript exporter: Div(1, Sqrt)
        n = g.op("Mul", x, g.op("Div", g.const(np.array(one, np.float32)), s))
    else:
        n = g.op("Mul", g.op("Reciprocal", s), x)
    if gamma is not None:
        n = g.op("Mul", g.const(gamma), n)
    return n


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("form,square", [("div", "pow"), ("mul_div1", "pow"), ("reciprocal", "mul")])
@pytest.mark.parametrize("affine", [True, False])
def test_rmsnorm_fuse(tmp_path, opset, form, square, affine):
    """Exported RMSNorms (any opset: RMSNormalization is opset 23, the engine keeps it) become one
    RMSNormalization; the outputs agree with the unfused graph's, also after an engine round trip."""
    g = Builder(opset)
    x = g.input("x", (3, 5, 24), data=RNG.normal(0.2, 2.0, (3, 5, 24)).astype(np.float32))
    g.output(rmsnorm(g, x, [-1], gamma=rand((24,)) if affine else None, form=form, square=square))
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["RMSNormalization"], summary(rep)
    assert count(rep, "layernorm_fuse") == 1


def test_rmsnorm_fuse_two_axes_and_negatives(tmp_path):
    """The last two axes normalised (axis -2, a (5, 1) gamma) fuse; a middle axis, an intermediate
    read by another output, x^3, and 2 / sqrt do not."""
    g = Builder(17)
    x = g.input("x", (3, 5, 6))
    g.output(rmsnorm(g, x, [1, 2], gamma=rand((5, 1))))
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["RMSNormalization"], summary(rep)
    g = Builder(17)
    x = g.input("x", (3, 5, 6))
    g.output(rmsnorm(g, x, [1]))
    g.output(rmsnorm(g, x, [-1], exponent=3.0))
    g.output(rmsnorm(g, x, [-1], one=2.0))
    g.output(rmsnorm(g, x, [-1], form="div"))
    g.output(next(n.output[0] for n in reversed(g.nodes) if n.op_type == "Sqrt"))  # the last one's denominator
    rep = check(tmp_path, g)
    assert count(rep, "layernorm_fuse") == 0 and "RMSNormalization" not in rep["ops"], summary(rep)


# ---- Gelu ----------------------------------------------------------------------------------------

def gelu_erf(g, x, order):
    if order == "div":
        e = g.op("Erf", g.op("Div", x, g.const(np.array(1.4142135, np.float32))))
    else:
        e = g.op("Erf", g.op("Mul", g.const(np.array(0.70710677, np.float32)), x))
    t = g.op("Add", e, g.const(np.array(1.0, np.float32)))
    half = g.const(np.array(0.5, np.float32))
    if order == "div":    # (x * t) * 0.5
        return g.op("Mul", g.op("Mul", x, t), half)
    if order == "mul":    # (x * 0.5) * t
        return g.op("Mul", g.op("Mul", x, half), t)
    return g.op("Mul", x, g.op("Mul", t, half))  # x * (t * 0.5)


def gelu_tanh(g, x):
    c = g.const
    x3 = g.op("Pow", x, c(np.array(3.0, np.float32)))
    inner = g.op("Mul", c(np.array(0.7978845608, np.float32)), g.op("Add", x, g.op("Mul", c(np.array(0.044715, np.float32)), x3)))
    return g.op("Mul", g.op("Mul", c(np.array(0.5, np.float32)), x), g.op("Add", g.op("Tanh", inner), c(np.array(1.0, np.float32))))


@pytest.mark.parametrize("form", ["div", "mul", "inner", "tanh"])
def test_gelu_fuse(tmp_path, form):
    g = Builder(20)
    x = g.input("x", (3, 17), data=rand((3, 17)) * 2)
    g.output(gelu_tanh(g, x) if form == "tanh" else gelu_erf(g, x, form))
    rep = check(tmp_path, g)
    assert rep["ops_after"] == ["Gelu"], summary(rep)
    assert count(rep, "gelu_fuse") == 1


def test_gelu_fuse_old_opset(tmp_path):
    """Opset 17 has no Gelu op: after a MatMul + bias the pattern becomes FusedMatMul's activation;
    after a graph input it stays."""
    g = Builder(17)
    x = g.input("x", (2, 5, 9))
    m = g.op("Add", g.op("MatMul", x, g.const(rand((9, 7)) * 0.5)), g.const(rand((7,))))
    g.output(gelu_erf(g, m, "div"))
    g.output(gelu_tanh(g, x))
    rep = check(tmp_path, g)
    assert rep["acts_after"] == ["FusedMatMul+Gelu"], summary(rep)
    assert rep["ops"]["Tanh"] == 1 and "Erf" not in rep["ops"]


def test_gelu_fuse_negative(tmp_path):
    """The inner Erf value is also a graph output: not fused."""
    g = Builder(20)
    x = g.input("x", (3, 17))
    g.output(gelu_erf(g, x, "div"))
    g.output(next(n.output[0] for n in g.nodes if n.op_type == "Erf"))
    rep = check(tmp_path, g)
    assert rep["ops"]["Erf"] == 1 and count(rep, "gelu_fuse") == 0


# ---- attention -----------------------------------------------------------------------------------

def attention(g, q, k, v, *, k_layout="bhsd", scale="div", mask=None, d=8, where=None):
    """softmax(q @ kT * scale + mask) @ v; k given as (B,H,S,D) ("bhsd") or (B,S,H,D) ("bshd").
    where (cond, fill, "fill_true" | "fill_false"): the scores through Where(cond, fill, s) or
    Where(cond, s, fill) instead of an added mask.
    scale "qk": q and kT each times d^-1/4 before the product, as torch's TorchScript exporter
    writes scaled_dot_product_attention (a [1]-shaped constant on kT, a scalar on q)."""
    kt = g.op("Transpose", k, perm=[0, 1, 3, 2] if k_layout == "bhsd" else [0, 2, 3, 1])
    if scale == "qk":
        q = g.op("Mul", q, g.const(np.array(d ** -0.25, np.float32)))
        kt = g.op("Mul", kt, g.const(np.array([d ** -0.25], np.float32)))
    s = g.op("MatMul", q, kt)
    if scale == "div":
        s = g.op("Div", s, g.const(np.array(np.sqrt(d), np.float32)))
    elif scale == "mul":
        s = g.op("Mul", g.const(np.array(1 / np.sqrt(d), np.float32)), s)
    if mask is not None:
        s = g.op("Add", s, mask)
    if where is not None:
        cond, fill, side = where
        f = g.const(np.array(fill, np.float32))
        s = g.op("Where", cond, f, s) if side == "fill_true" else g.op("Where", cond, s, f)
    return g.op("MatMul", g.op("Softmax", s, axis=-1), v)


@pytest.mark.parametrize("k_layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("scale", ["div", "mul", "none", "qk"])
@pytest.mark.parametrize("mask", ["none", "input", "const"])
def test_attention_fuse(tmp_path, k_layout, scale, mask):
    g = Builder(23)
    B, H, Sq, Skv, D, Dv = 2, 3, 5, 7, 8, 6
    q = g.input("q", (B, H, Sq, D))
    k = g.input("k", (B, H, Skv, D) if k_layout == "bhsd" else (B, Skv, H, D))
    v = g.input("v", (B, H, Skv, Dv))
    m = None
    if mask == "input":
        m = g.input("mask", (B, 1, Sq, Skv))
    elif mask == "const":
        m = g.const(np.triu(np.full((Sq, Skv), -1e4, np.float32), 3))
    g.output(attention(g, q, k, v, k_layout=k_layout, scale=scale, mask=m, d=D))
    rep = check(tmp_path, g)
    expected = ["Attention"] if k_layout == "bhsd" else ["Transpose", "Attention"]
    assert sorted(rep["ops_after"]) == sorted(expected), summary(rep)
    assert count(rep, "attention_fuse") == 1


def test_attention_fuse_negative(tmp_path):
    """The probabilities are also a graph output; a mask whose last dim broadcasts; a Where whose
    fill is finite (-1e4: a row masked everywhere would differ) or whose condition is not bool."""
    g = Builder(23)
    q, k, v = g.input("q", (2, 3, 5, 8)), g.input("k", (2, 3, 7, 8)), g.input("v", (2, 3, 7, 4))
    g.output(attention(g, q, k, v))
    g.output(next(n.output[0] for n in g.nodes if n.op_type == "Softmax"))
    g.output(attention(g, q, k, v, mask=g.input("m", (2, 1, 5, 1))))
    cond = g.input("c", (5, 7), dtype=bool, data=RNG.random((5, 7)) < 0.7)
    g.output(attention(g, q, k, v, where=(cond, -1e4, "fill_true")))
    rep = check(tmp_path, g)
    assert count(rep, "attention_fuse") == 0 and rep["ops"]["Softmax"] == 3


@pytest.mark.parametrize("opset", [13, 17, 22])
def test_attention_fuse_old_opset(tmp_path, opset):
    """Below opset 23 (which has Attention) the pattern is fused too: the engine's graph keeps the op."""
    g = Builder(opset)
    q, k, v = g.input("q", (2, 3, 5, 8)), g.input("k", (2, 3, 7, 8)), g.input("v", (2, 3, 7, 4))
    g.output(attention(g, q, k, v))
    rep = check(tmp_path, g)
    assert count(rep, "attention_fuse") == 1 and rep["ops_after"] == ["Attention"], summary(rep)


@pytest.mark.parametrize("form", ["tile", "expand", "v_plain"])
def test_attention_fuse_gqa_repeat(tmp_path, form):
    """GQA as exported (repeat_kv): K and V of 2 kv heads, each repeated 3 times in place by
    Unsqueeze -> Tile (or Expand) -> Reshape to the 6 query heads. Attention takes the 2 kv heads and
    the repeats go. When only K is repeated (V given with 6 heads) both stay as they are."""
    g = Builder(17)
    B, Hkv, r, Sq, T, D = 2, 2, 3, 5, 7, 8
    q = g.input("q", (B, Hkv * r, Sq, D))
    kv = {n: g.input(n, (B, Hkv, T, D)) for n in ("k", "v")}

    def repeat(x):
        u = g.op("Unsqueeze", x, g.const(np.array([2])))
        t = (g.op("Tile", u, g.const(np.array([1, 1, r, 1, 1]))) if form != "expand"
             else g.op("Expand", u, g.const(np.array([B, Hkv, r, T, D]))))
        return g.op("Reshape", t, g.const(np.array([B, Hkv * r, T, D])))

    v = g.input("v6", (B, Hkv * r, T, D)) if form == "v_plain" else repeat(kv["v"])
    g.output(attention(g, q, repeat(kv["k"]), v))
    rep = check(tmp_path, g)
    assert count(rep, "attention_fuse") == 1, summary(rep)
    if form == "v_plain":
        assert "Reshape" in rep["ops_after"], summary(rep)
    else:
        assert rep["ops_after"] == ["Attention"], summary(rep)


@pytest.mark.parametrize("fill", ["fill_true", "fill_false"])
@pytest.mark.parametrize("cond", ["input", "const"])
def test_attention_fuse_where_mask(tmp_path, fill, cond):
    """A boolean mask through Where(c, -inf, s) (torch's causal mask: fill where c holds, the mask
    becomes Not(c)) or Where(c, s, -inf) (attend where c holds). Every row keeps one key."""
    g = Builder(17)
    B, H, Sq, Skv = 2, 3, 5, 7
    q, k, v = g.input("q", (B, H, Sq, 8)), g.input("k", (B, H, Skv, 8)), g.input("v", (B, H, Skv, 4))
    attend = RNG.random((B, 1, Sq, Skv)) < 0.6
    attend[..., 0] = True
    c = attend if fill == "fill_false" else ~attend
    cv = g.input("c", c.shape, dtype=bool, data=c) if cond == "input" else g.const(c)
    g.output(attention(g, q, k, v, where=(cv, -np.inf, fill)))
    rep = check(tmp_path, g)
    expected = ["Attention"] + (["Not"] if cond == "input" and fill == "fill_true" else [])
    assert count(rep, "attention_fuse") == 1 and sorted(rep["ops_after"]) == expected, summary(rep)


def test_attention_fuse_scaled_q_shared(tmp_path):
    """Scaled Q and Kt, where scaled Q is also a graph output: its Mul stays (Q reads it), Kt's
    factor alone joins the scale."""
    g = Builder(23)
    q, k, v = g.input("q", (2, 3, 5, 8)), g.input("k", (2, 3, 7, 8)), g.input("v", (2, 3, 7, 4))
    g.output(attention(g, q, k, v, scale="qk"))
    g.output(next(n.output[0] for n in g.nodes if n.op_type == "Mul"))
    rep = check(tmp_path, g)
    assert count(rep, "attention_fuse") == 1 and sorted(rep["ops_after"]) == ["Attention", "Mul"], summary(rep)


# ---- a small transformer block -------------------------------------------------------------------

def transformer(opset: int, dynamic: bool) -> Builder:
    """Pre-LN encoder block as torch exports it: decomposed LayerNorm, Q/K/V projections with bias,
    heads split with Reshape (shape from Shape/Gather/Concat) and Transpose, decomposed attention with
    an additive mask, output projection, residual, LayerNorm, MLP with erf Gelu, residual."""
    g = Builder(opset)
    B, S, E, H, F = 2, 9, 20, 4, 36
    D = E // H
    x = g.input("x", (B, S, E), dims=["batch", S, E] if dynamic else None)
    mask = g.input("mask", (B, 1, 1, S), data=np.where(RNG.random((B, 1, 1, S)) < 0.25, -1e4, 0.0).astype(np.float32),
                   dims=["batch", 1, 1, S] if dynamic else None)

    def linear(v, n_in, n_out):
        w = (rand((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        return g.op("Add", g.op("MatMul", v, g.const(w)), g.const(rand((n_out,)) * 0.1))

    def heads(v):
        s = g.op("Shape", v)
        shape = g.op("Concat", g.op("Gather", s, g.const(np.array([0]))), g.op("Gather", s, g.const(np.array([1]))),
                     g.const(np.array([H, D])), axis=0)
        return g.op("Reshape", v, shape)

    h = layernorm(g, x, [-1], gamma=positive((E,)), beta=rand((E,)) * 0.1)
    q = g.op("Transpose", heads(linear(h, E, E)), perm=[0, 2, 1, 3])
    k = heads(linear(h, E, E))  # (B, S, H, D): transposed to (B, H, D, S) by attention()
    v = g.op("Transpose", heads(linear(h, E, E)), perm=[0, 2, 1, 3])
    a = attention(g, q, k, v, k_layout="bshd", scale="div", mask=mask, d=D)
    a = g.op("Reshape", g.op("Transpose", a, perm=[0, 2, 1, 3]), g.const(np.array([0, 0, E])))
    x1 = g.op("Add", x, linear(a, E, E))
    h2 = layernorm(g, x1, [-1], gamma=positive((E,)), beta=rand((E,)) * 0.1)
    f = linear(gelu_erf(g, linear(h2, E, F), "div"), F, E)
    g.output(g.op("Add", x1, f))
    return g


@pytest.mark.parametrize("dynamic", [False, True])
def test_transformer_block(tmp_path, dynamic):
    rep = check(tmp_path, transformer(23, dynamic))
    print(summary(rep))
    for op in ("ReduceMean", "Erf", "Softmax", "Sqrt", "Shape", "Concat"):
        assert op not in rep["ops"], summary(rep)
    assert rep["ops"]["LayerNormalization"] == 2 and rep["ops"]["Attention"] == 1
    assert rep["ops"]["FusedMatMul"] == 6 and "MatMul" not in rep["ops"]
    assert rep["acts_after"] == ["FusedMatMul+Gelu"]


def test_transformer_block_opset17(tmp_path):
    """At opset 17 LayerNormalization exists, Gelu and Attention do not: Gelu becomes the MLP
    FusedMatMul's activation; attention is fused all the same (the engine keeps the opset 23 op)."""
    rep = check(tmp_path, transformer(17, False))
    print(summary(rep))
    assert rep["ops"]["LayerNormalization"] == 2 and rep["ops"]["Attention"] == 1 and "Erf" not in rep["ops"]
    assert "Softmax" not in rep["ops"] and rep["acts_after"] == ["FusedMatMul+Gelu"]


def test_no_fusion(tmp_path):
    """--no-fusion: folding and cleanup only."""
    g = Builder(15)
    x = g.input("x", (2, 3, 6, 5))
    t = g.op("BatchNormalization", g.op("Conv", x, g.const(rand((4, 3, 3, 3)))), *bn_params(g, 4, np.float32))
    g.output(g.op("Relu", g.op("Identity", t)))
    rep = check(tmp_path, g, no_fusion=True)
    assert sorted(rep["ops_after"]) == ["BatchNormalization", "Conv", "Relu"]
    assert "bn_fold" not in rep["passes"] and "act_fuse" not in rep["passes"]


# ---- real models ---------------------------------------------------------------------------------

def light_model(shared_dir, name) -> Path:
    path = shared_dir / "testdata" / "onnx-light" / f"light_{name}.onnx"
    if not path.is_file():
        pytest.fail(f"light model not found: {path} (set KILN_SHARED_DIR)", pytrace=False)
    return path


def data_inputs(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rand(shape)
    return feeds


@pytest.mark.parametrize("name", LIGHT)
def test_light_model(tmp_path, shared_dir, name):
    """All passes on each light model: outputs unchanged (1e-3 relative), the graph smaller."""
    model = onnx.load(light_model(shared_dir, name))
    rep = check(tmp_path, model, data_inputs(model), tol=1e-3)
    print(f"{name}: {summary(rep)}")
    assert count(rep, "constant_fold", "folded") > 0 and rep["nodes_after"] < rep["nodes_before"]
    assert count(rep, "act_fuse") > 0


def randomized(model: onnx.ModelProto) -> onnx.ModelProto:
    """The light model with each ConstantOfShape weight replaced by a random initializer (He-scaled
    conv / gemm weights, BN variance positive), listed only as an initializer (IR 7); the softmax's
    input (logits) is an extra graph output."""
    g = model.graph
    readers = collections.defaultdict(list)
    for n in g.node:
        for i, name in enumerate(n.input):
            readers[name].append((n.op_type, i))
    shapes = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes, inits = [], []
    for n in g.node:
        if n.op_type != "ConstantOfShape":
            nodes.append(n)
            continue
        shape = tuple(int(s) for s in shapes[n.input[0]])
        op, idx = readers[n.output[0]][0]
        if op in ("Conv", "Gemm") and idx == 1:
            fan_in = int(np.prod(shape[1:]))
            arr = RNG.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif op == "BatchNormalization" and idx in (1, 4):
            arr = RNG.uniform(0.5, 1.5, shape)
        else:
            arr = RNG.standard_normal(shape) * 0.1
        inits.append(numpy_helper.from_array(arr.astype(np.float32), n.output[0]))
    used = {i for n in nodes for i in n.input}
    inits += [t for t in g.initializer if t.name in used]
    names = {t.name for t in inits} | {t.name for t in g.initializer}
    inputs = [vi for vi in g.input if vi.name not in names]
    # The logits too: with random weights the softmax saturates.
    logits = [helper.make_tensor_value_info(n.input[0], TensorProto.FLOAT, None) for n in nodes if n.op_type == "Softmax"]
    graph = helper.make_graph(nodes, g.name, inputs, list(g.output) + logits, inits)
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = 7
    return m


def test_resnet50_random_weights(tmp_path, shared_dir):
    """ResNet-50 (light) with random weights, so that the output depends on the input: every BN folds
    into its conv, every ReLU after a conv fuses; outputs unchanged (1e-3 relative)."""
    model = randomized(onnx.load(light_model(shared_dir, "resnet50")))
    rep = check(tmp_path, model, data_inputs(model), tol=1e-3)
    print(f"resnet50 (random weights): {summary(rep)}")
    assert "BatchNormalization" not in rep["ops"] and count(rep, "bn_fold") == 53
    assert rep["ops"]["Conv"] == 53 and rep["ops"]["Relu"] == 16  # the ReLUs after residual Sums stay
    assert collections.Counter(rep["acts_after"]) == {"Conv+Relu": 33}


# ---- element-wise fusion (ew_fuse: the CUDA default; CPU engines with KILN_EW_FUSE=1) ----

def ew_report(tmp_path, g, **kw) -> dict:
    rep = check(tmp_path, g, ew_fuse=True, **kw)
    print(summary(rep))
    return rep


def test_ew_fuse_silu_bias(tmp_path):
    """x * sigmoid(x) + b (b per channel): three nodes, one FusedElementwise; x read twice."""
    g = Builder(17)
    x = g.input("x", (2, 3, 7, 5))
    g.output(g.op("Add", g.op("Mul", x, g.op("Sigmoid", x)), g.const(rand((1, 3, 1, 1)))))
    rep = ew_report(tmp_path, g)
    assert rep["ops_after"] == ["FusedElementwise"]
    assert count(rep, "ew_fuse") == 1 and count(rep, "ew_fuse", "removed") == 2


def test_ew_fuse_broadcast_constants(tmp_path):
    """(a - b) / c with b on the last axis and c a scalar; then times a second input (11, 1)."""
    g = Builder(17)
    a, z = g.input("a", (3, 11, 16)), g.input("z", (11, 1))
    y = g.op("Mul", g.op("Div", g.op("Sub", a, g.const(rand((16,)))), g.const(np.array(1.7, np.float32))), z)
    g.output(y)
    rep = ew_report(tmp_path, g)
    assert rep["ops_after"] == ["FusedElementwise"] and count(rep, "ew_fuse", "removed") == 2


def test_ew_fuse_clip_relu(tmp_path):
    """clip(relu(x * 2 + 1)) with constant bounds (opset 11+ inputs) and with attributes (opset 7)."""
    for opset in (13, 7):
        g = Builder(opset)
        x = g.input("x", (7, 143))
        if opset >= 11:
            r = g.op("Relu", g.op("Add", g.op("Mul", x, g.const(np.array(2, np.float32))), g.const(np.array(1, np.float32))))
            y = g.op("Clip", r, g.const(np.array(0, np.float32)), g.const(np.array(2.5, np.float32)))
        else:  # IR 3: no initializers that are not inputs, so no constants
            y = g.op("Clip", g.op("Relu", g.op("Tanh", g.op("Neg", x))), min=0.1, max=0.6)
        g.output(y)
        d = tmp_path / f"opset{opset}"
        d.mkdir()
        rep = ew_report(d, g)
        assert rep["ops_after"] == ["FusedElementwise"] and count(rep, "ew_fuse", "removed") == 3
        assert rep["max_abs_ref"] > 0.5


def test_ew_fuse_graph_output_in_the_middle(tmp_path):
    """The middle value of a chain is a graph output: it stays a node output (two groups, or one
    group and a lone node), never fused away, and keeps its name."""
    g = Builder(17)
    x = g.input("x", (6, 40))
    mid = g.op("Tanh", g.op("Mul", x, g.const(rand((40,)))))
    g.output(mid)
    g.output(g.op("Sub", g.const(np.array(1, np.float32)), g.op("Mul", mid, mid)))
    rep = ew_report(tmp_path, g)
    assert rep["ops"]["FusedElementwise"] == 2, rep["ops_after"]
    assert len(rep["ops_after"]) == 2


def test_ew_fuse_keeps_shared_values(tmp_path):
    """A value read outside the group is not fused into it: Exp(x) is read by the chain and by a
    Softmax, so the group starts after it; a group of one node is left alone."""
    g = Builder(17)
    x = g.input("x", (4, 9))
    e = g.op("Exp", g.op("Neg", x))
    g.output(g.op("Softmax", e, axis=-1))
    g.output(g.op("Sqrt", g.op("Add", e, g.const(np.array(1, np.float32)))))
    g.output(g.op("Relu", g.op("Softmax", x, axis=0)))
    rep = ew_report(tmp_path, g)
    assert rep["ops"]["FusedElementwise"] == 2, rep["ops_after"]  # Neg+Exp, Add+Sqrt
    assert rep["ops"]["Relu"] == 1 and rep["ops"]["Softmax"] == 2


def test_ew_fuse_leaves_integers_and_limits(tmp_path):
    """Integer chains stay; a chain longer than one program splits into several groups."""
    g = Builder(17)
    i = g.input("i", (3, 5), dtype=np.int64, data=RNG.integers(-9, 9, (3, 5)))
    g.output(g.op("Neg", g.op("Abs", i)), dtype=np.int64)
    x = g.input("x", (5, 8))
    for _ in range(20):
        x = g.op("Tanh", g.op("Mul", x, g.const(np.array(0.9, np.float32))))
    g.output(x)
    rep = ew_report(tmp_path, g)
    assert rep["ops"]["Neg"] == 1 and rep["ops"]["Abs"] == 1
    assert rep["ops"]["FusedElementwise"] >= 3, rep["ops_after"]
    assert "Tanh" not in rep["ops"] and "Mul" not in rep["ops"]


def _ort(m, feeds):
    import onnxruntime as ort
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


EW_BOUND = {"fp32": 1e-6, "fp16": 5e-3, "bf16": 3e-2}  # relative L2 error against ONNX Runtime (fp32); 16 bits as tests/gpu


@pytest.mark.parametrize("prec", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("case", EW_CASES)
def test_ew_fuse_engine_vs_ort(case, prec, tmp_path, monkeypatch):
    """CPU engines built with KILN_EW_FUSE=1 (saved, loaded and run: the kiln.FusedElementwise node
    round-trips through the .kiln file) against ONNX Runtime in fp32, and the same engine built
    unfused (KILN_EW_FUSE=0). fp32: relative L2 error ~1e-6. 16-bit: within the bound, and the
    fused engine, which rounds once, is not meaningfully less accurate than the unfused one,
    which rounds each intermediate."""
    m, feeds = CASES[case]()
    path = tmp_path / "model.onnx"
    onnx.save(m, str(path))
    ref = _ort(m, feeds)
    flags = [] if prec == "fp32" else [f"--{prec}"]
    errs, programs = {}, []
    for fuse in ("1", "0"):
        monkeypatch.setenv("KILN_EW_FUSE", fuse)
        d = tmp_path / f"fuse{fuse}"
        d.mkdir()
        run, got = kilnrun.run_model(path, feeds, d, engine=True, build_args=flags)
        assert run.kind == "ok", f"{case} {prec} fuse={fuse}: {run.message}"
        desc = json.loads(kilnrun.run_kiln(["inspect", d / "model.kiln", "--json"]).stdout)
        fused = [la for la in desc["layers"] if la["op"] == "FusedElementwise"]
        if fuse == "1":
            programs = [la.get("fused_program") for la in fused]
            assert fused and all(programs), desc["layers"]
            text = kilnrun.run_kiln(["inspect", d / "model.kiln"]).stdout
            assert "computes " in text
        else:
            assert not fused
        err = 0.0
        for name, r in ref.items():
            r64, g64 = r.astype(np.float64), got[name].astype(np.float64)
            assert g64.shape == r64.shape
            err = max(err, float(np.linalg.norm(g64 - r64) / max(np.linalg.norm(r64), 1e-30)))
        errs[fuse] = err
    print(f"{case} {prec}: rel L2 error fused {errs['1']:.2e}, unfused {errs['0']:.2e}; programs {programs}")
    assert errs["1"] <= EW_BOUND[prec], f"fused engine: rel L2 error {errs['1']:.3e} > {EW_BOUND[prec]:.0e}"
    assert errs["0"] <= EW_BOUND[prec], f"unfused engine: rel L2 error {errs['0']:.3e} > {EW_BOUND[prec]:.0e}"
    if prec != "fp32":
        assert errs["1"] <= 1.25 * errs["0"] + 1e-4, f"fused {errs['1']:.3e} vs unfused {errs['0']:.3e}"


# ---- engines built for fixed shapes --------------------------------------------------------------

def shape_chain_model(layers: int = 20) -> Builder:
    """Dynamic batch and sequence; LAYERS attention blocks, each with its heads split by a Reshape whose
    shape comes from Shape/Gather/Concat of the block's input, its output flattened by a Reshape whose
    shape comes from Shape of the transposed heads (so a block's shapes are known only once the block
    before folded: one folding round each), and a triangular mask from Range over the sequence length
    through Where(c, -inf, s)."""
    g = Builder(17)
    B, S, E, H = 2, 7, 12, 3
    x = g.input("x", (B, S, E), dims=["batch", "seq", E])

    def heads(t):
        sh = g.op("Shape", t)
        dims = g.op("Concat", g.op("Gather", sh, g.const(np.array([0]))), g.op("Gather", sh, g.const(np.array([1]))),
                    g.const(np.array([H, E // H])), axis=0)
        return g.op("Transpose", g.op("Reshape", t, dims), perm=[0, 2, 1, 3])

    for _ in range(layers):
        w = (rand((E, 3 * E)) / np.sqrt(E)).astype(np.float32)
        q, k, v = g.op("Split", g.op("MatMul", x, g.const(w)), g.const(np.array([E, E, E])), axis=2, outputs=3)
        qh, kh, vh = heads(q), heads(k), heads(v)
        n = g.op("Gather", g.op("Shape", qh), g.const(np.array(2)))
        r = g.op("Range", g.const(np.array(0)), n, g.const(np.array(1)))
        masked = g.op("Less", g.op("Unsqueeze", r, g.const(np.array([0]))), g.op("Unsqueeze", r, g.const(np.array([1]))))
        a = attention(g, qh, kh, vh, where=(masked, -np.inf, "fill_true"), d=E // H)
        t = g.op("Transpose", a, perm=[0, 2, 1, 3])
        sh = g.op("Shape", t)
        flat = g.op("Concat", g.op("Slice", sh, g.const(np.array([0])), g.const(np.array([2]))), g.const(np.array([-1])),
                    axis=0)
        x = g.op("Reshape", t, flat)
    g.output(x)
    return g


@pytest.mark.parametrize("fixed", [True, False])
def test_fixed_shape_engine_folds_shapes(tmp_path, fixed):
    """kiln build with one profile that fixes every input (--shapes) specializes the graph to those
    shapes: every Shape chain, the Range and the mask fold away in all 20 blocks, attention fuses with a constant mask,
    and the engine still matches ONNX Runtime. With a range of shapes the Shape nodes stay, and the
    engine runs every shape of its range."""
    import onnxruntime as ort

    g = shape_chain_model()
    model = tmp_path / "m.onnx"
    onnx.save(g.model(), model)
    eng = tmp_path / "m.kiln"
    args = ["build", model, "-o", eng]
    args += ["--shapes", "x:2x7x12"] if fixed else ["--min-shapes", "x:1x1x12", "--opt-shapes", "x:2x7x12",
                                                    "--max-shapes", "x:3x9x12"]
    r = kilnrun.run_kiln(args)
    assert r.kind == "ok", r.message
    info = json.loads(kilnrun.run_kiln(["inspect", eng, "--json"]).stdout)
    ops = collections.Counter(layer["op"].split("+")[0] for layer in info["layers"])
    if fixed:
        assert not {"Shape", "Range", "Gather", "Concat", "Less"} & set(ops), ops
        assert ops["Attention"] == 20 and "Softmax" not in ops, ops
    else:
        assert ops["Shape"] >= 20 and ops["Range"] == 20, ops
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for shape in [(2, 7, 12)] if fixed else [(2, 7, 12), (1, 1, 12), (3, 9, 12)]:
        x = rand(shape)
        r, got = kilnrun.run_model(eng, {"x": x}, tmp_path)
        assert r.kind == "ok", r.message
        exp = sess.run(None, {"x": x})[0]
        out = next(iter(got.values()))
        assert out.shape == exp.shape
        assert np.abs(out - exp).max() <= TOL * np.abs(exp).max(), np.abs(out - exp).max()
