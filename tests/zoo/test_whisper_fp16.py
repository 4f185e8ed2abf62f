"""Seed 001 compiles the Whisper-tiny encoder for FP16. kiln's --fp16 engine on the CPU (the
precision pass puts every float layer in fp16 with fp32 accumulation; inputs and outputs stay
fp32) against ONNX Runtime in FP32, on the zoo's tiny whisper_encoder and fresh random mel
inputs: cosine >= 0.9999 and max abs error <= 2% of the largest output (fp16 keeps about 3
decimal digits; measured: cosine 0.9999985, max error 0.3% of the largest output).

The engine must really be FP16: its attention, projections, convolutions and LayerNorms are
checked to be fp16 layers in `kiln inspect --json`, so an engine that silently stayed FP32
cannot pass. The result is appended to the zoo results (the report's "extra check" column)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kilnrun  # noqa: E402
import test_zoo as zoo  # noqa: E402

COSINE = 0.9999
REL_MAX_ERR = 0.02
FP16_OPS = {"Attention", "Conv", "LayerNormalization", "FusedMatMul", "MatMul"}


def test_whisper_encoder_fp16(tmp_path):
    spec = zoo.load_spec(zoo.ZOO / "whisper_encoder.json")
    feeds = zoo.make_inputs(spec)
    ref = zoo.ort_run(spec["path"], feeds)["last_hidden_state"]
    run, got = kilnrun.run_model(spec["path"], feeds, tmp_path, engine=True, build_args=["--fp16"], timeout=300)
    assert run.kind == "ok", f"whisper_encoder FP16 engine: {run.message}"

    insp = kilnrun.run_kiln(["inspect", tmp_path / "model.kiln", "--json"])
    assert insp.kind == "ok", f"kiln inspect: {insp.message}"
    layers = json.loads(insp.stdout)["layers"]
    heavy = [ly for ly in layers if ly["op"] in FP16_OPS]
    assert {ly["op"] for ly in heavy} >= {"Attention", "Conv", "LayerNormalization"}, \
        f"expected attention, conv and LayerNorm layers, got {sorted({ly['op'] for ly in heavy})}"
    not16 = [f"{ly['name']} ({ly['op']}: {ly['precision']})" for ly in heavy if ly["precision"] != "fp16"]
    assert not not16, f"--fp16 engine keeps layers out of fp16: {not16}"

    out = got["last_hidden_state"]
    assert out.dtype == np.float32 and out.shape == ref.shape, f"output {out.dtype} {out.shape} vs ORT {ref.shape}"
    cos = zoo.cosine(out, ref)
    err = float(np.abs(out.astype(np.float64) - ref).max())
    scale = float(np.abs(ref).max())
    zoo.record({"model": "whisper_encoder", "fp16_cosine": cos, "fp16_max_abs_err": err,
                "extra_result": f"FP16 CPU engine vs ORT FP32: cosine {cos:.7f}, max abs err {err:.2e}"})
    print(f"whisper_encoder FP16 vs ORT FP32: cosine {cos:.7f}, max abs err {err:.3e} (largest |output| {scale:.3f})")
    assert cos >= COSINE, f"FP16 cosine vs ORT FP32 {cos:.7f} < {COSINE}"
    assert err <= REL_MAX_ERR * scale, f"FP16 max abs err {err:.3e} > {REL_MAX_ERR} x largest |output| {scale:.3f}"
