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
    """With KILN_EW_FUSE=1 (scripts/gpu_check.sh sets it for the test stages: the pass is off by
    default until this kernel has passed on a GPU) the element-wise cases above become
    kiln.FusedElementwise layers on the fused kernel, so test_op_vs_reference tested that kernel."""
    import json
    import os

    if os.environ.get("KILN_EW_FUSE") != "1":
        pytest.fail("run with KILN_EW_FUSE=1 (as scripts/gpu_check.sh does): this checks the fused kernel ran")

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
