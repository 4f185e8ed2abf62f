"""Seed 002's streaming checks on the zoo's streaming_encoder (zoo/export/streaming_encoder.py, a
cache-aware streaming FastConformer encoder with parakeet-tdt's I/O contract), beyond the one-chunk
harness of test_zoo.py:

- FP32: an engine built for the seed's unified profile (audio_signal T = 584..592) runs a stream of
  300 chunks (the first of 592 frames, the rest of 584, fresh random log-mel values) in closed loop
  through `kiln compare` against the ONNX model on kiln's reference backend, each side feeding back
  its own three caches: every chunk within 1e-5 (100 %), no error growth (trend slope <= 1e-8 per
  step), and the seed's contracts on both sides (encoded_lengths == 2, encoder_output 1x32x2,
  cache_last_channel_len_out non-decreasing, >= its input and <= the cache size). The reference's
  closed loop is then checked against ONNX Runtime's closed loop over the same chunks (an
  independent oracle): same lengths, cache_len_out = min(2 (k+1), C) at chunk k, values within 1e-4.
- INT8: an engine calibrated (percentile) on streamed states (ONNX Runtime's caches after each chunk,
  so the caches are realistic, not random) runs 60 closed-loop chunks against the FP32 reference:
  cosine of every float output >= 0.999 at every chunk, contracts held; the worst cosine is reported.
- Short chunks (length below T: masked padding, fewer than 2 frames out) with random, partly valid
  caches: the reference backend and the engine against ONNX Runtime, one chunk at a time.

The test files' random seed is fresh each run and printed. Results go to $KILN_ZOO_RESULTS
(zoo/report.py: the model's INT8 column and its extra check).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kilnrun  # noqa: E402
from test_zoo import ZOO, load_spec, record  # noqa: E402

SPEC = load_spec(ZOO / "streaming_encoder.json")
MODEL = SPEC["path"]
STEPS, INT8_STEPS = 300, 60
T_FIRST, T_NEXT = 592, 584          # seed 002: the first chunk, and every later one
VALID_OUT = 2                        # the seed's valid_out_len: frames out (and into the cache) per chunk
STATE = [("cache_last_channel_out", "cache_last_channel"), ("cache_last_time_out", "cache_last_time"),
         ("cache_last_channel_len_out", "cache_last_channel_len")]
SEED = int.from_bytes(os.urandom(4), "little")


def cache_shapes() -> dict[str, list[int]]:
    """[L, 1, C, D] and [L, 1, D, K] from the model's inputs (B = 1)."""
    g = onnx.load(str(MODEL), load_external_data=False).graph
    dims = {i.name: [d.dim_value or 1 for d in i.type.tensor_type.shape.dim] for i in g.input}
    return {"cache_last_channel": dims["cache_last_channel"], "cache_last_time": dims["cache_last_time"],
            "cache_last_channel_len": [1]}


CACHES = cache_shapes()
CACHE_SIZE = CACHES["cache_last_channel"][2]


def dims(shape) -> str:
    return "x".join(map(str, shape))


def fixed_shapes() -> str:
    return ",".join(["length:1"] + [f"{n}:{dims(s)}" for n, s in CACHES.items()])


def profile_args() -> list[str]:
    """The seed's unified profile C: T min 584, opt 592, max 592; B = 1."""
    rest = fixed_shapes()
    return ["--min-shapes", f"audio_signal:1x128x{T_NEXT},{rest}", "--opt-shapes", f"audio_signal:1x128x{T_FIRST},{rest}",
            "--max-shapes", f"audio_signal:1x128x{T_FIRST},{rest}"] + kilnrun.env_build_args()  # GPU pass: --device cuda


def kiln(*args, rc=0, timeout=600):
    r = subprocess.run([str(kilnrun.kiln_binary()), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == rc, f"kiln {' '.join(map(str, args))}: exit {r.returncode}, want {rc}\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
    return r


def chunk(rng, k: int) -> dict[str, np.ndarray]:
    t = T_FIRST if k == 0 else T_NEXT
    return {"audio_signal": rng.standard_normal((1, 128, t)).astype(np.float32), "length": np.array([t], np.int64)}


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    """A folder of STEPS chunk files (kiln compare's --data DIR: file k is step k); the caches are
    state, starting from zeros."""
    print(f"stream seed {SEED}")
    d = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(SEED)
    for k in range(STEPS):
        kilnrun.save_npz(d / f"{k:04d}.npz", chunk(rng, k))
    return d


def ort_closed_loop(chunks: Path, steps: int, save_inputs: Path | None = None) -> dict[str, np.ndarray]:
    """ONNX Runtime over the chunks, feeding back its own caches; outputs stacked by step. With
    save_inputs, each step's complete inputs are written there (a calibration folder)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    state = {n: np.zeros(s, np.int64 if n.endswith("_len") else np.float32) for n, s in CACHES.items()}
    outs = {n: [] for n in names}
    for k in range(steps):
        feed = {**kilnrun.load_npz(chunks / f"{k:04d}.npz"), **state}
        if save_inputs:
            kilnrun.save_npz(save_inputs / f"{k:04d}.npz", feed)
        got = dict(zip(names, sess.run(names, feed)))
        for n in names:
            outs[n].append(got[n])
        state = {inp: got[out] for out, inp in STATE}
    return {n: np.stack(v) for n, v in outs.items()}


def compare_args(chunks: Path, steps: int) -> list[str]:
    args = [MODEL, "--data", chunks, "--steps", steps, "--shapes", fixed_shapes(), "--closed-loop"]
    for out, inp in STATE:
        args += ["--state", f"{out}:{inp}"]
    for inv in [f"encoded_lengths=={VALID_OUT}", f"encoder_output:shape=1x*x{VALID_OUT}",
                "cache_last_channel_len_out:nondecreasing", "cache_last_channel_len_out>=cache_last_channel_len",
                f"cache_last_channel_len_out<={CACHE_SIZE}", "encoder_output:finite"]:
        args += ["--invariant", inv]
    return args


def check_contracts(report: dict, steps: int):
    assert report["contracts"], "no contracts in the report"
    for c in report["contracts"]:
        for side in ("reference", "target"):
            assert c[side]["checked"] == steps and c[side]["violations"] == 0, f"{c['invariant']} on the {side}: {c[side]}"


def test_fp32_closed_loop_300_chunks(stream, tmp_path):
    engine = tmp_path / "fp32.kiln"
    kiln("build", MODEL, "-o", engine, *profile_args())
    r = kiln("compare", *compare_args(stream, STEPS), engine, "--max-slope", "1e-8",
             "--save-ref", tmp_path / "ref.npz", "--json")
    report = json.loads(r.stdout)
    assert report["mode"] == "closed_loop" and report["steps"] == STEPS
    check_contracts(report, STEPS)
    summary = {}
    for o in report["outputs"]:
        s = o["steps"]
        assert s["count"] == STEPS and s["pass_rate"] == 1.0, f"{o['name']}: {s['passed']} of {s['count']} chunks pass"
        if not o["exact"]:
            assert abs(s["slope_max_abs"]) <= 1e-8, f"{o['name']}: error trend {s['slope_max_abs']} per chunk"
            summary[o["name"]] = (o["abs"]["max"], s["max_abs"]["p95"], s["slope_max_abs"])
    assert report["pass"], report.get("failed_outputs")

    # kiln's reference closed loop against ONNX Runtime's over the same chunks
    ref, want = kilnrun.load_npz(tmp_path / "ref.npz"), ort_closed_loop(stream, STEPS)
    assert np.array_equal(want["encoded_lengths"], np.full((STEPS, 1), VALID_OUT)), "ONNX Runtime breaks the contract"
    expected_len = np.minimum(VALID_OUT * np.arange(1, STEPS + 1), CACHE_SIZE)[:, None]
    assert np.array_equal(ref["cache_last_channel_len_out"], expected_len), ref["cache_last_channel_len_out"].ravel()[:20]
    ort_err = {}
    for name, w in want.items():
        assert ref[name].shape == w.shape, f"{name}: kiln reference {ref[name].shape}, ONNX Runtime {w.shape}"
        if w.dtype.kind in "iu":
            assert np.array_equal(ref[name], w), f"{name}: kiln's reference and ONNX Runtime differ"
        else:
            ort_err[name] = float(np.abs(ref[name].astype(np.float64) - w).max())
            assert ort_err[name] <= 1e-4, f"{name}: kiln's reference closed loop differs from ONNX Runtime's by {ort_err[name]}"
    enc = summary["encoder_output"]
    text = (f"{STEPS} closed-loop chunks (T {T_FIRST}, then {T_NEXT}) vs reference: 100% pass, encoder_output max err "
            f"{enc[0]:.1e}, slope {enc[2]:+.1e}/chunk; contracts held; reference vs ORT loop {max(ort_err.values()):.1e}")
    record({"model": SPEC["name"], "extra_result": text})
    print(json.dumps({"fp32_stream": summary, "ref_vs_ort": ort_err}))


def test_int8_closed_loop(stream, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    ort_closed_loop(stream, 16, save_inputs=calib)     # streamed states: caches filled and saturated
    engine = tmp_path / "int8.kiln"
    kiln("build", MODEL, "-o", engine, "--int8", "--calib-dir", calib, "--calib-method", SPEC["int8_method"],
         *profile_args())
    r = kiln("compare", *compare_args(stream, INT8_STEPS), engine, "--cosine", "0.999", "--json")
    report = json.loads(r.stdout)
    check_contracts(report, INT8_STEPS)
    cos = {o["name"]: o["cosine"] for o in report["outputs"] if not o["exact"]}
    slopes = {o["name"]: o["steps"]["slope_max_abs"] for o in report["outputs"] if not o["exact"]}
    worst = min(cos.values())
    record({"model": SPEC["name"], "int8": "ok", "int8_cosine": worst})
    print(json.dumps({"int8_cosine": cos, "int8_slope_max_abs": slopes}))
    assert report["pass"], f"INT8 closed loop: worst cosine {worst} < 0.999 at some chunk ({cos})"


def test_short_chunks_and_partial_caches(tmp_path):
    """Chunks whose length is below T (padded frames masked out of attention and the conv, fewer
    than V frames out, lengths by float arithmetic) with random, partly valid caches: the ONNX model
    on the reference backend and the profile's engine against ONNX Runtime, one chunk at a time."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    engine = tmp_path / "fp32.kiln"
    kiln("build", MODEL, "-o", engine, *profile_args())
    rng = np.random.default_rng(SEED)
    for t, n, cache_len in [(T_NEXT, 1, 0), (T_NEXT, 9, 3), (T_FIRST, 15, CACHE_SIZE - 1), (T_FIRST, 301, CACHE_SIZE)]:
        feeds = {"audio_signal": rng.standard_normal((1, 128, t)).astype(np.float32), "length": np.array([n], np.int64),
                 "cache_last_channel": rng.uniform(-2, 2, CACHES["cache_last_channel"]).astype(np.float32),
                 "cache_last_time": rng.uniform(-1, 1, CACHES["cache_last_time"]).astype(np.float32),
                 "cache_last_channel_len": np.array([cache_len], np.int64)}
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        frames = n
        for _ in range(3):
            frames = frames // 2 + 1
        assert want["encoded_lengths"][0] == min(frames, VALID_OUT)
        for target in (MODEL, engine):
            run, got = kilnrun.run_model(target, feeds, tmp_path)
            assert run.kind == "ok", f"{target.name}, T {t}, length {n}: {run.message}"
            for name, w in want.items():
                if w.dtype.kind in "iu":
                    assert np.array_equal(got[name], w), f"{target.name}, T {t}, length {n}: {name} {got[name]} != {w}"
                else:
                    err = float(np.abs(got[name].astype(np.float64) - w).max())
                    assert err <= 1e-5, f"{target.name}, T {t}, length {n}, cache_len {cache_len}: {name} max err {err}"
