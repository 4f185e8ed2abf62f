"""FP16 and BF16 engines on the CPU: the precision pass (src/passes/precision.c) moves float
compute to 16 bits with Casts at the edges, and the reference kernels run the 16-bit graph.
Every case of tests/op_cases.py, built with --fp16 and --bf16, against the float32 interpreter
on the same inputs: relative L2 error under 5e-3 (fp16) / 3e-2 (bf16), outputs keep float32
and their names, integer outputs exact. The same cases run on the GPU in tests/gpu/."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kilnrun  # noqa: E402
from op_cases import CASES  # noqa: E402

BOUND = {"fp16": 5e-3, "bf16": 3e-2}
RNG = np.random.default_rng()


@pytest.mark.parametrize("prec", sorted(BOUND))
@pytest.mark.parametrize("case", sorted(CASES))
def test_reduced_precision_engine(case, prec, tmp_path):
    m, feeds = CASES[case]()
    path = tmp_path / "model.onnx"
    onnx.save(m, str(path))
    (tmp_path / "ref").mkdir()
    (tmp_path / "eng").mkdir()
    run, ref = kilnrun.run_model(path, feeds, tmp_path / "ref", build_args=[])
    assert run.kind == "ok", run.message
    run, got = kilnrun.run_model(path, feeds, tmp_path / "eng", engine=True, build_args=["--device", "cpu", f"--{prec}"])
    assert run.kind == "ok", run.message
    assert sorted(got) == sorted(ref)
    for name, r in ref.items():
        g = got[name]
        assert g.dtype == r.dtype and g.shape == r.shape, f"{name}: {g.dtype}{g.shape} vs {r.dtype}{r.shape}"
        if r.dtype.kind in "biu":
            assert np.array_equal(g, r), name
            continue
        err = float(np.linalg.norm(g.astype(np.float64) - r) / max(np.linalg.norm(r.astype(np.float64)), 1e-30))
        assert err <= BOUND[prec], f"{name}: relative L2 error {err:.3e} > {BOUND[prec]}"


def test_inspect_shows_16_bit_layers(tmp_path):
    m, feeds = CASES["conv"]()
    path = tmp_path / "model.onnx"
    onnx.save(m, str(path))
    b = kilnrun.run_kiln(["build", path, "-o", tmp_path / "m.kiln", "--fp16", "--shapes", kilnrun.shapes_arg(feeds)])
    assert b.kind == "ok", b.message
    r = kilnrun.run_kiln(["inspect", tmp_path / "m.kiln", "--json"])
    assert r.kind == "ok", r.message
    import json
    layers = json.loads(r.stdout)["layers"]
    precs = {l["op"]: l["precision"] for l in layers}
    assert precs["Conv"] == "fp16"
    assert sum(l["op"] == "Cast" for l in layers) == 2  # one in, one out


def sinusoid_model():
    """A diffusion timestep embedding: int64 t in [0, 1000) -> Cast -> t * freqs -> [cos, sin] ->
    MatMul. Its phases reach 1000 rad, where fp16's spacing is 0.5 (bf16's 8)."""
    from onnx import TensorProto, helper, numpy_helper

    from op_cases import model, vi
    freqs = np.exp(-np.log(10000.0) * np.arange(24) / 24).astype(np.float32)[None]
    w = RNG.uniform(-1, 1, size=(48, 10)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["t"], ["tf"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["tf", "ax"], ["tu"]),
             helper.make_node("Mul", ["tu", "freqs"], ["arg"], name="mul"),
             helper.make_node("Cos", ["arg"], ["c"], name="cos"), helper.make_node("Sin", ["arg"], ["s"], name="sin"),
             helper.make_node("Concat", ["c", "s"], ["e"], axis=1),
             helper.make_node("MatMul", ["e", "w"], ["y"], name="proj")]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "ax"), numpy_helper.from_array(freqs, "freqs"),
             numpy_helper.from_array(w, "w")]
    m = model(nodes, [vi("t", TensorProto.INT64, [7])], [vi("y", TensorProto.FLOAT, None)], inits)
    return m, {"t": RNG.integers(0, 1000, size=7).astype(np.int64)}


@pytest.mark.parametrize("prec", sorted(BOUND))
def test_sinusoid_phases_stay_fp32(prec, tmp_path):
    """Sin/Cos and the product giving their argument stay float32 (the MatMul after them does not):
    lowered, this embedding's error is tens of percent."""
    m, feeds = sinusoid_model()
    path = tmp_path / "model.onnx"
    onnx.save(m, str(path))
    (tmp_path / "ref").mkdir()
    (tmp_path / "eng").mkdir()
    run, ref = kilnrun.run_model(path, feeds, tmp_path / "ref", build_args=[])
    assert run.kind == "ok", run.message
    run, got = kilnrun.run_model(path, feeds, tmp_path / "eng", engine=True, build_args=[f"--{prec}"])
    assert run.kind == "ok", run.message
    err = float(np.linalg.norm(got["y"].astype(np.float64) - ref["y"]) / np.linalg.norm(ref["y"].astype(np.float64)))
    assert err <= BOUND[prec], f"relative L2 error {err:.3e} > {BOUND[prec]}"
    r = kilnrun.run_kiln(["inspect", tmp_path / "eng" / "model.kiln", "--json"])
    assert r.kind == "ok", r.message
    import json
    precs = {l["name"]: l["precision"] for l in json.loads(r.stdout)["layers"]}
    assert [precs[n] for n in ("mul", "cos", "sin", "proj")] == ["fp32"] * 3 + [prec], precs


def rmsnorm_model():
    """An exported RMSNorm: x * 1/sqrt(mean(x^2) + eps) * w, then a product."""
    from onnx import TensorProto, helper, numpy_helper

    d = 64
    w = numpy_helper.from_array((RNG.uniform(0.5, 1.5, d)).astype(np.float32), "w")
    proj = numpy_helper.from_array((RNG.standard_normal((d, 16)) / 8).astype(np.float32), "proj")
    nodes = [helper.make_node("Pow", ["x", "two"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1], keepdims=1),
             helper.make_node("Add", ["ms", "eps"], ["mse"]),
             helper.make_node("Sqrt", ["mse"], ["rms"]),
             helper.make_node("Reciprocal", ["rms"], ["inv"]),
             helper.make_node("Mul", ["x", "inv"], ["xn"]),
             helper.make_node("Mul", ["w", "xn"], ["y0"]),
             helper.make_node("MatMul", ["y0", "proj"], ["y"])]
    inits = [w, proj, helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]), helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-6])]
    g = helper.make_graph(nodes, "rms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5, d])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5, 16])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("fused", [False, True], ids=["decomposed", "fused"])
def test_rmsnorm_statistics_stay_fp32(tmp_path, fused):
    """Hidden states with an outlier channel (RMS ~ 600): in fp16 the mean square (3.6e5) would be
    infinite and the output 0. Decomposed (-O1: no fusions) the statistics after the Pow stay
    float32, the rest runs in fp16; fused (the default) the pattern is one RMSNormalization, whose
    kernels keep the mean square in float32 (GPU) or double (CPU)."""
    import json

    x = RNG.standard_normal((3, 5, 64)).astype(np.float32)
    x[..., 7] = 4000.0  # an outlier channel: RMS = 4000 / 8 = 500
    path = tmp_path / "rms.onnx"
    onnx.save(rmsnorm_model(), str(path))
    (tmp_path / "ref").mkdir()
    (tmp_path / "eng").mkdir()
    run, ref = kilnrun.run_model(path, {"x": x}, tmp_path / "ref", build_args=[])
    assert run.kind == "ok", run.message
    run, got = kilnrun.run_model(path, {"x": x}, tmp_path / "eng", engine=True,
                                 build_args=["--device", "cpu", "--fp16"] + ([] if fused else ["-O", "1"]))
    assert run.kind == "ok", run.message
    err = float(np.linalg.norm(got["y"].astype(np.float64) - ref["y"]) / np.linalg.norm(ref["y"].astype(np.float64)))
    assert np.isfinite(got["y"]).all() and err <= BOUND["fp16"], err
    layers = json.loads(kilnrun.run_kiln(["inspect", tmp_path / "eng" / "model.kiln", "--json"]).stdout)["layers"]
    prec = {la["op"]: la["precision"] for la in layers if la["op"] != "Cast"}
    if fused:
        assert set(prec) == {"RMSNormalization", "MatMul"} and set(prec.values()) == {"fp16"}, prec
    else:
        assert prec["ReduceMean"] == prec["Sqrt"] == prec["Reciprocal"] == "fp32" and prec["MatMul"] == "fp16", prec
