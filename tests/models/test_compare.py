"""test_compare.py — `kiln compare` (tools/cmd_compare.c, docs/compare.md) on models built here with
onnx.helper:

- an MLP (MatMul, Relu, MatMul, Greater -> a bool mask): an engine of the same model passes; an
  engine built from a copy with one weight changed is caught, and every statistic in the JSON report
  matches numpy's on the outputs `kiln run` gives for the same inputs; a NaN weight is caught (NaN
  counts, the mask's exact mismatches); per-output thresholds; the text and JSON agree;
- a streaming GRU with a step counter (state pairs h_out->h_in, len_out->len_in): 300 closed-loop
  steps against a perturbed copy, the per-step errors checked against the same loop run by ONNX
  Runtime, the trend slope against numpy's least squares, the PNG plot's header and size; functional
  mode likewise; contracts held and broken; saved reference outputs replayed; data folders;
- an INT8 MLP with an outlier channel that fails its cosine threshold: --bisect-precision finds the
  layers to keep in fp32, and `kiln build` with the printed flags makes an engine that passes.
"""
from __future__ import annotations

import json
import re
import shlex
import struct
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kilnrun

MISMATCH = 3  # kiln compare's exit status for a failed comparison


def kiln(*args, rc=0, timeout=120):
    """Runs kiln; rc is the exit status wanted (None: a verdict either way, 0 or MISMATCH)."""
    r = subprocess.run([str(kilnrun.kiln_binary()), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode in ((0, MISMATCH) if rc is None else (rc,)), f"kiln {' '.join(map(str, args))}: exit {r.returncode}, want {rc}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def compare_json(*args, rc=0):
    return json.loads(kiln("compare", *args, "--json", rc=rc).stdout)


def save(model, path):
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# ---- models ----------------------------------------------------------------------------------------

def mlp(path, w1, w2):
    """x[5,7] -> MatMul W1 -> Relu -> MatMul W2 -> y[5,3]; mask = y > 0 (bool)."""
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "W2"], ["y"], name="mm2"),
             helper.make_node("Greater", ["y", "zero"], ["mask"], name="positive")]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 3]),
                           helper.make_tensor_value_info("mask", TensorProto.BOOL, [5, 3])],
                          [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2"),
                           numpy_helper.from_array(np.float32(0), "zero")])
    return save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


H, F, T = 6, 5, 3


def gru(path, w, r, b):
    """A streaming GRU: x[T,1,F] and state h_in[1,1,H] -> y[T,1,1,H], h_out; a counter len_out = len_in + 1."""
    nodes = [helper.make_node("GRU", ["x", "W", "R", "B", "", "h_in"], ["y", "h_out"], name="gru", hidden_size=H),
             helper.make_node("Add", ["len_in", "one"], ["len_out"], name="count")]
    g = helper.make_graph(
        nodes, "stream",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, 1, F]),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [1, 1, H]),
         helper.make_tensor_value_info("len_in", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, 1, 1, H]),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, 1, H]),
         helper.make_tensor_value_info("len_out", TensorProto.INT64, [1])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B"),
         numpy_helper.from_array(np.array([1], np.int64), "one")])
    return save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


D = 13


def outlier_mlp(path, rng):
    """Three MatMuls; channel 7 of the first one's output is ~300x the others, so per-tensor int8 of that
    tensor (mm1's output, mm2's input) wipes out the small channels, while channel 7 barely matters."""
    w1 = (rng.standard_normal((D, 24)) / 4).astype(np.float32)
    w1[:, 7] *= 300
    w2 = (rng.standard_normal((24, 24)) / 5).astype(np.float32)
    w2[7, :] *= 0.003
    w3 = (rng.standard_normal((24, 6)) / 5).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h1"], name="mm1"),
             helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
             helper.make_node("MatMul", ["r1", "W2"], ["h2"], name="mm2"),
             helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
             helper.make_node("MatMul", ["r2", "W3"], ["y"], name="mm3")]
    g = helper.make_graph(nodes, "outlier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", D])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
                          [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2"),
                           numpy_helper.from_array(w3, "W3")])
    return save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(20240611)
    w1 = rng.standard_normal((7, 9)).astype(np.float32)
    w2 = rng.standard_normal((9, 3)).astype(np.float32)
    bent = w1.copy()
    bent[4, 2] += 0.25
    nan = w2.copy()
    nan[5, 1] = np.nan
    s = dict(d=d, mlp=mlp(d / "mlp.onnx", w1, w2), bent=mlp(d / "bent.onnx", bent, w2), nan=mlp(d / "nan.onnx", w1, nan))
    gw = (rng.standard_normal((1, 3 * H, F)) * 0.5).astype(np.float32)
    gr = (rng.standard_normal((1, 3 * H, H)) * 0.5).astype(np.float32)
    gb = (rng.standard_normal((1, 6 * H)) * 0.1).astype(np.float32)
    gr2 = gr.copy()
    gr2[0, 4, 1] += 0.02
    s.update(gru=gru(d / "gru.onnx", gw, gr, gb), gru_bent=gru(d / "gru_bent.onnx", gw, gr2, gb))
    kiln("build", s["mlp"], "-o", d / "mlp.kiln")
    kiln("build", s["bent"], "-o", d / "bent.kiln")
    kiln("build", s["gru_bent"], "-o", d / "gru_bent.kiln")
    return s


STATE = ["--state", "h_out:h_in", "--state", "len_out:len_in"]


def by_name(report):
    return {o["name"]: o for o in report["outputs"]}


# ---- one step ------------------------------------------------------------------------------------

def test_identical_engine_passes(m):
    r = kiln("compare", m["mlp"], m["d"] / "mlp.kiln")
    assert r.stdout.rstrip().splitlines()[-1].startswith("PASS: 2 outputs match")
    j = compare_json(m["mlp"], m["d"] / "mlp.kiln", "--seed", "7", "--input-range", "x:-3,3")
    assert j["pass"] and all(o["pass"] for o in j["outputs"])
    y = by_name(j)["y"]
    assert y["abs"]["max"] <= 1e-5 and y["cosine"] > 0.999999 and y["nan"] == {"reference": 0, "target": 0}
    # built on the fly from the same model: the same verdict
    assert compare_json(m["mlp"])["pass"]


def numpy_stats(ref, tgt):
    ref, tgt = ref.astype(np.float64).ravel(), tgt.astype(np.float64).ravel()
    err = np.abs(tgt - ref)
    nz = ref != 0
    rel = err[nz] / np.abs(ref[nz])
    st = lambda v: dict(max=v.max(), mean=v.mean(), median=np.percentile(v, 50), p95=np.percentile(v, 95), p99=np.percentile(v, 99))
    return st(err), st(rel), float(ref @ tgt / (np.linalg.norm(ref) * np.linalg.norm(tgt)))


def test_perturbed_engine_is_caught_with_numpy_statistics(m):
    d = m["d"]
    j = compare_json(m["mlp"], d / "bent.kiln", "--seed", "3", "--save-inputs", d / "in.npz", rc=MISMATCH)
    assert not j["pass"] and j["failed_outputs"] >= 1
    y = by_name(j)["y"]
    assert not y["pass"] and "outside atol" in y["failure"] and y["outside_tolerance"] > 0
    # the same inputs through `kiln run` on both sides, the statistics by numpy
    kiln("run", m["mlp"], "--inputs", d / "in.npz", "--output", d / "ref.npz")
    kiln("run", d / "bent.kiln", "--inputs", d / "in.npz", "--output", d / "tgt.npz")
    ref, tgt = kilnrun.load_npz(d / "ref.npz"), kilnrun.load_npz(d / "tgt.npz")
    abs_, rel, cos = numpy_stats(ref["y"], tgt["y"])
    for k, v in abs_.items():
        assert y["abs"][k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    for k, v in rel.items():
        assert y["rel"][k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert y["cosine"] == pytest.approx(cos, rel=1e-12)
    outside = np.abs(tgt["y"].astype(np.float64) - ref["y"]) > 1e-5 + 1e-5 * np.abs(ref["y"].astype(np.float64))
    assert y["outside_tolerance"] == int(outside.sum())
    mask = by_name(j)["mask"]
    assert mask["exact"] and mask["mismatches"] == int((ref["mask"] != tgt["mask"]).sum())
    assert mask["pass"] == (mask["mismatches"] == 0)


def test_per_output_thresholds(m):
    d = m["d"]
    j = compare_json(m["mlp"], d / "bent.kiln", "--seed", "3", rc=MISMATCH)
    err = by_name(j)["y"]["abs"]["max"]
    assert err > 1e-3
    # a looser atol for y alone; the mask is still exact
    j = compare_json(m["mlp"], d / "bent.kiln", "--seed", "3", "--atol", f"y:{err * 1.01}", "--rtol", "y:0", rc=None)
    assert by_name(j)["y"]["pass"] and by_name(j)["y"]["thresholds"]["atol"] == pytest.approx(err * 1.01)
    # only a cosine check: no elementwise tolerance for that output
    j = compare_json(m["mlp"], d / "bent.kiln", "--seed", "3", "--cosine", "0.5", "--outputs", "y")
    assert [o["name"] for o in j["outputs"]] == ["y"] and j["outputs"][0]["thresholds"]["atol"] is None
    j = compare_json(m["mlp"], d / "bent.kiln", "--seed", "3", "--p99-atol", f"{err / 10}", "--outputs", "y", rc=MISMATCH)
    assert "p99" in j["outputs"][0]["failure"]


def test_nan_is_caught(m):
    j = compare_json(m["mlp"], m["nan"], "--cosine", "0.0", "--input-range", "x:0.1,1", rc=MISMATCH)
    y, mask = by_name(j)["y"], by_name(j)["mask"]
    assert y["nan"]["reference"] == 0 and y["nan"]["target"] > 0 and y["nonfinite_mismatch"] == y["nan"]["target"]
    assert not y["pass"] and "NaN" in y["failure"]
    assert not j["pass"]
    r = kiln("compare", m["mlp"], m["nan"], "--cosine", "0.0", "--input-range", "x:0.1,1", rc=MISMATCH)
    assert re.search(r"NaN / Inf\s+reference 0 / 0, target [1-9]\d* / 0", r.stdout)
    # a column of NaN makes Greater false where the reference had true: an exact mismatch on the mask
    assert mask["exact"] and mask["mismatches"] > 0 and not mask["pass"]


TEXT_STATS = re.compile(r"^  (abs|rel) error\s+max (\S+)  mean (\S+)  median (\S+)  p95 (\S+)  p99 (\S+)", re.M)


def parse_text(text):
    """output name -> {"abs": {...}, "rel": {...}, "cosine": x, "verdict": "PASS"/"FAIL"} from the text report."""
    out = {}
    for block in re.split(r"^output ", text, flags=re.M)[1:]:
        name = re.match(r"'([^']+)'", block).group(1)
        e = out[name] = {}
        for kind, *vals in TEXT_STATS.findall(block):
            e[kind] = dict(zip(["max", "mean", "median", "p95", "p99"], map(float, vals)))
        c = re.search(r"^  cosine\s+(\S+)", block, re.M)
        if c:
            e["cosine"] = float(c.group(1))
        e["verdict"] = re.search(r"^  verdict\s+(PASS|FAIL)", block, re.M).group(1)
        s = re.search(r"^  steps\s+(\d+) of (\d+) pass", block, re.M)
        if s:
            e["passed"], e["steps"] = int(s.group(1)), int(s.group(2))
        t = re.search(r"^  trend\s+slope (\S+) per step", block, re.M)
        if t:
            e["slope"] = float(t.group(1))
    return out


@pytest.mark.parametrize("case", ["bent", "gru"])
def test_json_agrees_with_text(m, case):
    d = m["d"]
    if case == "bent":
        args = [m["mlp"], d / "bent.kiln", "--seed", "5"]
    else:
        args = [m["gru"], d / "gru_bent.kiln", *STATE, "--steps", "40", "--closed-loop", "--atol", "3e-4", "--min-pass-rate", "0.5"]
    j = compare_json(*args, rc=None)
    text = kiln("compare", *args, rc=0 if j["pass"] else MISMATCH).stdout
    parsed = parse_text(text)
    assert set(parsed) == {o["name"] for o in j["outputs"]}
    for o in j["outputs"]:
        t = parsed[o["name"]]
        assert t["verdict"] == ("PASS" if o["pass"] else "FAIL")
        for kind in ("abs", "rel"):
            for k, v in t.get(kind, {}).items():
                assert v == pytest.approx(o[kind][k], rel=1e-3, abs=1e-12), (o["name"], kind, k)
        if "cosine" in t:
            assert t["cosine"] == pytest.approx(o["cosine"], abs=1e-9)
        if j["steps"] > 1:
            assert (t["passed"], t["steps"]) == (o["steps"]["passed"], o["steps"]["count"])
            assert t["slope"] == pytest.approx(o["steps"]["slope_max_abs"], rel=1e-3, abs=1e-15)
    last = text.rstrip().splitlines()[-1]
    assert last.startswith("PASS" if j["pass"] else "FAIL")


# ---- streaming ---------------------------------------------------------------------------------

def ort_loop(model, xs, closed, ref_states=None):
    """Runs the GRU model step by step in ONNX Runtime; functional mode feeds ref_states[k-1]."""
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    h, n = np.zeros((1, 1, H), np.float32), np.zeros(1, np.int64)
    ys, hs = [], []
    for k, x in enumerate(xs):
        if not closed and k:
            h, n = ref_states[k - 1]
        y, h_out, n_out = sess.run(None, {"x": x, "h_in": h, "len_in": n})
        ys.append(y)
        hs.append((h_out, n_out))
        h, n = h_out, n_out
    return ys, hs


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return w, h, len(data)


@pytest.mark.parametrize("closed", [True, False], ids=["closed_loop", "functional"])
def test_streaming_gru_300_steps(m, closed):
    d = m["d"]
    mode = ["--closed-loop"] if closed else []
    plot = d / f"plot_{closed}.png"
    inputs = d / f"stream_in_{closed}.npz"
    j = compare_json(m["gru"], d / "gru_bent.kiln", *STATE, *mode, "--steps", "300", "--seed", "11", "--atol", "1", "--plot", plot,
                     "--save-inputs", inputs, "--invariant", "len_out:increasing", "--invariant", "y:finite")
    assert j["steps"] == 300 and j["mode"] == ("closed_loop" if closed else "functional") and j["pass"]
    xs = kilnrun.load_npz(inputs)["x"]
    assert xs.shape == (300, T, 1, F)
    ref_y, ref_s = ort_loop(m["gru"], xs, closed=True)
    tgt_y, _ = ort_loop(m["gru_bent"], xs, closed=closed, ref_states=ref_s)
    y = by_name(j)["y"]
    per = [s["max_abs"] for s in y["steps"]["per_step"]]
    want = [float(np.abs(a.astype(np.float64) - b).max()) for a, b in zip(ref_y, tgt_y)]
    np.testing.assert_allclose(per, want, atol=2e-6)
    assert max(want) > 1e-4  # the perturbation is visible
    # the slope is numpy's least squares over the per-step maxima
    assert y["steps"]["slope_max_abs"] == pytest.approx(np.polyfit(np.arange(300), per, 1)[0], rel=1e-6, abs=1e-15)
    assert y["steps"]["passed"] == 300 and y["steps"]["pass_rate"] == 1
    assert y["steps"]["max_abs"]["p95"] == pytest.approx(np.percentile(per, 95), rel=1e-9)
    assert by_name(j)["len_out"]["exact"] and by_name(j)["len_out"]["mismatches"] == 0
    assert all(c["pass"] and c["reference"]["checked"] == 300 and c["target"]["checked"] == 300 for c in j["contracts"])
    w, h, size = png_size(plot)
    assert (w, h) == (1000, 600) and 10_000 < size < 2_000_000


def test_pass_rate_and_slope_thresholds(m):
    d = m["d"]
    base = [m["gru"], d / "gru_bent.kiln", *STATE, "--closed-loop", "--steps", "60", "--seed", "2"]
    per = [s["max_abs"] for s in by_name(compare_json(*base, "--atol", "1"))["y"]["steps"]["per_step"]]
    atol = float(np.median(per))
    passed = sum(p <= atol for p in per)
    j = compare_json(*base, "--atol", f"{atol}", "--outputs", "y", rc=MISMATCH)
    assert j["outputs"][0]["steps"]["passed"] == passed and "steps pass" not in j["outputs"][0]["failure"]
    rate = passed / 60
    assert compare_json(*base, "--atol", f"{atol}", "--outputs", "y", "--min-pass-rate", f"{rate - 0.01}")["pass"]
    compare_json(*base, "--atol", f"{atol}", "--outputs", "y", "--min-pass-rate", f"{100 * rate + 1}%", rc=MISMATCH)
    slope = by_name(compare_json(*base, "--atol", "1"))["y"]["steps"]["slope_max_abs"]
    compare_json(*base, "--atol", "1", "--outputs", "y", "--max-slope", f"{slope - abs(slope) - 1e-12}", rc=MISMATCH)


def test_broken_invariants_are_reported(m):
    d = m["d"]
    args = [m["gru"], d / "gru_bent.kiln", *STATE, "--closed-loop", "--steps", "30", "--atol", "1",
            "--invariant", "len_out<=20", "--invariant", "len_out:nonincreasing", "--invariant", "len_out>=len_in",
            "--invariant", "y:shape=3x1x1x6", "--invariant", "h_out:shape=1x*x7", "--invariant", "nothing==1"]
    j = compare_json(*args, rc=MISMATCH)
    c = {x["invariant"]: x for x in j["contracts"]}
    assert all(o["pass"] for o in j["outputs"]) and j["contract_violations"] == 3
    le = c["len_out<=20"]
    for side in ("reference", "target"):
        assert le[side]["violations"] == 10 and le[side]["first_step"] == 20 and "len_out[0] = 21" in le[side]["first"]
        assert c["len_out:nonincreasing"][side]["violations"] == 29 and c["len_out:nonincreasing"][side]["first_step"] == 1
        assert c["h_out:shape=1x*x7"][side]["violations"] == 30
        assert c["nothing==1"][side]["missing"] and c["nothing==1"][side]["checked"] == 0
    assert c["len_out>=len_in"]["pass"] and c["y:shape=3x1x1x6"]["pass"]
    text = kiln("compare", *args, rc=MISMATCH).stdout
    assert re.search(r"len_out<=20\s+reference: VIOLATED on 10 of 30 steps, first at step 20", text)
    assert text.rstrip().splitlines()[-1].startswith("FAIL: 3 contract violations")
    r = kiln("compare", m["gru"], "--invariant", "len_out:sideways", rc=2)
    assert "sideways" in r.stderr


def test_saved_reference_and_data_replay(m):
    d = m["d"]
    first = compare_json(m["gru"], d / "gru_bent.kiln", *STATE, "--steps", "25", "--seed", "4", "--atol", "1",
                         "--save-ref", d / "saved_ref.npz", "--save-inputs", d / "saved_in.npz")
    ref = kilnrun.load_npz(d / "saved_ref.npz")
    assert ref["y"].shape == (25, T, 1, 1, H) and ref["len_out"][:, 0].tolist() == list(range(1, 26))
    again = compare_json(d / "saved_ref.npz", d / "gru_bent.kiln", *STATE, "--data", d / "saved_in.npz", "--atol", "1")
    assert again["steps"] == 25 and again["reference"]["kind"] == "saved"
    for a, b in zip(first["outputs"], again["outputs"]):
        assert [s["max_abs"] for s in a["steps"]["per_step"]] == [s["max_abs"] for s in b["steps"]["per_step"]]
    # a folder of .npz files, one per step
    folder = d / "steps"
    folder.mkdir(exist_ok=True)
    xs = kilnrun.load_npz(d / "saved_in.npz")["x"]
    for k in range(7):
        kilnrun.save_npz(folder / f"{k:02d}.npz", {"x": xs[k]})
    j = compare_json(m["gru"], d / "gru_bent.kiln", *STATE, "--data", folder, "--atol", "1")
    assert j["steps"] == 7
    assert [s["max_abs"] for s in by_name(j)["y"]["steps"]["per_step"]] == \
        [s["max_abs"] for s in by_name(first)["y"]["steps"]["per_step"]][:7]
    r = kiln("compare", m["gru"], d / "gru_bent.kiln", *STATE, "--data", folder, "--steps", "8", rc=1)
    assert "step 7" in r.stderr and r.stderr.count("\n") == 1


def test_generated_inputs_follow_ranges_and_seed(m):
    d = m["d"]
    kiln("compare", m["gru"], *STATE, "--steps", "5", "--input-range", "x:2,2.5", "--seed", "9",
         "--save-inputs", d / "g1.npz")
    kiln("compare", m["gru"], *STATE, "--steps", "5", "--input-range", "x:2,2.5", "--seed", "9",
         "--save-inputs", d / "g2.npz")
    kiln("compare", m["gru"], *STATE, "--steps", "5", "--input-range", "x:2,2.5", "--seed", "10",
         "--save-inputs", d / "g3.npz")
    a, b, c = (kilnrun.load_npz(d / f"g{i}.npz")["x"] for i in (1, 2, 3))
    assert a.shape == (5, T, 1, F) and a.min() >= 2 and a.max() < 2.5 and len(np.unique(a)) == a.size
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # with the default ranges the first step is what `kiln run --random` feeds for the same seed
    kiln("compare", m["mlp"], "--seed", "5", "--save-ref", d / "cmp_out.npz")
    kiln("run", m["mlp"], "--random", "--seed", "5", "--output", d / "run_out.npz")
    for k, v in kilnrun.load_npz(d / "run_out.npz").items():
        np.testing.assert_array_equal(kilnrun.load_npz(d / "cmp_out.npz")[k], v)
    # integers: inclusive ranges, the initial state of a state input comes from the data
    kilnrun.save_npz(d / "len0.npz", {"len_in": np.array([40], np.int64), "lenin": np.array([1], np.int64)})
    j = compare_json(m["gru"], *STATE, "--steps", "3", "--data", d / "len0.npz", "--invariant", "len_out>=41",
                     "--invariant", "len_out<=43")
    assert j["pass"] and "len_in: state, starts at the data's value" in j["inputs"]
    assert "'lenin' of the data is no input (ignored)" in j["inputs"]


def test_inputs_with_initializers_keep_them(m):
    """A graph input backed by an initializer (an optional input) is not generated: it keeps its value."""
    d = m["d"]
    w = np.random.default_rng(8).standard_normal((3, 4)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "opt",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                           helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [numpy_helper.from_array(w, "W")])
    model = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), d / "optional.onnx")
    j = compare_json(model, "--save-inputs", d / "opt_in.npz", "--save-ref", d / "opt_ref.npz")
    assert j["pass"] and "W: its initializer" in j["inputs"]
    ins, ref = kilnrun.load_npz(d / "opt_in.npz"), kilnrun.load_npz(d / "opt_ref.npz")
    assert set(ins) == {"x"}
    np.testing.assert_allclose(ref["y"], ins["x"].astype(np.float64) @ w, rtol=1e-5, atol=1e-6)


def test_usage_errors(m):
    d = m["d"]
    for args in (["--closed-loop"], ["--atol", "y:"], ["--min-pass-rate", "2"], ["--state", "h_out"],
                 ["--input-range", "x:3,1"]):
        r = kiln("compare", m["mlp"], *args, rc=2)
        assert "kiln compare:" in r.stderr
    r = kiln("compare", m["mlp"], d / "mlp.kiln", "--int8", "--calib", "x.npz", rc=2)
    assert "build options" in r.stderr
    r = kiln("compare", m["mlp"], "--bisect-precision", rc=2)
    assert "reduced precision" in r.stderr
    r = kiln("compare", m["mlp"], "--plot", d / "no" / "such" / "dir.png", rc=1)
    assert "dir.png" in r.stderr
    r = kiln("compare", d / "missing.onnx", rc=1)
    assert "missing.onnx" in r.stderr
    assert "--bisect-precision" in kiln("compare", "--help").stdout
    assert "compare" in kiln("--help").stdout


# ---- INT8 and --bisect-precision ---------------------------------------------------------------

def test_bisect_precision_finds_layers_that_pass(m):
    d = m["d"]
    rng = np.random.default_rng(99)
    model = outlier_mlp(d / "outlier.onnx", rng)
    kilnrun.save_npz(d / "calib.npz", {"x": rng.standard_normal((48, D)).astype(np.float32)})
    kilnrun.save_npz(d / "test.npz", {"x": rng.standard_normal((9, D)).astype(np.float32)})
    build = ["--int8", "--calib", d / "calib.npz", "--calib-method", "minmax"]
    check = ["--data", d / "test.npz", "--cosine", "0.999"]
    # the whole INT8 engine fails
    j = compare_json(model, *build, *check, rc=MISMATCH)
    assert j["outputs"][0]["cosine"] < 0.999
    r = kiln("compare", model, *build, *check, "--bisect-precision")
    assert "FAIL" in r.stdout  # the comparison of the INT8 build itself
    flags = re.search(r"^flags: (.*)$", r.stdout, re.M).group(1)
    keep = re.findall(r"--layer-precision (\S+):fp32", flags)
    assert keep and set(keep) <= {"mm1", "mm2", "mm3"} and len(keep) < 3
    command = re.search(r"^kiln build .*$", r.stdout, re.M).group(0)
    assert flags in command and "--int8" in command and "--shapes x:9x13" in command
    # the printed flags, through kiln build, pass
    kiln("build", model, "-o", d / "fixed.kiln", *build, "--shapes", "x:9x13", *shlex.split(flags))
    j = compare_json(model, d / "fixed.kiln", *check)
    assert j["pass"] and j["outputs"][0]["cosine"] >= 0.999
    assert "int8" in j["target"]["description"]  # the rest stays int8
    # and the JSON report of the bisection says the same
    jb = compare_json(model, *build, *check, "--bisect-precision")
    assert jb["bisect"]["pass"] and jb["bisect"]["keep_fp32"] == keep and jb["bisect"]["all_fp32_pass"]
    assert {c["layer"] for c in jb["bisect"]["candidates"]} == {"mm1", "mm2", "mm3"}
    assert not jb["pass"]  # the as-built comparison


def test_bisect_precision_fp16_overflow(m):
    """FP16: the first MatMul's output overflows half precision (~1e5 > 65504) and the second brings it
    back; both must stay in fp32, the head may stay fp16."""
    d = m["d"]
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h1"], name="big"),
             helper.make_node("MatMul", ["h1", "W2"], ["h2"], name="shrink"),
             helper.make_node("Tanh", ["h2"], ["t"], name="tanh"),
             helper.make_node("MatMul", ["t", "W3"], ["y"], name="head")]
    g = helper.make_graph(nodes, "f16", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
                          [numpy_helper.from_array((rng.standard_normal((8, 16)) * 3e4).astype(np.float32), "W1"),
                           numpy_helper.from_array((rng.standard_normal((16, 16)) * 1e-4).astype(np.float32), "W2"),
                           numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "W3")])
    model = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), d / "overflow.onnx")
    j = compare_json(model, "--fp16", "--atol", "2e-2", "--bisect-precision")
    assert not j["pass"] and j["outputs"][0]["nan"]["target"] + j["outputs"][0]["inf"]["target"] > 0
    assert sorted(j["bisect"]["keep_fp32"]) == ["big", "shrink"]
    kiln("build", model, "-o", d / "overflow.kiln", "--fp16", *shlex.split(j["bisect"]["flags"]))
    fixed = compare_json(model, d / "overflow.kiln", "--atol", "2e-2")
    assert fixed["pass"] and "fp16" in fixed["target"]["description"]

