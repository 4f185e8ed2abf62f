"""test_engine.py — engines end to end through the kiln command: build → save → load → run equals
the reference interpreter; the same build gives the same bytes; optimization profiles (in range,
out of range, several); dynamic inputs without a profile refused; corrupted and truncated engine
files refused with a message naming what is wrong (every region: header, section table, each
section, checksums), never a crash; inspect's text and JSON; the memory plan beats the naive sum;
KILN_NO_MEMORY_PLAN gives the same outputs; many contexts on one engine in threads.
"""
from __future__ import annotations

import json
import os
import struct
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


def kiln_ok(*args, env=None, timeout=120):
    r = subprocess.run([str(kilnrun.kiln_binary()), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"kiln {' '.join(map(str, args))} failed: {r.stderr.strip()}"
    return r


def kiln_fails(*args, timeout=120):
    r = subprocess.run([str(kilnrun.kiln_binary()), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode > 0, f"expected a clean failure, got exit {r.returncode}: {r.stderr.strip()}"
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("kiln"), f"want one line on stderr, got {r.stderr!r}"
    return r.stderr.strip()


def run_outputs(model, inputs: dict, tmp: Path, *extra, env=None):
    tmp.mkdir(parents=True, exist_ok=True)
    kilnrun.save_npz(tmp / "in.npz", inputs)
    kiln_ok("run", model, "--inputs", tmp / "in.npz", "--output", tmp / "out.npz", *extra, env=env)
    return kilnrun.load_npz(tmp / "out.npz")


def dynamic_mlp(path: Path):
    """x[N,13] → Gemm → Relu → MatMul → Add → Softmax, with N dynamic."""
    w1 = numpy_helper.from_array(rng.standard_normal((13, 7)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(7).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((7, 5)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b2")
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["m"], name="fc2"),
        helper.make_node("Add", ["m", "b2"], ["a"], name="bias"),
        helper.make_node("Softmax", ["a"], ["y"], name="softmax", axis=-1),
    ]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 13])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], [w1, b1, w2, b2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_engine_matches_interpreter(tmp_path):
    x = rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)
    want = run_outputs(TINY, {"image": x}, tmp_path / "ref")
    kiln_ok("build", TINY, "-o", tmp_path / "tiny.kiln", "--shapes", "image:1x3x32x32")
    got = run_outputs(tmp_path / "tiny.kiln", {"image": x}, tmp_path / "eng")
    np.testing.assert_allclose(got["probs"], want["probs"], rtol=1e-5, atol=1e-6)


def test_tf32_is_recorded_and_changes_nothing_on_the_cpu(tmp_path):
    """--tf32 (KILN_PRECISION_TF32) lets GPU fp32 products and convolutions use TF32; the engine
    records it (inspect's precisions), and a CPU engine computes exactly as without it."""
    x = rng.uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    kiln_ok("build", TINY, "-o", tmp_path / "fp32.kiln", "--shapes", "image:2x3x32x32")
    kiln_ok("build", TINY, "-o", tmp_path / "tf32.kiln", "--shapes", "image:2x3x32x32", "--tf32")
    prec = lambda e: json.loads(kiln_ok("inspect", e, "--json").stdout)["precisions"]  # noqa: E731
    assert prec(tmp_path / "fp32.kiln") == ["fp32"] and prec(tmp_path / "tf32.kiln") == ["fp32", "tf32"]
    assert "precisions allowed: fp32 tf32" in kiln_ok("inspect", tmp_path / "tf32.kiln").stdout
    a = run_outputs(tmp_path / "fp32.kiln", {"image": x}, tmp_path / "a")
    b = run_outputs(tmp_path / "tf32.kiln", {"image": x}, tmp_path / "b")
    np.testing.assert_array_equal(a["probs"], b["probs"])


def test_run_device_builds_in_memory(tmp_path):
    """`kiln run MODEL.onnx --device cpu`: one process builds an engine at the given inputs' shapes and
    runs it; the outputs equal a built-then-loaded engine's, and its mistakes are refused clearly."""
    x = rng.uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    kiln_ok("build", TINY, "-o", tmp_path / "tiny.kiln", "--shapes", "image:2x3x32x32")
    want = run_outputs(tmp_path / "tiny.kiln", {"image": x}, tmp_path / "eng")
    got = run_outputs(TINY, {"image": x}, tmp_path / "mem", "--device", "cpu")
    np.testing.assert_array_equal(got["probs"], want["probs"])
    kilnrun.save_npz(tmp_path / "in.npz", {"image": x})
    assert "cpu or cuda" in kiln_fails("run", TINY, "--inputs", tmp_path / "in.npz", "--device", "tpu")
    assert "engine already" in kiln_fails("run", tmp_path / "tiny.kiln", "--inputs", tmp_path / "in.npz", "--device", "cpu")
    kilnrun.save_npz(tmp_path / "bad.npz", {"imagex": x})
    assert "imagex" in kiln_fails("run", TINY, "--inputs", tmp_path / "bad.npz", "--device", "cpu")
    assert "--device cuda" in kiln_fails("run", TINY, "--inputs", tmp_path / "in.npz", "--device", "cpu", "--host-fallback")


def test_host_fallback_cpu_engine_unchanged(tmp_path):
    """--host-fallback is about CUDA engines: a CPU build with it is byte-identical to one without
    (the GPU side is tests/gpu/test_gpu_ops.py::test_host_fallback)."""
    kiln_ok("build", TINY, "-o", tmp_path / "a.kiln", "--shapes", "image:2x3x32x32")
    kiln_ok("build", TINY, "-o", tmp_path / "b.kiln", "--shapes", "image:2x3x32x32", "--host-fallback")
    assert (tmp_path / "a.kiln").read_bytes() == (tmp_path / "b.kiln").read_bytes()
    assert "host fallback" not in kiln_ok("inspect", tmp_path / "b.kiln").stdout


def test_same_build_same_bytes(tmp_path):
    kiln_ok("build", TINY, "-o", tmp_path / "a.kiln", "--shapes", "image:2x3x32x32")
    kiln_ok("build", TINY, "-o", tmp_path / "b.kiln", "--shapes", "image:2x3x32x32")
    assert (tmp_path / "a.kiln").read_bytes() == (tmp_path / "b.kiln").read_bytes()


def test_profiles(tmp_path):
    model = dynamic_mlp(tmp_path / "mlp.onnx")
    eng = tmp_path / "mlp.kiln"
    kiln_ok("build", model, "-o", eng, "--min-shapes", "x:1x13", "--opt-shapes", "x:4x13", "--max-shapes", "x:8x13",
            "--min-shapes", "x:9x13", "--opt-shapes", "x:16x13", "--max-shapes", "x:32x13")
    for n, profile in [(1, 0), (5, 0), (8, 0), (9, 1), (31, 1)]:
        x = rng.standard_normal((n, 13)).astype(np.float32)
        want = run_outputs(model, {"x": x}, tmp_path / f"r{n}")
        got = run_outputs(eng, {"x": x}, tmp_path / f"e{n}", "--profile", profile)
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-6)
    kilnrun.save_npz(tmp_path / "big.npz", {"x": rng.standard_normal((12, 13)).astype(np.float32)})
    msg = kiln_fails("run", eng, "--inputs", tmp_path / "big.npz", "--output", tmp_path / "o.npz")
    assert "outside profile 0" in msg and "'x'" in msg
    msg = kiln_fails("run", eng, "--inputs", tmp_path / "big.npz", "--output", tmp_path / "o.npz", "--profile", "3")
    assert "profile 3" in msg


def test_dynamic_input_needs_a_profile(tmp_path):
    model = dynamic_mlp(tmp_path / "mlp.onnx")
    msg = kiln_fails("build", model, "-o", tmp_path / "x.kiln")
    assert "'x'" in msg and "--min-shapes" in msg
    assert not (tmp_path / "x.kiln").exists()


def test_precision_and_device_errors(tmp_path):
    msg = kiln_fails("build", TINY, "-o", tmp_path / "x.kiln", "--shapes", "image:1x3x32x32", "--fp16", "--bf16")
    assert "fp16" in msg and "bf16" in msg
    # this machine has no GPU: a CUDA build says so, a CPU-only build says it has no CUDA backend
    msg = kiln_fails("build", TINY, "-o", tmp_path / "x.kiln", "--shapes", "image:1x3x32x32", "--device", "cuda")
    assert "unsupported" in msg and ("GPU" in msg or "CUDA" in msg), msg
    assert not (tmp_path / "x.kiln").exists()


def section_table(data: bytes):
    count = struct.unpack_from("<I", data, 32)[0]
    toff = struct.unpack_from("<Q", data, 24)[0]
    out = {}
    for k in range(count):
        sid, _crc, off, size, _ = struct.unpack_from("<IIQQQ", data, toff + 32 * k)
        out[{1: "META", 2: "GRAPH", 3: "WEIGHTS", 4: "PLAN"}[sid]] = (off, size)
    return toff, count, out


def test_corrupted_engines_are_refused(tmp_path):
    eng = tmp_path / "t.kiln"
    kiln_ok("build", TINY, "-o", eng, "--shapes", "image:1x3x32x32")
    good = eng.read_bytes()
    toff, count, secs = section_table(good)
    assert set(secs) == {"META", "GRAPH", "WEIGHTS", "PLAN"}
    kilnrun.save_npz(tmp_path / "in.npz", {"image": rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)})
    cases = {
        "magic": (0, "bad magic"),
        "version": (8, "format version"),
        "file size field": (16, "header checksum"),
        "header checksum": (44, "header checksum"),
        "section table": (toff + 5, "section table checksum"),
    }
    for name, (off, size) in secs.items():
        cases[name + " start"] = (off, f"section {name} checksum")
        cases[name + " middle"] = (off + size // 2, f"section {name} checksum")
    for what, (pos, expect) in cases.items():
        bad = bytearray(good)
        bad[pos] ^= 0x5A
        p = tmp_path / "bad.kiln"
        p.write_bytes(bytes(bad))
        msg = kiln_fails("run", p, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "o.npz")
        assert expect in msg, f"corrupting {what} (byte {pos}): {msg}"
    for cut in [0, 10, 63, 64, toff + 16, len(good) // 2, len(good) - 1]:
        p = tmp_path / "cut.kiln"
        p.write_bytes(good[:cut])
        msg = kiln_fails("run", p, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "o.npz")
        assert "truncated" in msg or "bad magic" in msg or "too short" in msg, f"cut at {cut}: {msg}"
    p = tmp_path / "long.kiln"
    p.write_bytes(good + b"\0")
    assert "truncated or padded" in kiln_fails("inspect", p)


def test_inspect_text_and_json(tmp_path):
    eng = tmp_path / "t.kiln"
    kiln_ok("build", TINY, "-o", eng, "--shapes", "image:1x3x32x32")
    text = kiln_ok("inspect", eng).stdout
    for word in ("profile 0", "memory: arena", "weights:", "layers:", "conv1", "kernel"):
        assert word in text, word
    d = json.loads(kiln_ok("inspect", eng, "--json").stdout)
    assert d["backend"] == "ref" and d["layers"] and d["profiles"][0]["memory"]["arena_bytes"] > 0
    mem = d["profiles"][0]["memory"]
    assert mem["arena_bytes"] < mem["naive_bytes"], mem
    print(f"tiny_cnn: arena {mem['arena_bytes']} B vs naive {mem['naive_bytes']} B")


def test_no_memory_plan_switch_gives_same_outputs(tmp_path):
    x = rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)
    kiln_ok("build", TINY, "-o", tmp_path / "t.kiln", "--shapes", "image:1x3x32x32")
    planned = run_outputs(tmp_path / "t.kiln", {"image": x}, tmp_path / "a")
    env = dict(os.environ, KILN_NO_MEMORY_PLAN="1")
    naive = run_outputs(tmp_path / "t.kiln", {"image": x}, tmp_path / "b", env=env)
    np.testing.assert_array_equal(planned["probs"], naive["probs"])


def test_contexts_in_threads(tmp_path):
    exe = kilnrun.kiln_build_dir() / "tests" / "test_engine_threads"
    assert exe.is_file(), f"{exe} missing: build the tests"
    r = subprocess.run([str(exe), str(TINY), "4", "3"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("passed, 0 failed")
