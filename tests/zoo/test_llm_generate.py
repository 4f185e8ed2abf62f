"""Greedy generation with the KV-cache decoder zoo/models/qwen3_decoder.onnx (seed 001): 32 tokens
from a fixed prompt, once with ONNX Runtime (the oracle) and once with a kiln engine, the token ids
must be equal and each chosen token's logit close.

The kiln engine has two optimization profiles, as an LLM server builds it: prefill (S = 1..16 new
tokens on P = 0..32 past ones; the prompt runs with P = 0, empty past tensors) and decode (S = 1,
P = 1..48). Two drivers run it without Python in the loop of kiln's own work:
  - tests/zoo/llm_generate.c (build/tests/llm_generate): one context over the C API, profiles switched
    per step, each step's present_* outputs bound as the next step's past_* inputs;
  - the kiln command: `kiln run ENGINE --inputs step.npz --output out.npz --profile N` once per step.
The prompt is chosen so that every step's top two logits differ by far more than FP32 rounding
(checked on ORT's run), so equal tokens is a sharp test, not a coin toss."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kilnrun  # noqa: E402

MODEL = Path(__file__).resolve().parents[2] / "zoo" / "models" / "qwen3_decoder.onnx"
PROMPT = [3, 141, 59, 26, 53, 58, 97, 93]
STEPS = 32
LAYERS, KV_HEADS, HEAD_DIM = 2, 2, 16
CACHE = [f"past_{kv}_{i}" for i in range(LAYERS) for kv in ("key", "value")]
PREFILL = ("1", "8", "16"), ("0", "0", "32")   # (S min/opt/max, P min/opt/max)
DECODE = ("1", "1", "1"), ("1", "24", "48")


def profile_args(seq, past) -> list[str]:
    args = []
    for flag, s, p in zip(("--min-shapes", "--opt-shapes", "--max-shapes"), seq, past):
        shapes = [f"input_ids:1x{s}", f"position_ids:1x{s}"] + [f"{n}:1x{KV_HEADS}x{p}x{HEAD_DIM}" for n in CACHE]
        args += [flag, ",".join(shapes)]
    return args


def step_feeds(ids, first_pos, cache) -> dict[str, np.ndarray]:
    feeds = {"input_ids": np.array([ids], np.int64),
             "position_ids": np.arange(first_pos, first_pos + len(ids), dtype=np.int64)[None]}
    feeds.update({n: cache[n] for n in CACHE})
    return feeds


def generate(step) -> tuple[list[int], list[float], list[float]]:
    """Greedy loop over step(feeds, profile) -> outputs: tokens, their logits, top-2 margins."""
    cache = {n: np.zeros((1, KV_HEADS, 0, HEAD_DIM), np.float32) for n in CACHE}
    ids, pos, tokens, logits, margins = PROMPT, 0, [], [], []
    for k in range(STEPS):
        out = step(step_feeds(ids, pos, cache), 0 if k == 0 else 1)
        last = out["logits"][0, -1]
        tok = int(np.argmax(last))
        top2 = np.sort(last)[-2:]
        tokens.append(tok), logits.append(float(last[tok])), margins.append(float(top2[1] - top2[0]))
        cache = {n: out["present_" + n[len("past_"):]] for n in CACHE}
        pos += len(ids)
        ids = [tok]
    return tokens, logits, margins


@pytest.fixture(scope="module")
def ort_run():
    import onnxruntime as ort
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    tokens, logits, margins = generate(lambda feeds, _profile: dict(zip(names, sess.run(names, feeds))))
    # The test means something only if greedy choices are clear and the text does not just repeat.
    assert min(margins) > 1e-2, f"prompt gives a near tie (top-2 margin {min(margins):.2g}): pick another"
    assert len(set(tokens)) > STEPS // 2, f"ORT's generation repeats itself: {tokens}"
    return tokens, logits


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = tmp_path_factory.mktemp("llm") / "qwen3_decoder.kiln"
    r = kilnrun.run_kiln(["build", MODEL, "-o", path] + profile_args(*PREFILL) + profile_args(*DECODE), timeout=120)
    assert r.kind == "ok", f"kiln build with prefill and decode profiles: {r.describe()}"
    return path


@pytest.fixture(scope="module")
def results():
    """Each driver's outcome, written as one row for zoo/report.py once both have run."""
    done: dict[str, str] = {}
    yield done
    if done:
        out = Path(os.environ.get("KILN_ZOO_RESULTS") or kilnrun.kiln_build_dir() / "zoo_results.jsonl")
        with open(out, "a") as f:
            f.write(json.dumps({"model": "qwen3_decoder", "generate": done,
                                "extra_result": f"greedy {STEPS} tokens, prefix equal to ORT's: " +
                                                ", ".join(f"{k} {v}" for k, v in done.items())}) + "\n")


def compare(driver: str, got_tokens, got_logits, ort_run, results) -> None:
    want_tokens, want_logits = ort_run
    first = next((k for k, (a, b) in enumerate(zip(got_tokens, want_tokens)) if a != b), None)
    equal = min(len(got_tokens), STEPS) if first is None else first   # the prefix that agrees
    n = min(len(got_logits), len(want_logits))
    err = float(np.abs(np.subtract(got_logits[:n], want_logits[:n])).max()) if n else float("inf")
    results[driver] = f"{equal}/{STEPS}"
    print(f"{driver}: first {equal}/{STEPS} tokens equal, chosen logits max abs err {err:.2e}")
    assert len(got_tokens) == STEPS, f"{driver}: {len(got_tokens)} tokens, expected {STEPS}"
    assert first is None, (f"{driver}: token {first} is {got_tokens[first]}, ORT chose {want_tokens[first]}\n"
                           f"kiln {got_tokens}\nORT  {want_tokens}")
    assert err < 1e-3, f"{driver}: chosen tokens' logits differ from ORT's by up to {err:.3g}"


def test_generate_c_api(engine, ort_run, results):
    exe = kilnrun.kiln_build_dir() / "tests" / "llm_generate"
    assert exe.is_file(), f"{exe} is missing: build the llm_generate target"
    p = subprocess.run([str(exe), str(engine), ",".join(map(str, PROMPT)), str(STEPS), "0", "1"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"llm_generate failed (rc {p.returncode}): {p.stderr.strip()}"
    rows = [line.split() for line in p.stdout.splitlines()]
    compare("C API", [int(r[0]) for r in rows], [float(r[1]) for r in rows], ort_run, results)


def test_generate_cli(engine, ort_run, results, tmp_path):
    def step(feeds, profile):
        kilnrun.save_npz(tmp_path / "in.npz", feeds)
        r = kilnrun.run_kiln(["run", engine, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "out.npz",
                              "--profile", str(profile)])
        assert r.kind == "ok", f"kiln run (profile {profile}, past {feeds['past_key_0'].shape[2]}): {r.describe()}"
        return kilnrun.load_npz(tmp_path / "out.npz")

    tokens, logits, _ = generate(step)
    compare("kiln run", tokens, logits, ort_run, results)
