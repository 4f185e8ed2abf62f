"""test_bench.py — `kiln bench` through the command line (docs/bench.md).

What is checked, on fresh random models (weights drawn anew each run) and on examples/tiny_cnn.onnx:
  - --json has exactly one record per timed run (--duration 0 --iterations N gives N), numbered in
    start order; the summary's min/mean/median/p90/p95/p99/max equal numpy's on those records
    (np.percentile, linear), throughput equals runs / wall time, and the text summary prints them;
  - on a CPU engine the context's split is honest: compute == enqueue == the whole run (within the
    few microseconds between the CLI's clock and the context's), H2D == D2H == 0;
  - --duration is a lower bound on the timed phase; --warmup runs are not in the records;
  - --profile: one entry per layer of the engine (names and order as kiln inspect --json gives
    them), each called once per timed run, and the layers add up to within 10% of the runs' total;
    the text table is sorted by cost;
  - --streams 2: two threads each with a context, both doing runs, no stream overlapping itself,
    and the profile counts every run of every stream;
  - an ONNX model is built in memory: --batch / --shapes / --inputs fix its dynamic batch, and
    --save-engine writes the engine whose size is reported;
  - bad arguments fail with one clear line and exit 2 (usage) or 1 (a status), never a crash;
  - progress goes to a terminal only: nothing on stderr when piped, a progress line on a pty.
Speed is never asserted. Run: pytest tests/models/test_bench.py (needs build/kiln or $KILN_BUILD_DIR).
"""
from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kilnrun

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "examples" / "tiny_cnn.onnx"
rng = np.random.default_rng()


def kiln(*args, timeout=120, **kw):
    return subprocess.run([str(kilnrun.kiln_binary()), *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


def kiln_ok(*args, **kw):
    r = kiln(*args, **kw)
    assert r.returncode == 0, f"kiln {' '.join(map(str, args))} failed ({r.returncode}): {r.stderr.strip()}"
    return r


def bench_json(tmp: Path, model, *args, name="bench.json"):
    out = tmp / name
    r = kiln_ok("bench", model, "--json", out, *args)
    return json.loads(out.read_text()), r


def conv_model(path: Path, hw=(29, 37), channels=(3, 12, 16)):
    """Conv+Relu → Conv → MaxPool → Conv+Relu → GlobalAveragePool → Flatten → Gemm → Softmax, with
    a dynamic batch; awkward spatial sizes so every layer costs something measurable."""
    c0, c1, c2 = channels
    w = lambda *s: numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype(np.float32))
    inits = []
    for name, shape in [("w1", (c1, c0, 3, 3)), ("b1", (c1,)), ("w2", (c2, c1, 3, 3)), ("b2", (c2,)),
                        ("w3", (c2, c2, 3, 3)), ("b3", (c2,)), ("wf", (c2, 10)), ("bf", (10,))]:
        t = w(*shape)
        t.name = name
        inits.append(t)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c2"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w3", "b3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["l"], name="fc"),
        helper.make_node("Softmax", ["l"], ["y"], name="softmax", axis=1),
    ]
    g = helper.make_graph(nodes, "bench_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c0, *hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The conv model built into an engine with a dynamic batch 1..4 (opt 2)."""
    d = tmp_path_factory.mktemp("bench")
    m = conv_model(d / "conv.onnx")
    e = d / "conv.kiln"
    kiln_ok("build", m, "-o", e, "--min-shapes", "x:1x3x29x37", "--opt-shapes", "x:2x3x29x37", "--max-shapes", "x:4x3x29x37")
    return e


def test_json_has_every_iteration_and_the_summary_agrees(engine, tmp_path):
    n = int(rng.integers(23, 41))
    d, r = bench_json(tmp_path, engine, "--iterations", n, "--duration", 0, "--warmup", 20)
    it = d["iterations"]
    assert len(it) == n == d["summary"]["iterations"], f"{len(it)} records for --iterations {n}"
    assert [x["iteration"] for x in it] == list(range(n))
    starts = np.array([x["start_ms"] for x in it])
    lat = np.array([x["latency_ms"] for x in it])
    assert (np.diff(starts) >= 0).all() and (lat > 0).all()
    assert (starts[1:] >= starts[:-1] + lat[:-1] - 1e-9).all(), "one stream: a run starts after the previous one ended"
    s = d["summary"]["latency_ms"]
    expect = {"min": lat.min(), "mean": lat.mean(), "median": np.median(lat), "max": lat.max(),
              **{f"p{p}": np.percentile(lat, p) for p in (90, 95, 99)}}
    for k, v in expect.items():
        assert s[k] == pytest.approx(v, rel=1e-9, abs=1e-12), f"summary {k} {s[k]} != numpy {v}"
    assert s["min"] <= s["median"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
    wall = d["summary"]["wall_s"]
    assert wall * 1e3 == pytest.approx(starts[-1] + lat[-1], rel=1e-6)
    assert d["summary"]["throughput_qps"] == pytest.approx(n / wall, rel=1e-9)
    assert d["summary"]["throughput_samples_per_s"] == pytest.approx(2 * n / wall, rel=1e-9)  # opt batch 2
    assert d["engine"]["inputs"][0]["shape"] == [2, 3, 29, 37]
    # the text summary shows the same numbers (4 significant digits)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("latency ms:"))
    for k in ("min", "median", "p99", "max"):
        assert f"{k} {s[k]:.4g}" in line, f"{k} missing from {line!r}"
    assert f"timed: {n} runs" in r.stdout


def test_cpu_split_is_the_whole_run(engine, tmp_path):
    d, _ = bench_json(tmp_path, engine, "--iterations", 15, "--duration", 0, "--warmup", 0)
    assert d["engine"]["device"] == "cpu"
    for x in d["iterations"]:
        assert x["h2d_ms"] == 0 and x["d2h_ms"] == 0
        assert x["compute_ms"] == x["enqueue_ms"]
        assert x["compute_ms"] <= x["latency_ms"], "the context's clock runs inside the CLI's"
    gap = np.median([x["latency_ms"] - x["compute_ms"] for x in d["iterations"]])
    assert gap < 0.5, f"the CLI's clock and the context's differ by {gap} ms (median): more than the call itself"
    mem = d["summary"]["memory"]
    desc = json.loads(kiln_ok("inspect", engine, "--json").stdout)
    assert mem["arena_bytes_per_context"] == desc["profiles"][0]["memory"]["arena_bytes"] > 0
    assert mem["peak_rss_bytes"] >= mem["arena_bytes_per_context"]
    assert d["engine"]["file_bytes"] == engine.stat().st_size


def test_duration_is_a_lower_bound_and_warmup_is_not_recorded(engine, tmp_path):
    d, _ = bench_json(tmp_path, engine, "--iterations", 1, "--duration", 0.25, "--warmup", 60)
    assert d["summary"]["wall_s"] >= 0.25 * 0.999
    assert len(d["iterations"]) >= 1
    assert d["summary"]["warmup_runs"] >= 2  # the sizing run and at least one in 60 ms


def layer_rows(stdout: str):
    """(name, total_ms) of the --profile text table, in printed order."""
    rows = []
    for ln in stdout.splitlines():
        m = re.match(r"\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", ln)
        if m:
            rows.append((m.group(2), float(m.group(5))))
    return rows


def test_profile_layers_add_up(engine, tmp_path):
    n = 12
    d, r = bench_json(tmp_path, engine, "--iterations", n, "--duration", 0, "--warmup", 0, "--profile")
    desc = json.loads(kiln_ok("inspect", engine, "--json").stdout)
    p = d["profile"]
    assert [l["name"] for l in p["layers"]] == [l["name"] for l in desc["layers"]]
    assert [l["node"] for l in p["layers"]] == list(range(len(desc["layers"])))
    assert all(l["calls"] == n for l in p["layers"])
    ops = {l["name"]: l["op"] for l in p["layers"]}
    for l in desc["layers"]:
        want = l["op"] + ("+" + l["fused_activation"] if "fused_activation" in l else "")
        assert ops[l["name"]] == want
    runs = sum(x["latency_ms"] for x in d["iterations"])
    layers = sum(l["total_ms"] for l in p["layers"])
    assert p["runs_total_ms"] == pytest.approx(runs, rel=1e-9)
    assert p["layers_total_ms"] == pytest.approx(layers, rel=1e-9)
    assert abs(layers - runs) <= 0.10 * runs, f"layers sum to {layers} ms, runs to {runs} ms"
    rows = layer_rows(r.stdout)
    assert len(rows) == len(desc["layers"])
    totals = [t for _, t in rows]
    assert totals == sorted(totals, reverse=True), "the table is sorted by cost"
    # which layer costs most is a timing (with --warmup 0 a first call's kernel set-up can dominate):
    # not asserted; every layer is in the table once
    assert sorted(name for name, _ in rows) == sorted(l["name"][:40] for l in desc["layers"])


def test_two_streams(engine, tmp_path):
    # --duration too, so that a stream the OS is slow to wake still gets runs on a busy machine
    d, r = bench_json(tmp_path, engine, "--iterations", 30, "--duration", 0.3, "--warmup", 10, "--streams", 2,
                      "--profile", "--batch", 3)
    it = d["iterations"]
    n = len(it)
    assert n >= 30 and d["summary"]["iterations"] == n and d["config"]["streams"] == 2
    assert {x["stream"] for x in it} == {0, 1}, "both streams ran"
    for s in (0, 1):
        mine = [x for x in it if x["stream"] == s]
        for a, b in zip(mine, mine[1:]):
            assert b["start_ms"] >= a["start_ms"] + a["latency_ms"] - 1e-9, "a stream runs one at a time"
    assert all(l["calls"] == n for l in d["profile"]["layers"])
    assert d["engine"]["inputs"][0]["shape"] == [3, 3, 29, 37]
    assert d["summary"]["memory"]["arena_bytes_total"] == 2 * d["summary"]["memory"]["arena_bytes_per_context"]
    assert "streams: 2" in r.stdout


def test_onnx_built_in_memory(tmp_path):
    eng = tmp_path / "tiny.kiln"
    d, r = bench_json(tmp_path, TINY, "--batch", 3, "--iterations", 5, "--duration", 0, "--warmup", 0, "--save-engine", eng)
    assert d["engine"]["built_from_onnx"] and d["engine"]["file_bytes"] == eng.stat().st_size
    assert d["engine"]["inputs"][0]["shape"] == [3, 3, 32, 32]
    assert d["summary"]["throughput_samples_per_s"] == pytest.approx(3 * d["summary"]["throughput_qps"])
    assert "samples/s at batch 3" in r.stdout
    # the saved engine benches too, at its fixed batch
    d2, _ = bench_json(tmp_path, eng, "--iterations", 2, "--duration", 0, name="b2.json")
    assert d2["engine"]["inputs"][0]["shape"] == [3, 3, 32, 32] and not d2["engine"]["built_from_onnx"]
    # --inputs fixes the shape from the data; --shapes does too
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    kilnrun.save_npz(tmp_path / "in.npz", {"image": x})
    d3, _ = bench_json(tmp_path, TINY, "--inputs", tmp_path / "in.npz", "--iterations", 2, "--duration", 0, name="b3.json")
    assert d3["engine"]["inputs"][0] == {"name": "image", "dtype": "f32", "shape": [2, 3, 32, 32], "source": str(tmp_path / "in.npz")}
    d4, _ = bench_json(tmp_path, TINY, "--shapes", "image:5x3x32x32", "--iterations", 2, "--duration", 0, name="b4.json")
    assert d4["engine"]["inputs"][0]["shape"] == [5, 3, 32, 32]


def test_json_to_stdout(engine):
    r = kiln_ok("bench", engine, "--json", "-", "--iterations", 3, "--duration", 0, "--warmup", 0)
    d = json.loads(r.stdout)
    assert len(d["iterations"]) == 3
    assert "latency ms:" in r.stderr, "with --json - the text summary goes to stderr"


@pytest.mark.parametrize("args, code, fragment", [
    (["--iterations", "0"], 2, "--iterations '0'"),
    (["--iterations", "ten"], 2, "--iterations 'ten'"),
    (["--streams", "0"], 2, "--streams '0'"),
    (["--streams", "1000"], 2, "--streams '1000'"),
    (["--warmup", "-5"], 2, "--warmup '-5'"),
    (["--duration", "soon"], 2, "--duration 'soon'"),
    (["--batch", "-1"], 2, "--batch '-1'"),
    (["--shapes", "x=1x3"], 2, "--shapes 'x=1x3'"),
    (["--frobnicate"], 2, "unknown option '--frobnicate'"),
    (["--cuda-graph"], 2, "--cuda-graph needs an engine built for CUDA"),
    (["--save-engine", "x.kiln"], 2, "--save-engine applies to ONNX models"),
    (["--batch", "9"], 1, "outside profile 0"),
    (["--shapes", "y:1x3x29x37"], 1, "no input named 'y'"),
    (["--shapes", "x:1x3x30x37"], 1, "outside profile 0"),
    (["--opt-profile", "2"], 1, "the engine has 1 profile"),
    (["--inputs", "/nonexistent/in.npz"], 1, "/nonexistent/in.npz"),
    (["--json", "/nonexistent/dir/out.json"], 1, "/nonexistent/dir/out.json"),
])
def test_bad_arguments(engine, args, code, fragment):
    r = kiln("bench", engine, *args, "--iterations" if "--iterations" not in args else "--warmup", "1", "--duration", "0")
    assert r.returncode == code, f"exit {r.returncode}, stderr {r.stderr!r}"
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("kiln"), f"want one line, got {r.stderr!r}"
    assert fragment in r.stderr, f"{fragment!r} not in {r.stderr!r}"
    assert r.stdout == ""


def test_bad_model_and_missing_argument(tmp_path):
    r = kiln("bench")
    assert r.returncode == 2 and "expected exactly one MODEL" in r.stderr
    (tmp_path / "junk.kiln").write_bytes(b"KILNENG\0" + bytes(rng.integers(0, 256, 100, dtype=np.uint8)))
    r = kiln("bench", tmp_path / "junk.kiln")
    assert r.returncode == 1 and "junk.kiln" in r.stderr and r.stderr.count("\n") == 1
    r = kiln("bench", TINY, "--iterations", 1)
    assert r.returncode == 1 and "dynamic shape" in r.stderr and "--shapes" in r.stderr


def test_help():
    r = kiln_ok("bench", "--help")
    for opt in ("--warmup", "--iterations", "--duration", "--streams", "--batch", "--shapes", "--no-data-transfers",
                "--cuda-graph", "--json", "--profile"):
        assert opt in r.stdout
    assert "bench" in kiln_ok("--help").stdout


def test_progress_only_on_a_terminal(engine):
    args = ["bench", engine, "--iterations", 1, "--duration", 0.5, "--warmup", 0]
    piped = kiln(*args)
    assert piped.returncode == 0 and piped.stderr == "", "nothing on stderr when it is not a terminal"
    master, slave = pty.openpty()
    try:
        p = subprocess.run([str(kilnrun.kiln_binary()), *map(str, args)], stdout=subprocess.PIPE, stderr=slave, timeout=60)
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0
    assert b"timed runs" in seen, f"no progress line on the terminal: {seen!r}"
