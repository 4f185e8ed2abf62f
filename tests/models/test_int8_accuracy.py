"""test_int8_accuracy.py — the accuracy target of INT8 engines on trained models: for the digits CNN
and transformer that bench/int8_study/study.py trained (committed in tests/data/int8_study/), the
best of kiln's four calibrators must keep top-1 within 1 percentage point of FP32 on the held-out
split, and none may fall apart (within 3 points). FP32 engines must agree with ONNX Runtime.
docs/int8-accuracy.md has the full study; this re-checks its conclusion on every run, without
training. The data are scikit-learn's digits, split as the study splits them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import kilnrun
from test_int8 import kiln

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "data" / "int8_study"
METHODS = ["minmax", "entropy", "percentile", "mse"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    sys.path.insert(0, str(REPO / "bench" / "int8_study"))
    try:
        from train import digits_split  # the study's split: test images never seen in training
    finally:
        sys.path.pop(0)
    _, calib, test = digits_split()
    d = tmp_path_factory.mktemp("digits")
    kilnrun.save_npz(d / "calib.npz", {"x": calib[0]})
    kilnrun.save_npz(d / "test.npz", {"x": test[0]})
    return d, test[0], test[1]


def logits(d: Path, model: Path, tag: str, n: int, *args) -> np.ndarray:
    eng, out = d / f"{tag}.kiln", d / f"{tag}.npz"
    kiln("build", model, "-o", eng, "--shapes", f"x:{n}x1x8x8", *args)
    kiln("run", eng, "--inputs", d / "test.npz", "--output", out)
    return kilnrun.load_npz(out)["logits"]


@pytest.mark.parametrize("name", ["cnn", "transformer"])
def test_int8_within_one_point(digits, name):
    d, x, y = digits
    model = MODELS / f"digits_{name}.onnx"
    assert model.stat().st_size < 1 << 20
    fp32 = logits(d, model, f"{name}_fp32", len(x))
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(fp32, ref, rtol=1e-4, atol=1e-4)
    acc32 = float((fp32.argmax(1) == y).mean() * 100)
    assert acc32 >= 90, f"{name}: FP32 top-1 {acc32} %: not the trained model?"
    acc = {}
    for m in METHODS:
        out = logits(d, model, f"{name}_{m}", len(x), "--int8", "--calib", d / "calib.npz", "--calib-batch", "32",
                     "--calib-method", m)
        acc[m] = float((out.argmax(1) == y).mean() * 100)
    print(f"\n{name}: FP32 {acc32:.2f} %, INT8 " + ", ".join(f"{m} {a:.2f} %" for m, a in acc.items()))
    best = max(acc.values())
    assert best >= acc32 - 1.0, (name, acc32, acc)
    assert min(acc.values()) >= acc32 - 3.0, (name, acc32, acc)
