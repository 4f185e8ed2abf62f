"""test_int8_qdq.py — explicit quantization (src/passes/qdq.c): models that carry their own
QuantizeLinear/DequantizeLinear nodes, as quantization-aware training exports them, build into INT8
engines with the graph's scales and no calibration data (TensorRT's explicit quantization).

Two models are written with onnx.helper, with scales from a float run over random data:
  * a small CNN: Q/DQ on the input (uint8, zero point 128), int8 weights behind a per-channel
    DequantizeLinear, fake-quantized f32 weights (Q -> DQ of an f32 constant), an int32 bias behind a
    DequantizeLinear, Relu outputs quantized as uint8 and int8, a 1x1 conv with per-tensor weights
    whose output stays f32 (in a residual Add), pooling in f32, a Gemm (transB) whose output stays f32;
  * a transformer-style MLP block: LayerNorm, Q/DQ, MatMul + bias + Relu (per-channel weights),
    MatMul with a quantized output then Add (per-tensor weights), a residual Add, and a Gemm with
    transA.
kiln's INT8 engine must agree with ONNX Runtime running the same Q/DQ model (cosine >= 0.999, with
ORT's graph optimizations, which also turn Q/DQ into integer kernels, and without them), and
`kiln inspect` must show the convolutions and products as int8 layers. Also: calibration data for a
Q/DQ model is refused, and a layer that cannot be int8 (uint8 weights) stays f32 with its reason.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kilnrun
from test_int8 import cosine, kiln

N = 16  # batch


class Net:
    """Builds a graph twice: in f32 (scales None) and with Q/DQ nodes at the marked tensors."""

    def __init__(self, scales: dict[str, float] | None):
        self.scales = scales
        self.nodes: list = []
        self.inits: list = []
        self.marks: list[str] = []

    def const(self, name, a, dtype=np.float32):
        self.inits.append(numpy_helper.from_array(np.asarray(a, dtype), name))
        return name

    def node(self, op, ins, out, **attrs):
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def act_scale(self, x: str, dtype=np.int8, zp: int = 0) -> float:
        """max|x| over 127 levels, or over 255 for uint8 with zero point 0 (a Relu output)."""
        return np.float32(self.scales[x] * (127 / 255 if dtype == np.uint8 and zp == 0 else 1))

    def qdq(self, x: str, dtype=np.int8, zp: int = 0) -> str:
        """Q -> DQ on activation x (per tensor), when building the quantized graph."""
        self.marks.append(x)
        if self.scales is None:
            return x
        s = self.const(f"{x}_s", self.act_scale(x, dtype, zp))
        z = self.const(f"{x}_z", zp, dtype)
        q = self.node("QuantizeLinear", [x, s, z], f"{x}_q")
        return self.node("DequantizeLinear", [q, s, z], f"{x}_dq")

    def weight(self, name: str, w: np.ndarray, axis: int | None, fake: bool = False) -> str:
        """An int8 weight behind DequantizeLinear (per channel along axis, or per tensor), or in f32
        when building the float graph. fake: an f32 constant quantized by a QuantizeLinear node."""
        if self.scales is None:
            return self.const(name, w)
        if axis is None:
            s = np.float32(np.abs(w).max() / 127)
            sb = s
        else:
            red = tuple(i for i in range(w.ndim) if i != axis)
            s = (np.abs(w).max(axis=red) / 127).astype(np.float32)
            sb = np.expand_dims(s, red)
        sn = self.const(f"{name}_s", s)
        zn = self.const(f"{name}_z", np.zeros_like(s, np.int8), np.int8)
        kw = {} if axis is None else {"axis": axis}
        if fake:
            wf = self.const(f"{name}_f32", w)
            wq = self.node("QuantizeLinear", [wf, sn, zn], f"{name}_q", **kw)
        else:
            wq = self.const(f"{name}_int8", np.clip(np.rint(w / sb), -127, 127), np.int8)
        return self.node("DequantizeLinear", [wq, sn, zn], f"{name}_dq", **kw)

    def model(self, inputs, outputs, opset=17):
        g = helper.make_graph(self.nodes, "qat", inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def cnn(scales, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    n = Net(scales)
    x = n.qdq("x", np.uint8, 128)
    w1 = rng.standard_normal((8, 3, 3, 3)) * 0.3
    n.node("Conv", [x, n.weight("w1", w1, 0), n.const("b1", 0.1 * rng.standard_normal(8))], "c1", pads=[1, 1, 1, 1])
    r1 = n.qdq(n.node("Relu", ["c1"], "r1"), np.uint8, 0)
    w2 = rng.standard_normal((16, 8, 3, 3)) * 0.15
    b2 = 0.1 * rng.standard_normal(16)
    if scales is None:
        b2n = n.const("b2", b2)
    else:  # an int32 bias with scale s_x * s_w, as ONNX Runtime's QDQ models carry it
        sw2 = np.abs(w2).max(axis=(1, 2, 3)) / 127
        sb = (n.act_scale("r1", np.uint8, 0) * sw2.astype(np.float32)).astype(np.float32)
        b2n = n.node("DequantizeLinear", [n.const("b2_int32", np.rint(b2 / sb), np.int32), n.const("b2_s", sb)], "b2_dq",
                     axis=0)
    n.node("Conv", [r1, n.weight("w2", w2, 0, fake=True), b2n], "c2", pads=[1, 1, 1, 1], strides=[2, 2])
    r2 = n.qdq(n.node("Relu", ["c2"], "r2"))
    # a 1x1 conv with per-tensor weights whose output is not quantized (ConvInteger), in a residual
    w3 = rng.standard_normal((16, 16, 1, 1)) * 0.25
    n.node("Conv", [r2, n.weight("w3", w3, None), n.const("b3", 0.1 * rng.standard_normal(16))], "c3")
    n.node("Add", ["c3", r2], "sum")
    n.node("MaxPool", ["sum"], "mp", kernel_shape=[2, 2], strides=[2, 2])
    n.node("GlobalAveragePool", ["mp"], "gap")
    f = n.qdq(n.node("Flatten", ["gap"], "flat"))
    n.node("Gemm", [f, n.weight("fcw", rng.standard_normal((10, 16)) * 0.3, 0), n.const("fcb", 0.1 * rng.standard_normal(10))],
           "logits", transB=1)
    return n.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, 3, 12, 12])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [N, 10])]), n.marks


def mlp(scales, rng_seed=1):
    rng = np.random.default_rng(rng_seed)
    n = Net(scales)
    D, H, S = 16, 40, 7
    n.node("LayerNormalization", ["x", n.const("ln_g", rng.uniform(0.5, 1.5, D)), n.const("ln_b", 0.1 * rng.standard_normal(D))],
           "ln", axis=-1)
    h = n.qdq("ln")
    n.node("MatMul", [h, n.weight("w1", rng.standard_normal((D, H)) / np.sqrt(D), 1)], "fc1")
    n.node("Add", ["fc1", n.const("b1", 0.1 * rng.standard_normal(H))], "fc1b")
    a = n.qdq(n.node("Relu", ["fc1b"], "act"))
    n.node("MatMul", [a, n.weight("w2", rng.standard_normal((H, D)) / np.sqrt(H), None)], "fc2")
    o = n.qdq("fc2")  # a quantized product: QLinearMatMul, then the bias in f32
    n.node("Add", [o, n.const("b2", 0.1 * rng.standard_normal(D))], "fc2b")
    n.node("Add", ["fc2b", "x"], "res")
    # a pooled head: Gemm with transA over the transposed sequence summary
    n.node("ReduceMean", ["res"], "pool", axes=[1], keepdims=0)
    n.node("Transpose", ["pool"], "poolT", perm=[1, 0])
    p = n.qdq("poolT")
    n.node("Gemm", [p, n.weight("hw", rng.standard_normal((D, 5)) / np.sqrt(D), 1), n.const("hb", 0.1 * rng.standard_normal(5))],
           "head", transA=1)
    return n.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, S, D])],
                   [helper.make_tensor_value_info("res", TensorProto.FLOAT, [N, S, D]),
                    helper.make_tensor_value_info("head", TensorProto.FLOAT, [N, 5])]), n.marks


def ort_session(model_or_path, optimize: bool):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    data = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def qat_model(tmp: Path, make, shape, seed):
    """The Q/DQ model, scales = max|x| / 127 of each marked tensor over a float run on random data."""
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((N, *shape[1:])).astype(np.float32)
    fm, marks = make(None)
    for t in marks:
        if t not in [o.name for o in fm.graph.output]:
            fm.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    sess = ort_session(fm, optimize=False)
    vals = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": calib})))
    scales = {t: float(np.abs(vals[t]).max() / 127) for t in marks}
    qm, _ = make(scales)
    path = tmp / f"{make.__name__}_qat.onnx"
    onnx.save(qm, str(path))
    return path


CASES = {"cnn": (cnn, (N, 3, 12, 12)), "mlp": (mlp, (N, 7, 16))}
_numbers: dict[str, dict[str, float]] = {}


@pytest.mark.parametrize("name", sorted(CASES))
def test_qat_model_matches_onnxruntime(tmp_path, name):
    make, shape = CASES[name]
    path = qat_model(tmp_path, make, shape, seed=3)
    x = np.random.default_rng(11).standard_normal(shape).astype(np.float32)
    kilnrun.save_npz(tmp_path / "in.npz", {"x": x})
    eng = tmp_path / "int8.kiln"
    kiln("build", path, "-o", eng, "--int8")
    kiln("run", eng, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "out.npz")
    got = kilnrun.load_npz(tmp_path / "out.npz")
    outs = [o.name for o in onnx.load(str(path)).graph.output]
    ort_opt = dict(zip(outs, ort_session(path, True).run(None, {"x": x})))
    ort_ref = dict(zip(outs, ort_session(path, False).run(None, {"x": x})))
    for o in outs:
        c1, c2 = cosine(got[o], ort_opt[o]), cosine(got[o], ort_ref[o])
        _numbers[f"{name}/{o}"] = {"ort": c1, "ort_no_opt": c2}
        print(f"{name} output {o}: cosine vs ORT {c1:.6f} (ORT without graph optimizations: {c2:.6f}), "
              f"max |diff| {np.abs(got[o] - ort_opt[o]).max():.3g} of max |y| {np.abs(ort_opt[o]).max():.3g}")
        assert c1 >= 0.999 and c2 >= 0.999, (o, c1, c2)
    # the layers are int8, the f32 Q/DQ pairs around them gone
    layers = json.loads(kiln("inspect", eng, "--json").stdout)["layers"]
    prec = {l["name"]: (l["op"], l["precision"]) for l in layers}
    want = ["c1", "c2", "c3", "logits"] if name == "cnn" else ["fc1", "fc2", "head"]
    for w in want:
        assert w in prec and prec[w][1] == "int8", (w, prec)
    ops = {op for op, _ in prec.values()}
    if name == "cnn":
        assert {"QLinearConv", "ConvInteger", "MatMulInteger"} <= ops, ops
    else:
        assert {"MatMulInteger", "QLinearMatMul", "Transpose"} <= ops, ops
    # a build without --int8 makes the same engine: Q/DQ models are int8 by construction
    kiln("build", path, "-o", tmp_path / "plain.kiln")
    kiln("run", tmp_path / "plain.kiln", "--inputs", tmp_path / "in.npz", "--output", tmp_path / "plain.npz")
    plain = kilnrun.load_npz(tmp_path / "plain.npz")
    for o in outs:
        np.testing.assert_array_equal(plain[o], got[o])


def test_calibration_refused_for_qdq_model(tmp_path):
    path = qat_model(tmp_path, cnn, CASES["cnn"][1], seed=3)
    kilnrun.save_npz(tmp_path / "c.npz", {"x": np.ones((N, 3, 12, 12), np.float32)})
    r = kiln("build", path, "-o", tmp_path / "x.kiln", "--int8", "--calib", tmp_path / "c.npz", ok=False)
    assert "explicit quantization" in r.stderr and "QuantizeLinear" in r.stderr, r.stderr


def test_uint8_weights_stay_f32_with_reason(tmp_path):
    """uint8 weights with a zero point are not taken: the Conv runs in f32 on the dequantized values
    (still right), and inspect says why."""
    rng = np.random.default_rng(5)
    n = Net({"x": 0.03})
    x = n.qdq("x")
    w = rng.integers(0, 255, (4, 3, 3, 3))
    wdq = n.node("DequantizeLinear", [n.const("w_u8", w, np.uint8), n.const("w_s", 0.01), n.const("w_z", 128, np.uint8)], "w_dq")
    n.node("Conv", [x, wdq], "y")
    m = n.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 9])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 7, 7])])
    onnx.save(m, str(tmp_path / "u8.onnx"))
    xin = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    kilnrun.save_npz(tmp_path / "in.npz", {"x": xin})
    kiln("build", tmp_path / "u8.onnx", "-o", tmp_path / "u8.kiln", "--int8")
    layers = json.loads(kiln("inspect", tmp_path / "u8.kiln", "--json").stdout)["layers"]
    conv = [l for l in layers if l["name"] == "y"]
    assert conv and conv[0]["op"] == "Conv" and conv[0]["precision"] == "fp32", layers
    assert "uint8" in conv[0]["int8_note"], conv[0]
    assert "not int8: " in kiln("inspect", tmp_path / "u8.kiln").stdout
    kiln("run", tmp_path / "u8.kiln", "--inputs", tmp_path / "in.npz", "--output", tmp_path / "out.npz")
    ref = ort_session(m, False).run(None, {"x": xin})[0]
    np.testing.assert_allclose(kilnrun.load_npz(tmp_path / "out.npz")["y"], ref, rtol=1e-4, atol=1e-4)


def test_transposed_weights_are_int8(tmp_path):
    """torch exports a quantized Linear on a 3-D input as MatMul(x, Transpose(DequantizeLinear(W)))
    with W [out, in] quantized along axis 0: the weights are read through the Transpose. Two layers:
    fake-quantized f32 weights with perm [1, 0], then int8 weights with the default (reversing) perm;
    and one whose Transpose is the identity, which keeps W's axes."""
    rng = np.random.default_rng(9)
    n = Net({"x": 0.025, "h": 0.05})
    x = n.qdq("x")
    w1 = n.weight("w1", rng.standard_normal((24, 12)) * 0.3, 0, fake=True)  # [out, in]
    n.node("MatMul", [x, n.node("Transpose", [w1], "w1t", perm=[1, 0])], "fc1")
    n.node("Add", ["fc1", n.const("b1", 0.1 * rng.standard_normal(24))], "h")
    h = n.qdq("h")
    w2 = n.weight("w2", rng.standard_normal((10, 24)) * 0.2, 0)
    n.node("MatMul", [h, n.node("Transpose", [w2], "w2t")], "fc2")
    w3 = n.weight("w3", rng.standard_normal((24, 6)) * 0.2, 1)  # [in, out] already
    n.node("MatMul", [h, n.node("Transpose", [w3], "w3t", perm=[0, 1])], "fc3")
    m = n.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5, 12])],
                [helper.make_tensor_value_info("fc2", TensorProto.FLOAT, [3, 5, 10]),
                 helper.make_tensor_value_info("fc3", TensorProto.FLOAT, [3, 5, 6])])
    onnx.save(m, str(tmp_path / "t.onnx"))
    xin = (rng.standard_normal((3, 5, 12)) * 1.0).astype(np.float32)
    kilnrun.save_npz(tmp_path / "in.npz", {"x": xin})
    kiln("build", tmp_path / "t.onnx", "-o", tmp_path / "t.kiln")
    kiln("run", tmp_path / "t.kiln", "--inputs", tmp_path / "in.npz", "--output", tmp_path / "out.npz")
    got = kilnrun.load_npz(tmp_path / "out.npz")
    for o, ref in zip(("fc2", "fc3"), ort_session(m, False).run(None, {"x": xin})):
        assert cosine(got[o], ref) >= 0.9999, (o, cosine(got[o], ref))
    layers = {l["name"]: l for l in json.loads(kiln("inspect", tmp_path / "t.kiln", "--json").stdout)["layers"]}
    for name in ("fc1", "fc2", "fc3"):
        assert layers[name]["precision"] == "int8", layers[name]
