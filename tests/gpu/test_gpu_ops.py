"""The CUDA backend's kernels against the reference backend, op by op, at FP32, FP16, BF16 and
INT8 — the GPU half of the test suite. It needs an NVIDIA GPU, so CI (which has none) does not
run it; scripts/gpu_check.sh runs it on the device with the rest of the GPU pass.

Each case is a small ONNX graph at awkward sizes with fresh random inputs. The oracle is kiln's
reference interpreter on the same model in float32 (`kiln run model.onnx`); the GPU engine is
built with `kiln build --device cuda [--fp16|--bf16|--int8]`. Errors are relative L2 norms
‖gpu − ref‖ / ‖ref‖ with per-precision bounds (FP32 1e-5, TF32 2e-3, FP16 5e-3, BF16 3e-2); integer and
boolean outputs must match exactly. INT8 engines are compared with the CPU INT8 engine built from
the same calibration data: at most one output quantization step apart."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kilnrun  # noqa: E402
from op_cases import CASES, EW_CASES, rnd  # noqa: E402

BOUND = {"fp32": 1e-5, "tf32": 2e-3, "fp16": 5e-3, "bf16": 3e-2}


def _rel_err(got, ref):
    got, ref = got.astype(np.float64), ref.astype(np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def _reference(tmp_path, m, feeds):
    path = tmp_path / "model.onnx"
    onnx.save(m, str(path))
    (tmp_path / "ref").mkdir()
    run, ref = kilnrun.run_model(path, feeds, tmp_path / "ref", build_args=[])  # the interpreter, on the CPU
    assert run.kind == "ok", f"reference run: {run.message}"
    return path, ref


@pytest.mark.parametrize("prec", ["fp32", "tf32", "fp16", "bf16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_op_vs_reference(case, prec, tmp_path):
    m, feeds = CASES[case]()
    path, ref = _reference(tmp_path, m, feeds)
    flags = ["--device", "cuda"] + ([f"--{prec}"] if prec != "fp32" else [])
    (tmp_path / "gpu").mkdir()
    run, got = kilnrun.run_model(path, feeds, tmp_path / "gpu", engine=True, build_args=flags)
    assert run.kind == "ok", f"{case} {prec}: {run.message}"
    for name, r in ref.items():
        g = got[name]
        assert g.shape == r.shape and g.dtype == r.dtype, f"{name}: {g.dtype}{g.shape} vs {r.dtype}{r.shape}"
        if r.dtype.kind in "biu":
            if prec in ("fp32", "tf32"):
                assert np.array_equal(g, r), f"{name}: integer outputs differ"
            continue
        assert np.isfinite(g).all(), f"{name}: non-finite values"
        err = _rel_err(g, r)
        print(f"{case} {prec} {name}: rel L2 error {err:.2e}")
        assert err <= BOUND[prec], f"{name}: rel L2 error {err:.3e} > {BOUND[prec]:.0e}"


@pytest.mark.parametrize("case", EW_CASES)
def test_ew_cases_fuse_on_cuda(case, tmp_path):
    """CUDA builds fuse element-wise groups by default: the element-wise cases above become
    kiln.FusedElementwise layers on the fused kernel, so test_op_vs_reference tested that kernel."""
    import json
    import os

    if os.environ.get("KILN_EW_FUSE") == "0":
        pytest.fail("KILN_EW_FUSE=0 turns the pass off: unset it for this test")

    m, feeds = CASES[case]()
    path = tmp_path / "model.onnx"
    onnx.save(m, str(path))
    eng = tmp_path / "model.kiln"
    b = kilnrun.run_kiln(["build", path, "-o", eng, "--shapes", kilnrun.shapes_arg(feeds), "--device", "cuda"])
    assert b.kind == "ok", b.message
    layers = json.loads(kilnrun.run_kiln(["inspect", eng, "--json"]).stdout)["layers"]
    fused = [la for la in layers if la["op"] == "FusedElementwise"]
    print(case, [(la["kernel"], la.get("fused_program")) for la in fused])
    assert fused and all(la["kernel"] == "ew_fused" for la in fused), layers


INT8_CASES = ["conv", "conv_depthwise", "matmul_bias_gelu", "gemm"]


@pytest.mark.parametrize("case", INT8_CASES)
def test_int8_vs_cpu_int8(case, tmp_path):
    """The GPU INT8 engine against the CPU INT8 engine built from the same calibration data."""
    m, feeds = CASES[case]()
    m.opset_import[0].version = max(m.opset_import[0].version, 13)
    path = tmp_path / "model.onnx"
    onnx.save(m, str(path))
    calib = {k: np.stack([rnd(*v.shape) for _ in range(8)]) for k, v in feeds.items()}
    kilnrun.save_npz(tmp_path / "calib.npz", calib)
    common = ["--int8", "--calib", str(tmp_path / "calib.npz"), "--calib-method", "minmax"]
    outs = {}
    for dev in ("cpu", "cuda"):
        d = tmp_path / dev
        d.mkdir()
        run, got = kilnrun.run_model(path, feeds, d, engine=True, build_args=["--device", dev] + common)
        assert run.kind == "ok", f"{dev}: {run.message}"
        outs[dev] = got
    for name, r in outs["cpu"].items():
        g = outs["cuda"][name]
        # one int8 step of the output's range; the calibrated range (8 samples of the same
        # distribution) is within a few percent of it, hence the 1.1
        step = float(np.abs(r).max()) / 127.0
        diff = float(np.abs(g.astype(np.float64) - r).max())
        print(f"{case} int8 {name}: max |gpu-cpu| {diff:.3e} (step ~{step:.3e})")
        assert diff <= 1.1 * step + 1e-6, f"{name}: GPU and CPU INT8 differ by {diff:.3e} > one step {step:.3e}"


def _fallback_model():
    """Relu on the GPU, then NonZero (no GPU kernel; its output size depends on the data), a
    Gather of the flat values at those positions and a Mul on the GPU again."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Reshape", ["r", "flat"], ["rf"]),
             helper.make_node("NonZero", ["rf"], ["nz"]),
             helper.make_node("Squeeze", ["nz", "zero"], ["idx"]),
             helper.make_node("Gather", ["rf", "idx"], ["g"]),
             helper.make_node("Mul", ["g", "two"], ["y"])]
    inits = [helper.make_tensor("flat", TensorProto.INT64, [1], [-1]), helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
             helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])]
    g = helper.make_graph(nodes, "fallback", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 37])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), {"x": rnd(3, 37)}


def test_host_fallback(tmp_path):
    """A node without a GPU kernel refuses the build, naming it and --host-fallback; with
    --host-fallback it runs on the CPU between GPU nodes (saved engine, loaded, run) and the output
    equals the reference interpreter's; kiln inspect says which node fell back and why."""
    import json

    m, feeds = _fallback_model()
    path, ref = _reference(tmp_path, m, feeds)
    eng = tmp_path / "model.kiln"
    base = ["build", path, "-o", eng, "--shapes", kilnrun.shapes_arg(feeds), "--device", "cuda"]
    b = kilnrun.run_kiln(base)
    assert b.kind != "ok" and "NonZero" in b.message and "--host-fallback" in b.message, b.message
    b = kilnrun.run_kiln(base + ["--host-fallback"])
    assert b.kind == "ok", b.message
    info = json.loads(kilnrun.run_kiln(["inspect", eng, "--json"]).stdout)
    fell = [(la["op"], la["host_fallback"]) for la in info["layers"] if "host_fallback" in la]
    print(fell)
    assert info["host_fallback_nodes"] == len(fell) and ("NonZero", "no GPU kernel") in fell, fell
    assert any(la["op"] == "Relu" and la["kernel"] != "host" for la in info["layers"]), info["layers"]
    (tmp_path / "gpu").mkdir()
    kilnrun.save_npz(tmp_path / "gpu" / "in.npz", feeds)
    r = kilnrun.run_kiln(["run", eng, "--inputs", tmp_path / "gpu" / "in.npz", "--output", tmp_path / "gpu" / "out.npz"])
    assert r.kind == "ok", r.message
    got = kilnrun.load_npz(tmp_path / "gpu" / "out.npz")["y"]
    assert got.shape == ref["y"].shape and np.array_equal(got, ref["y"]), (got.shape, ref["y"].shape)
    # in memory (kiln run --device cuda --host-fallback), with a CUDA graph asked for: it runs without
    r = kilnrun.run_kiln(["bench", eng, "--inputs", tmp_path / "gpu" / "in.npz", "--iterations", "5", "--cuda-graph"])
    assert r.kind == "ok", r.message
    (tmp_path / "mem").mkdir()
    run, got2 = kilnrun.run_model(path, feeds, tmp_path / "mem", engine=True, in_memory=True,
                                  build_args=["--device", "cuda", "--host-fallback"])
    assert run.kind == "ok" and np.array_equal(got2["y"], ref["y"]), run.message


def test_large_constant_derived_values_run_on_the_gpu(tmp_path):
    """A table sliced by an input's length and multiplied by a weight (a positional-encoding
    projection: every input on the host, the outputs large) runs on the GPU, not on the host's
    reference kernels; the small shape arithmetic before it stays on the host."""
    import json

    from onnx import TensorProto, helper, numpy_helper

    r = np.random.default_rng(5)
    table = numpy_helper.from_array(r.standard_normal((600, 256)).astype(np.float32), "table")
    w = numpy_helper.from_array(r.standard_normal((256, 64)).astype(np.float32) * 0.05, "w")
    nodes = [helper.make_node("Shape", ["x"], ["sh"]),
             helper.make_node("Gather", ["sh", "one"], ["t"], axis=0),
             helper.make_node("Mul", ["t", "sixty"], ["end"]),
             helper.make_node("Slice", ["table", "zero", "end"], ["pe"]),
             helper.make_node("MatMul", ["pe", "w"], ["proj"]),
             helper.make_node("ReduceMean", ["proj", "zero"], ["m"], keepdims=0),
             helper.make_node("Add", ["x", "m"], ["y"])]
    inits = [table, w, helper.make_tensor("one", TensorProto.INT64, [1], [1]),
             helper.make_tensor("sixty", TensorProto.INT64, [1], [60]), helper.make_tensor("zero", TensorProto.INT64, [1], [0])]
    g = helper.make_graph(nodes, "pe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "T", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "T", 64])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"x": rnd(2, 9, 64)}
    path, ref = _reference(tmp_path, m, feeds)
    eng = tmp_path / "model.kiln"
    b = kilnrun.run_kiln(["build", path, "-o", eng, "--shapes", kilnrun.shapes_arg(feeds), "--device", "cuda"])
    assert b.kind == "ok", b.message
    layers = {la["op"]: la["kernel"] for la in json.loads(kilnrun.run_kiln(["inspect", eng, "--json"]).stdout)["layers"]}
    print(layers)
    assert layers.get("MatMul", "cuBLASLt") != "host" and layers.get("Slice", "gpu") != "host", layers
    (tmp_path / "gpu").mkdir()
    run, got = kilnrun.run_model(eng, feeds, tmp_path / "gpu")
    assert run.kind == "ok", run.message
    assert _rel_err(got["y"], ref["y"]) <= BOUND["fp32"]


def test_data_sized_expand_runs_on_the_gpu(tmp_path):
    """An Expand of host indices (NonZero on the host) to a shape known only at run time, times
    64x7x7 (Faster R-CNN's RoI pooling: box indices expanded for a ScatterElements) runs on the
    GPU: on the host it made 100 MB of int64 there and copied them over."""
    import json

    from onnx import TensorProto, helper

    nodes = [helper.make_node("Greater", ["x", "zero_f"], ["pos"]),
             helper.make_node("NonZero", ["pos"], ["nz"]),
             helper.make_node("Reshape", ["nz", "col4"], ["idx"]),
             helper.make_node("Shape", ["idx"], ["sh"]),
             helper.make_node("Slice", ["sh", "zero", "one"], ["k"]),
             helper.make_node("Concat", ["k", "chw"], ["full"], axis=0),
             helper.make_node("Expand", ["idx", "full"], ["e"]),
             helper.make_node("GatherElements", ["d", "e"], ["y"], axis=0)]
    inits = [helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("col4", TensorProto.INT64, [4], [-1, 1, 1, 1]),
             helper.make_tensor("zero", TensorProto.INT64, [1], [0]), helper.make_tensor("one", TensorProto.INT64, [1], [1]),
             helper.make_tensor("chw", TensorProto.INT64, [3], [64, 7, 7])]
    g = helper.make_graph(nodes, "expand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [50]),
                                            helper.make_tensor_value_info("d", TensorProto.FLOAT, [50, 64, 7, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["K", 64, 7, 7])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": rnd(50), "d": rnd(50, 64, 7, 7)}
    path, ref = _reference(tmp_path, m, feeds)
    eng = tmp_path / "model.kiln"
    b = kilnrun.run_kiln(["build", path, "-o", eng, "--shapes", kilnrun.shapes_arg(feeds), "--device", "cuda",
                          "--host-fallback"])
    assert b.kind == "ok", b.message
    layers = {la["op"]: la["kernel"] for la in json.loads(kilnrun.run_kiln(["inspect", eng, "--json"]).stdout)["layers"]}
    print(layers)
    assert layers["NonZero"] == "host" and layers["Expand"] != "host", layers
    (tmp_path / "gpu").mkdir()
    run, got = kilnrun.run_model(eng, feeds, tmp_path / "gpu")
    assert run.kind == "ok", run.message
    assert got["y"].shape == ref["y"].shape and np.array_equal(got["y"], ref["y"])


def _topk_model(shape, axis, k, largest, dtype):
    from onnx import TensorProto, helper

    t = {np.float32: TensorProto.FLOAT, np.int32: TensorProto.INT32}[dtype]
    g = helper.make_graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest)], "topk",
                          [helper.make_tensor_value_info("x", t, shape)],
                          [helper.make_tensor_value_info("v", t, None), helper.make_tensor_value_info("i", TensorProto.INT64, None)],
                          [helper.make_tensor("k", TensorProto.INT64, [1], [k])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("shape,axis,k,largest,dtype", [
    ([2, 120001], 1, 1000, 1, np.float32),    # region proposals: 30 chunks, four rounds
    ([3, 9000, 2], 1, 2048, 0, np.float32),   # k at its long-row limit, strided (inner 2), smallest
    ([1, 50000], -1, 1500, 1, np.int32),      # ties everywhere: the lower index first
    ([4097], 0, 1, 1, np.float32),            # one element past a single chunk
    ([2, 8192], 1, 4096, 0, np.float32),      # no: k > 2048 on a long row is refused
])
def test_topk_long_rows(tmp_path, shape, axis, k, largest, dtype):
    """TopK on rows longer than one chunk (4096): values and indices equal the reference's."""
    r = np.random.default_rng(11)
    x = r.integers(0, 20, shape).astype(dtype) if dtype == np.int32 else r.standard_normal(shape).astype(dtype)
    m = _topk_model(shape, axis, k, largest, dtype)
    path, ref = _reference(tmp_path, m, {"x": x})
    (tmp_path / "gpu").mkdir()
    run, got = kilnrun.run_model(path, {"x": x}, tmp_path / "gpu", engine=True, build_args=["--device", "cuda"])
    if k > 2048:
        assert run.kind != "ok" and "TopK" in run.message and "2048" in run.message, run.message
        return
    assert run.kind == "ok", run.message
    for name in ("v", "i"):
        assert got[name].shape == ref[name].shape and np.array_equal(got[name], ref[name]), name
