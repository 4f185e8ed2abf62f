"""The seed model zoo on the CPU: every tiny model in zoo/models/ (exported by the scripts in
zoo/export/ with torch, fixed seeds, committed) built into FP32 and INT8 engines and checked.

Each model has a spec, zoo/models/<name>.json:

    {"name": "resnet18", "onnx": "resnet18.onnx", "seeds": ["004"], "exercises": "...",
     "inputs": {"x": {"shape": [1, 3, 64, 64], "dtype": "float32", "low": -1, "high": 1}},
     "int8": true,                     # also build an INT8 engine (calibrated on 8 random samples)
     "fp32_cosine": 0.99999,           # bound against ONNX Runtime (default 0.99999)
     "int8_cosine": 0.9,               # bound of the INT8 engine against the FP32 one (reported)
     "extra": "streaming" | "generate" # checks of their own: tests/zoo/test_zoo_extra.py}

FP32: kiln's engine against ONNX Runtime on the same fresh random inputs, every output: cosine
>= fp32_cosine, integer outputs equal; max abs error reported. INT8: cosine against kiln's FP32
engine, reported, and bounded by int8_cosine. Every result is appended to
$KILN_ZOO_RESULTS (default build/zoo_results.jsonl) for zoo/report.py (docs/models.md)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kilnrun  # noqa: E402

ZOO = Path(__file__).resolve().parents[2] / "zoo" / "models"
SPECS = sorted(ZOO.glob("*.json"))
RNG = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


def load_spec(path: Path) -> dict:
    s = json.loads(path.read_text())
    s["path"] = ZOO / s["onnx"]
    return s


def make_inputs(spec: dict, rng=RNG) -> dict[str, np.ndarray]:
    feeds = {}
    for name, d in spec["inputs"].items():
        dt = np.dtype(d.get("dtype", "float32"))
        lo, hi = d.get("low", -1.0), d.get("high", 1.0)
        if dt.kind in "iu":
            feeds[name] = rng.integers(int(lo), int(hi), size=d["shape"], endpoint=False).astype(dt)
        elif dt.kind == "b":
            feeds[name] = rng.random(d["shape"]) < d.get("p_true", 0.5)
        else:
            feeds[name] = rng.uniform(lo, hi, size=d["shape"]).astype(dt)
        if "value" in d:
            feeds[name] = np.full(d["shape"], d["value"], dtype=dt)
    return feeds


cosine = kilnrun.cosine  # the zoo tests and zoo/bench_gpu.py share it


def ort_run(path: Path, feeds: dict) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def record(row: dict) -> None:
    out = Path(os.environ.get("KILN_ZOO_RESULTS") or kilnrun.kiln_build_dir() / "zoo_results.jsonl")
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")


def build_and_run(spec, feeds, workdir: Path, extra_args: list[str]):
    args = ["--shapes", kilnrun.shapes_arg(feeds)] + extra_args
    t0 = time.monotonic()
    run, got = kilnrun.run_model(spec["path"], feeds, workdir, engine=True, build_args=args, timeout=600)
    return run, got, time.monotonic() - t0


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem for p in SPECS])
def test_zoo_model(spec_path, tmp_path):
    spec = load_spec(spec_path)
    assert spec["path"].is_file(), f"{spec['path']} is missing: run zoo/export/{spec['name']}.py"
    feeds = make_inputs(spec)
    ref = ort_run(spec["path"], feeds)
    (tmp_path / "fp32").mkdir()
    # on the GPU, what a spec's model needs beyond --device cuda (--host-fallback for ops without GPU kernels)
    dev_args = spec.get("cuda_build_args", []) if "cuda" in kilnrun.env_build_args() else []
    run, got, secs = build_and_run(spec, feeds, tmp_path / "fp32", dev_args)
    row = {"model": spec["name"], "seeds": spec.get("seeds", []), "exercises": spec.get("exercises", ""),
           "fp32": run.kind, "fp32_message": run.message if run.kind != "ok" else None, "fp32_seconds": round(secs, 2)}
    if run.kind != "ok":
        record(row)
        pytest.fail(f"{spec['name']} FP32: {run.message}")
    bound = spec.get("fp32_cosine", 0.99999)
    worst_cos, worst_err = 1.0, 0.0
    for name, r in ref.items():
        g = got[name]
        assert g.shape == r.shape, f"{name}: kiln {g.shape} vs ORT {r.shape}"
        if r.dtype.kind in "biu":
            assert np.array_equal(g, r), f"{name}: integer outputs differ from ORT"
            continue
        worst_cos = min(worst_cos, cosine(g, r))
        worst_err = max(worst_err, float(np.abs(g.astype(np.float64) - r).max()) if r.size else 0.0)
    row.update(fp32_cosine=worst_cos, fp32_max_abs_err=worst_err)
    if spec.get("int8"):
        # 8 samples concatenated on axis 0 (kiln's calibration npz); a batch is axis 0's size of one sample
        samples = [make_inputs(spec) for _ in range(8)]
        calib = {k: np.concatenate([smp[k] for smp in samples], axis=0) for k in feeds}
        kilnrun.save_npz(tmp_path / "calib.npz", calib)
        batch = {feeds[k].shape[0] for k in feeds}
        assert len(batch) == 1, "INT8 zoo specs need inputs of one leading (batch) size"
        (tmp_path / "int8").mkdir()
        run8, got8, _ = build_and_run(spec, feeds, tmp_path / "int8",
                                      ["--int8", "--calib", str(tmp_path / "calib.npz"), "--calib-batch", str(batch.pop()),
                                       "--calib-method", spec.get("int8_method", "percentile")])
        row["int8"] = run8.kind
        if run8.kind == "ok":
            row["int8_cosine"] = min(cosine(got8[n], got[n]) for n in ref if ref[n].dtype.kind == "f")
        else:
            row["int8_message"] = run8.message
    record(row)
    print(json.dumps(row))
    assert worst_cos >= bound, f"{spec['name']}: FP32 cosine vs ORT {worst_cos:.7f} < {bound}"
    if spec.get("int8"):
        assert row["int8"] == "ok", f"{spec['name']} INT8 build/run: {row.get('int8_message')}"
        assert row["int8_cosine"] >= spec.get("int8_cosine", 0.9), \
            f"{spec['name']}: INT8 cosine vs FP32 {row['int8_cosine']:.4f} < {spec.get('int8_cosine', 0.9)}"
