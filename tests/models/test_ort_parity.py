"""test_ort_parity.py — kiln against onnxruntime (CPU) on small models built here with onnx.helper.

Models, each at opset 17 (IR 8) and opset 21 (IR 10):
    cnn              Conv+Relu, MaxPool, Conv(stride 2)+Relu, Flatten, Gemm(transB), on 13x13 images
    transformer_ln   a pre-LN transformer block: LayerNormalization, multi-head self-attention
                     (MatMul/Add, Reshape, Transpose, scaled MatMul, Softmax), residual Adds, and an
                     MLP with Erf-based Gelu: 0.5*x*(1+Erf(x/sqrt(2)))
    transformer_dec  the same block with LayerNormalization written out as
                     ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add (ReduceMean's axes an
                     attribute at opset 17, an input from opset 18)
    audio1d          1-D convs on a waveform: strided Conv, depthwise dilated Conv, BatchNorm,
                     Relu, MaxPool, pointwise Conv, ReduceMean over time
    dynamic_batch    input (N, 3, 7, 7) with dim_param "N": Conv, Relu, Flatten, Gemm, Sigmoid;
                     run at N = 1, 3 and 7 (one model file, three kiln runs)
    external_data    the cnn with every initializer stored in one external file (weights.bin,
                     size_threshold=0); kiln runs from another working directory, so the file
                     must be found beside the model, not in the cwd
Inputs are fresh normal random draws each run (np.random.default_rng with a printed seed: a
failure message carries the seed to replay it), at awkward sizes (7, 13, 37, 997), never zeros.
Weights are scaled 1/sqrt(fan_in) so activations stay O(1). Tolerance: rtol 1e-4, atol 1e-5.

Run:   pytest tests/models/test_ort_parity.py
Needs: the kiln binary ($KILN_BUILD_DIR/kiln or build/kiln).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kilnrun

RTOL, ATOL = 1e-4, 1e-5
TIMEOUT = 120
OPSETS = (17, 21)
IR_VERSION = {17: 8, 21: 10}
F = TensorProto.FLOAT


class Builder:
    """Collects nodes and initializers; names are generated so graphs stay readable."""

    def __init__(self, rng: np.random.Generator, opset: int):
        self.rng, self.opset = rng, opset
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def weight(self, shape, fan_in=None, prefix="w") -> str:
        fan_in = fan_in or (shape[1] * int(np.prod(shape[2:])) if len(shape) > 1 else shape[0])
        arr = (self.rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)
        return self.const(arr, prefix)

    def const(self, arr, prefix="c") -> str:
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name("n_" + op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def reduce_mean(self, x, axes, keepdims=1):
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.const(np.array(axes, np.int64), "axes")], keepdims=keepdims)
        return self.op("ReduceMean", [x], axes=list(axes), keepdims=keepdims)

    def model(self, inputs, outputs, graph_name) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, graph_name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)],
                              producer_name="kiln-tests")
        m.ir_version = IR_VERSION[self.opset]
        onnx.checker.check_model(m, full_check=True)
        return m


# ---- models: each returns (model, [input feeds dict, ...]) ----------------------------------------

def cnn(rng, opset, batch=2):
    b = Builder(rng, opset)
    x = "image"
    h = b.op("Conv", [x, b.weight([8, 3, 3, 3]), b.weight([8], 27)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = b.op("Relu", [h])
    h = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])                  # 13 -> 6
    h = b.op("Conv", [h, b.weight([13, 8, 3, 3]), b.weight([13], 72)], kernel_shape=[3, 3],
             strides=[2, 2], pads=[1, 0, 1, 0])                                    # 6 -> 3 x 2
    h = b.op("Relu", [h])
    h = b.op("Flatten", [h], axis=1)                                               # 13*3*2 = 78
    y = b.op("Gemm", [h, b.weight([7, 78], 78), b.weight([7], 78)], transB=1, alpha=1.0, beta=1.0)
    m = b.model([helper.make_tensor_value_info(x, F, [batch, 3, 13, 13])],
                [helper.make_tensor_value_info(y, F, [batch, 7])], "cnn")
    return m, [{x: rng.standard_normal((batch, 3, 13, 13)).astype(np.float32)}]


def _layer_norm(b: Builder, x, d, decomposed):
    gamma = b.const((1.0 + 0.1 * b.rng.standard_normal(d)).astype(np.float32), "gamma")
    beta = b.const((0.1 * b.rng.standard_normal(d)).astype(np.float32), "beta")
    if not decomposed:
        return b.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)
    mean = b.reduce_mean(x, [-1])
    c = b.op("Sub", [x, mean])
    var = b.reduce_mean(b.op("Pow", [c, b.const(np.array(2.0, np.float32), "two")]), [-1])
    std = b.op("Sqrt", [b.op("Add", [var, b.const(np.array(1e-5, np.float32), "eps")])])
    return b.op("Add", [b.op("Mul", [b.op("Div", [c, std]), gamma]), beta])


def transformer(rng, opset, decomposed, batch=2, seq=7, d=12, heads=3, ff=37):
    b = Builder(rng, opset)
    x = "tokens"
    dh = d // heads

    def linear(h, din, dout):
        return b.op("Add", [b.op("MatMul", [h, b.weight([din, dout], din)]), b.weight([dout], din)])

    def split_heads(h):  # (B, S, D) -> (B, H, S, Dh)
        h = b.op("Reshape", [h, b.const(np.array([0, 0, heads, dh], np.int64), "shape")])
        return b.op("Transpose", [h], perm=[0, 2, 1, 3])

    ln1 = _layer_norm(b, x, d, decomposed)
    q, k, v = (split_heads(linear(ln1, d, d)) for _ in range(3))
    kt = b.op("Transpose", [k], perm=[0, 1, 3, 2])
    scores = b.op("Div", [b.op("MatMul", [q, kt]), b.const(np.array(math.sqrt(dh), np.float32), "sqrt_dh")])
    attn = b.op("Softmax", [scores], axis=-1)
    ctx = b.op("Transpose", [b.op("MatMul", [attn, v])], perm=[0, 2, 1, 3])
    ctx = b.op("Reshape", [ctx, b.const(np.array([batch, -1, d], np.int64), "shape")])
    h1 = b.op("Add", [x, linear(ctx, d, d)])
    ln2 = _layer_norm(b, h1, d, decomposed)
    u = linear(ln2, d, ff)
    erf = b.op("Erf", [b.op("Div", [u, b.const(np.array(math.sqrt(2.0), np.float32), "sqrt2")])])
    gelu = b.op("Mul", [b.op("Mul", [u, b.op("Add", [erf, b.const(np.array(1.0, np.float32), "one")])]),
                        b.const(np.array(0.5, np.float32), "half")])
    y = b.op("Add", [h1, linear(gelu, ff, d)])
    m = b.model([helper.make_tensor_value_info(x, F, [batch, seq, d])],
                [helper.make_tensor_value_info(y, F, [batch, seq, d])],
                "transformer_" + ("decomposed" if decomposed else "layernorm"))
    return m, [{x: rng.standard_normal((batch, seq, d)).astype(np.float32)}]


def audio1d(rng, opset, batch=2, t=997):
    b = Builder(rng, opset)
    x = "waveform"
    c = 8
    h = b.op("Conv", [x, b.weight([c, 1, 7]), b.weight([c], 7)], kernel_shape=[7], strides=[2], pads=[3, 3])  # 499
    h = b.op("Relu", [h])
    h = b.op("Conv", [h, b.weight([c, 1, 3])], kernel_shape=[3], group=c, dilations=[2], pads=[2, 2])        # 499
    h = b.op("BatchNormalization", [
        h,
        b.const((1.0 + 0.1 * rng.standard_normal(c)).astype(np.float32), "bn_scale"),
        b.const((0.1 * rng.standard_normal(c)).astype(np.float32), "bn_bias"),
        b.const((0.1 * rng.standard_normal(c)).astype(np.float32), "bn_mean"),
        b.const((0.5 + rng.random(c)).astype(np.float32), "bn_var"),
    ], epsilon=1e-5)
    h = b.op("Relu", [h])
    h = b.op("MaxPool", [h], kernel_shape=[3], strides=[2])                                           # 249
    h = b.op("Conv", [h, b.weight([13, c, 1]), b.weight([13], c)], kernel_shape=[1])
    y = b.reduce_mean(h, [2], keepdims=0)
    m = b.model([helper.make_tensor_value_info(x, F, [batch, 1, t])],
                [helper.make_tensor_value_info(y, F, [batch, 13])], "audio1d")
    return m, [{x: rng.standard_normal((batch, 1, t)).astype(np.float32)}]


def dynamic_batch(rng, opset):
    b = Builder(rng, opset)
    x = "x"
    h = b.op("Conv", [x, b.weight([5, 3, 3, 3]), b.weight([5], 27)], kernel_shape=[3, 3])         # 7 -> 5
    h = b.op("Relu", [h])
    h = b.op("Flatten", [h], axis=1)                                                                 # 125
    y = b.op("Sigmoid", [b.op("Gemm", [h, b.weight([125, 7], 125), b.weight([7], 125)])])
    m = b.model([helper.make_tensor_value_info(x, F, ["N", 3, 7, 7])],
                [helper.make_tensor_value_info(y, F, ["N", 7])], "dynamic_batch")
    return m, [{x: rng.standard_normal((n, 3, 7, 7)).astype(np.float32)} for n in (1, 3, 7)]


MODELS = {
    "cnn": cnn,
    "transformer_ln": lambda rng, opset: transformer(rng, opset, decomposed=False),
    "transformer_dec": lambda rng, opset: transformer(rng, opset, decomposed=True),
    "audio1d": audio1d,
    "dynamic_batch": dynamic_batch,
}


def ort_run(model_path, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def check_parity(model_path, feeds_list, workdir, seed, cwd=None):
    for k, feeds in enumerate(feeds_list):
        shapes = {n: a.shape for n, a in feeds.items()}
        assert all(np.all(a != 0) for a in feeds.values()), "an input contains an exact zero"
        ref = ort_run(model_path, feeds)
        d = workdir / f"run_{k}"
        d.mkdir()
        run, got = kilnrun.run_model(model_path, feeds, d, timeout=TIMEOUT, cwd=cwd)
        assert run.kind == "ok", f"kiln on {model_path.name} with inputs {shapes} (seed {seed}): {run.describe()}"
        for name, exp in ref.items():
            assert name in got, f"output '{name}' missing from kiln's npz (has {sorted(got)})"
            c = kilnrun.compare(got[name], exp, rtol=RTOL, atol=ATOL)
            print(f"{model_path.name} inputs {shapes}: output '{name}' {exp.shape}: {c.detail}")
            assert c.ok, f"{model_path.name} inputs {shapes} (seed {seed}): output '{name}': {c.detail}"


def fresh_rng():
    seed = np.random.SeedSequence().entropy  # printed on failure so a run can be replayed
    return np.random.default_rng(seed), seed


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", list(MODELS))
def test_parity(name, opset, kiln, tmp_path):
    rng, seed = fresh_rng()
    model, feeds_list = MODELS[name](rng, opset)
    path = tmp_path / f"{name}_opset{opset}.onnx"
    onnx.save_model(model, str(path))
    check_parity(path, feeds_list, tmp_path, seed)


@pytest.mark.parametrize("opset", OPSETS)
def test_parity_external_data(opset, kiln, tmp_path):
    rng, seed = fresh_rng()
    model, feeds_list = cnn(rng, opset)
    mdir = tmp_path / "model"
    mdir.mkdir()
    path = mdir / f"cnn_external_opset{opset}.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    stored = onnx.load(str(path), load_external_data=False)
    assert stored.graph.initializer and all(
        t.data_location == TensorProto.EXTERNAL and not t.raw_data for t in stored.graph.initializer
    ), "onnx did not move every initializer to external data"
    assert (mdir / "weights.bin").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check_parity(path, feeds_list, tmp_path, seed, cwd=elsewhere)
