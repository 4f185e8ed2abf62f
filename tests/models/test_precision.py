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
