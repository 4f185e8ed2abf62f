"""The zoo on the GPU: every zoo model (zoo/models/*.json) at its real size, built into kiln CUDA engines
(FP32, FP16, INT8 with FP16 fallback) at batch 1 and a larger batch, checked against PyTorch FP32 on the
same inputs and timed next to PyTorch eager and torch.compile (FP32 and FP16) in the same run.

    python3 zoo/bench_gpu.py --out DIR [--models a,b] [--batches 1,8] [--time-budget S] [--no-compile]
                             [--iterations N] [--size full|tiny] [--device cuda|cpu]

Per model: the torch module is made by its export script's own build functions (zoo/export/, same seeds
and weight settings as the committed tiny models), exported in this process by the script's export
call (so torch and the ONNX file share the weights), then per batch:
- torch FP32 on the inputs (TF32 off): the reference for every kiln engine's outputs;
- kiln: `kiln build --device cuda --shapes ...` [--fp16 | --int8 --fp16 --calib-dir D --calib-method M],
  build seconds, `kiln run` for parity (per output cosine and max abs error against torch FP32, integer
  outputs compared exactly; for FP16/INT8 also the cosine against kiln's FP32 engine), `kiln bench` end to
  end (median latency, H2D included) and with `--no-data-transfers --cuda-graph` (the engine alone, as
  torch is timed). INT8 calibration: kiln calibrates with its reference interpreter (on the CPU's
  threads, the FP32 graph), so once per model on --calib-samples (2) random batch-1 samples in the inputs' ranges (1 for
  the costly ones), the spec's method, the scales kept in a --calib-cache for the other batch; at full
  size groot_dit's and vlm_backbone's calibration would take most of a device call: left out unless
  --heavy-int8 (recorded), and an INT8 build that calibrates is stopped after --int8-timeout (150) s;
- torch eager and torch.compile (dynamic=False, default mode) in FP32 and FP16 (the module in half
  precision, or the FP32 module under torch.autocast where .half() breaks its forward: torch_fp16_mode):
  median of CUDA-event timings after warm-up; compile seconds.
Each cell that fails records its error; nothing stops the run. Results are written after every row to
OUT/zoo_gpu.json, OUT/zoo_gpu.md and (GPU runs) zoo/results/gpu_<date>.json (read by zoo/report.py),
bench/results/<date>_zoo-gpu_<commit>.md.

Special cases (see CASES below): faster_rcnn* take a list of one image and give data-dependent
detections: matched by label and IoU >= 0.5 instead of a cosine (and no batch axis); yolov8n's export
has a static batch (batch 1 only); gesture_qat is a Q/DQ model (explicit INT8: its "fp32" engine is
already int8, the INT8 cell is --int8 --fp16 without calibration); streaming_encoder's caches are
inputs ([L, B, ...], batch on axis 1); qwen3_decoder runs its 0.6b configuration (Qwen3-8B, the script's
"full", is 33 GB of FP32 weights: not a quick run) as one decode step after 255 cached tokens; CLIP's
two towers get B images and B texts.

Device time (the GPU machine: calls of at most 10 minutes). The per-model estimates printed at the
start (ESTIMATE_S) are the 2026-11-23 run's seconds (guesses where a model did not finish); each row's
"seconds" says what a run took. A device call (10 minutes) holds about 450 s of models: groups whose
ESTIMATE_S add up to that, each under `--time-budget 450` (no model or cell starts after it; those are
recorded as not run), torch.compile in FP16 only (a compile costs 10-50 s; FP16 is the comparison the docs
show) and `--duration 0.3`; the whole zoo takes about six calls, e.g.
    python3 zoo/bench_gpu.py --out "$OUT" --time-budget 450 --duration 0.3 --compile-precisions fp16 \\
        --models resnet50,vit_b_16,yolov8n
    ... --models clip,faster_rcnn,faster_rcnn_opset11 / whisper_encoder,resnet18,gesture_qat,vit_b_16_opset17 /
        qwen3_decoder / streaming_encoder / groot_dit / vlm_backbone
Each call's OUT/zoo_gpu.json comes back; merge them here
with `python3 zoo/bench_gpu.py --merge A/zoo_gpu.json B/zoo_gpu.json` (zoo/results/gpu_<date>.json and
bench/results/<date>_zoo-gpu_<commit>.md), then `python3 zoo/report.py` for docs/models.md.
Through scripts/gpu_check.sh: ZOO_ARGS="--time-budget 450 --duration 0.3 --compile-precisions fp16 --models ..."
GPU_STAGE_TIMEOUT=540 scripts/gpu_check.sh zoo.

Without a GPU the whole pipeline runs on the CPU: `--device cpu --size tiny --no-compile --iterations 5`
(kiln CPU engines, torch on the CPU, batches 1 and 2; the GPU-only bench flags are left out; nothing is
written to zoo/results/ or bench/results/)."""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "zoo" / "export"))
sys.path.insert(0, str(REPO / "tests"))
import kilnrun  # noqa: E402  (save_npz, shapes_arg)
from kilnrun import cosine  # noqa: E402  (the zoo tests' cosine: two zero vectors agree)

PRECISIONS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}
# Seconds per model at full size on the H100 machine for the default batches, torch.compile in FP16 only:
# measured on 2026-11-23 (three device calls; export, builds, runs, timings) where the model ran to the end
# (resnet50, vit_b_16, faster_rcnn, qwen3_decoder, whisper_encoder, yolov8n, resnet18, gesture_qat), guesses
# scaled from those for the rest (clip's batch 16, streaming_encoder's, groot_dit, vlm_backbone and the two
# opset variants did not finish). Printed before the run so that groups can be chosen.
ESTIMATE_S = {"resnet50": 210, "vit_b_16": 185, "clip": 230, "yolov8n": 40, "resnet18": 55, "gesture_qat": 50,
              "whisper_encoder": 100, "vit_b_16_opset17": 185, "faster_rcnn": 85, "faster_rcnn_opset11": 85,
              "qwen3_decoder": 365, "streaming_encoder": 250, "groot_dit": 400, "vlm_backbone": 400}


# ---------------------------------------------------------------------------------------------- cases

@dataclass
class Case:
    """One zoo model at one size: the torch module, how to export it, its inputs and how to compare."""
    module: object
    inputs: dict                 # name -> {"shape": [... "B" marks the batch axis ...], "dtype", "low", "high" | "value" | "p_true"}
    outputs: list[str]           # ONNX output names, in the order the torch forward returns them
    export: Callable[[Path], None]
    batches: list[int]           # the default batches: [1] when there is no dynamic batch axis
    forward: Callable | None = None   # (module, dict of tensors) -> list of tensors; default module(*inputs)
    compare: str = "elementwise"      # or "detections"
    int8: str = "calib"               # "calib", "explicit" (Q/DQ model: no calibration) or "none"
    int8_skip: str = ""               # why, when int8 is "none"
    calib_samples: int | None = None  # fewer than --calib-samples where a sample is expensive to calibrate on
    int8_heavy: str = ""              # why INT8 is left out unless --heavy-int8 (calibration too slow for a device call)
    calib_error: str = ""             # set when calibration failed at an earlier batch (not retried)
    calib_method: str = "percentile"
    compile_skip: str | None = None   # why torch.compile is not run, if it is not
    cuda_args: list = field(default_factory=list)  # extra `kiln build` arguments on the GPU
    factory_device: bool = False      # its forward makes tensors (torch.arange, ones) without a device: run it
                                      # under `with torch.device(dev)` so that they land on the GPU
    note: str = ""
    extra: dict = field(default_factory=dict)


HEAVY_INT8 = ("kiln calibrates with its reference interpreter (on the CPU, in double precision, over the FP32 graph); "
              "at full size one sample of this model takes minutes: run it with --heavy-int8 in a call of its own")


def _inp(shape, dtype="float32", low=-1.0, high=1.0, **kw):
    return {"shape": shape, "dtype": dtype, "low": low, "high": high, **kw}


def _spec(name: str) -> dict:
    p = REPO / "zoo" / "models" / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _tx_export(m, args, ins, outs, p: Path, dyn: dict, opset: int, info: dict) -> None:
    """The transformer scripts' export (_transformer_export.export): opset 23 through the dynamo exporter as they
    do; should this torch's dynamo exporter fail, opset 17 through the TorchScript exporter (recorded)."""
    import _transformer_export as tx
    if opset <= 20:
        tx.export(m, args, ins, outs, p, opset, dynamic_axes=dyn, dynamo=False)
        return
    try:
        tx.export(m, args, ins, outs, p, opset, dynamic_axes=dyn, dynamo=True)
    except Exception as e:  # noqa: BLE001
        info["export_note"] = f"dynamo export failed ({type(e).__name__}: {str(e)[:200]}); TorchScript exporter at opset 17"
        tx.export(m, args, ins, outs, p, 17, dynamic_axes=dyn, dynamo=False)


def case_resnet(name: str, size: str) -> Case:
    import torch
    import cnn_common as cc
    block, layers, tiny_w, tiny_res, seed = {"resnet18": ("basic", [2, 2, 2, 2], [12, 24, 48, 96], 64, 4),
                                             "resnet50": ("bottleneck", [3, 4, 6, 3], [8, 16, 32, 64], 64, 1)}[name]
    torch.manual_seed(seed)  # as cnn_common.resnet_main
    res = tiny_res if size == "tiny" else 224
    m = cc.make_resnet(block, layers, tiny_w if size == "tiny" else None)
    cc.settle_batchnorm(m, (1, 3, res, res), seed)
    m.eval()
    return Case(m, {"input": _inp(["B", 3, res, res], low=-2.0, high=2.0)}, ["logits"],
                lambda p: cc.export(m, torch.zeros(1, 3, res, res), p, "input", ["logits"],
                                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}),
                [1, 32], calib_method=_spec(name).get("int8_method", "percentile"))


def case_vit(name: str, size: str) -> Case:
    import torch
    import _transformer_export as tx
    import vit_b_16 as vit
    opset = 17 if name.endswith("opset17") else 23
    tx.seed_everything(0)  # as vit_b_16.main
    m, res = vit.build(size)
    m.eval()
    x = torch.rand(2, 3, res, res) * 2 - 1
    dyn = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
    c = Case(m, {"pixel_values": _inp(["B", 3, res, res])}, ["logits"], None, [1, 32], note=f"opset {opset}")
    c.export = lambda p: _tx_export(m, (x,), ["pixel_values"], ["logits"], p, dyn, opset, c.extra)
    return c


def case_clip(name: str, size: str) -> Case:
    import torch
    import _transformer_export as tx
    import clip
    tx.seed_everything(0)  # as clip.main
    cfg, res, length = clip.config(size)
    cfg._attn_implementation = "sdpa"
    c = clip.CLIPModel(cfg)
    tx.reinit_projections(c)
    tx.perturb_vectors(c, 0.1)
    m = clip.ClipOutputs(c).eval()
    x = torch.rand(2, 3, res, res) * 2 - 1
    ids = torch.randint(0, cfg.text_config.vocab_size, (3, length), dtype=torch.int64)
    dyn = {"pixel_values": {0: "batch"}, "input_ids": {0: "texts"}, "logits_per_image": {0: "batch", 1: "texts"},
           "logits_per_text": {0: "texts", 1: "batch"}, "text_embeds": {0: "texts"}, "image_embeds": {0: "batch"}}
    c = Case(m, {"pixel_values": _inp(["B", 3, res, res]),
                 "input_ids": _inp(["B", length], "int64", 0, cfg.text_config.vocab_size)}, clip.OUTPUTS, None,
             [1, 16], note="batch B: B images and B texts (the two towers)")
    c.export = lambda p: _tx_export(m, (x, ids), clip.INPUTS, clip.OUTPUTS, p, dyn, 23, c.extra)
    return c


def case_whisper(name: str, size: str) -> Case:
    import torch
    import _transformer_export as tx
    import whisper_encoder as we
    tx.seed_everything(0)  # as whisper_encoder.main
    cfg = we.config(size)
    cfg._attn_implementation = "sdpa"
    enc = we.WhisperEncoder(cfg)
    tx.reinit_projections(enc, gain=2.0)
    tx.perturb_vectors(enc, 0.1)
    m = we.EncoderOutput(enc).eval()
    frames = 2 * cfg.max_source_positions
    x = torch.rand(2, cfg.num_mel_bins, frames) * 2 - 1
    dyn = {"input_features": {0: "batch"}, "last_hidden_state": {0: "batch"}}
    c = Case(m, {"input_features": _inp(["B", cfg.num_mel_bins, frames], low=-1.0, high=1.5)}, ["last_hidden_state"],
             None, [1, 8], calib_samples=1)
    c.export = lambda p: _tx_export(m, (x,), ["input_features"], ["last_hidden_state"], p, dyn, 23, c.extra)
    return c


def case_yolov8n(name: str, size: str) -> Case:
    import torch
    import cnn_common as cc
    import yolov8n as y
    torch.manual_seed(8)  # as yolov8n.main
    if size == "tiny":
        m, res = y.YOLOv8(0.125, 0.33, max_channels=512, head_cap=32), 96
    else:
        m, res = y.YOLOv8(0.25, 0.33), 640
    m.detect.init_biases(res)
    cc.settle_batchnorm(m, (1, 3, res, res), seed=8, batches=2 if size == "full" else 4, low=0.0, high=1.0)
    m.eval()
    return Case(m, {"images": _inp([1, 3, res, res], low=0.0, high=1.0)}, ["output0"],
                lambda p: cc.export(m, torch.zeros(1, 3, res, res), p, "images", ["output0"]),
                [1], factory_device=True, note="the export has a static batch of 1 (anchors folded to constants): batch 1 only")


def case_faster_rcnn(name: str, size: str) -> Case:
    import torch
    import faster_rcnn as fr
    opset = 11 if name.endswith("opset11") else 17
    torch.manual_seed(1)  # as faster_rcnn.export
    m = fr.tiny_model() if size == "tiny" else fr.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    m.eval()
    h, w = fr.TINY_HW if size == "tiny" else fr.FULL_HW
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(2))

    def export(p: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(m, ([image],), str(p), dynamo=False, opset_version=opset, do_constant_folding=True,
                              input_names=["image"], output_names=["boxes", "labels", "scores"],
                              dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "detections"},
                                            "labels": {0: "detections"}, "scores": {0: "detections"}})

    def forward(mod, t):
        d = mod([t["image"]])[0]
        return [d["boxes"], d["labels"], d["scores"]]

    return Case(m, {"image": _inp([3, h, w], low=0.0, high=1.0)}, ["boxes", "labels", "scores"], export, [1],
                forward=forward, compare="detections", int8="none", cuda_args=_spec(name).get("cuda_build_args", []),
                int8_skip="detections of an INT8 engine are a different set (count, order) from FP32's; "
                          "tests/zoo/test_faster_rcnn.py matches them for a backbone-only INT8 engine",
                compile_skip="data-dependent detection post-processing (NMS, top-k, filters): torch.compile breaks the graph "
                             "there; not timed, to keep the run inside its device time",
                note=f"opset {opset}; one image [3,H,W] (no batch axis); detections matched by label and IoU >= 0.5; INT8 "
                     "not built (detections are not comparable element by element; tests/zoo/test_faster_rcnn.py)")


def case_gesture(name: str, size: str) -> Case:
    import torch
    import gesture_qat as g
    cfg = g.SIZES[size]
    torch.manual_seed(0)  # as gesture_qat.main
    m = g.GestureTransformer(**cfg).eval()
    gen = torch.Generator().manual_seed(100)
    g.calibrate(m, cfg, gen)
    x = g.hand_poses(cfg, cfg["batch"], gen)

    def export(p: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(m, (x,), str(p), input_names=["hand_joints"], output_names=["logits"],
                              dynamic_axes={"hand_joints": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                              do_constant_folding=True, dynamo=False)

    return Case(m, {"hand_joints": _inp(["B", cfg["T"], cfg["J"], 3], low=-0.1, high=0.1)}, ["logits"], export, [1, 64],
                int8="explicit",
                note="Q/DQ model (explicit INT8): every kiln engine runs its Q/DQ layers in int8; the reference is torch's "
                     "fake-quant forward; the int8 cell is --int8 --fp16 without calibration")


def case_groot(name: str, size: str) -> Case:
    import torch
    import groot_dit as gd
    cfg = gd.SIZES[size]
    torch.manual_seed(3)  # as groot_dit.main
    m = gd.ActionHead(**cfg).eval()
    with torch.no_grad():
        for blk in m.blocks:
            blk.ada.weight.normal_(0, 0.05)
    ex = gd.example_inputs(cfg, torch.Generator().manual_seed(30))
    names = list(ex)
    dyn = {n: {0: "batch"} for n in names}
    for n in ("vl_embs", "backbone_attention_mask", "image_mask"):
        dyn[n] = {0: "batch", 1: "vl_len"}
    dyn["velocity"] = {0: "batch"}

    def export(p: Path) -> None:
        with torch.no_grad():  # weights past 2 GB: torch writes them as external data beside the file
            torch.onnx.export(m, tuple(ex.values()), str(p), input_names=names, output_names=["velocity"],
                              dynamic_axes=dyn, opset_version=17, do_constant_folding=True, dynamo=False)

    S = cfg["S_vl"]
    ins = {"noisy_actions": _inp(["B", cfg["H"], cfg["A"]], low=-1.5, high=1.5), "state": _inp(["B", 1, cfg["S"]]),
           "timestep": _inp(["B"], "int64", 0, 1000), "vl_embs": _inp(["B", S, cfg["D_vl"]], low=-2.0, high=2.0),
           "backbone_attention_mask": _inp(["B", S], "int64", 0, 2), "image_mask": _inp(["B", S], "bool", p_true=0.5)}
    return Case(m, ins, ["velocity"], export, [1, 8], calib_method=_spec(name).get("int8_method", "entropy"), factory_device=True,
                calib_samples=1, int8_heavy=HEAVY_INT8 + " (32 blocks of 1536 with cross-attention keys and values over "
                f"{S} tokens of 2048)",
                note=f"{S} vision-language tokens")


def case_vlm(name: str, size: str) -> Case:
    import torch
    import vlm_backbone as vb
    cfg = vb.SIZES[size]
    torch.manual_seed(3)  # as vlm_backbone.main
    m = vb.Backbone(cfg).eval()
    ex = vb.example_inputs(cfg, torch.Generator().manual_seed(31))
    names = list(ex)
    dyn = {"pixel_values": {0: "batch"}, "input_ids": {0: "batch", 1: "text_len"},
           "attention_mask": {0: "batch", 1: "text_len"}, "hidden_states": {0: "batch", 1: "seq_len"},
           "logits": {0: "batch", 1: "seq_len"}}

    def export(p: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(m, tuple(ex.values()), str(p), input_names=names, output_names=["hidden_states", "logits"],
                              dynamic_axes=dyn, opset_version=17, do_constant_folding=True, dynamo=False)

    T = cfg["T"]
    ins = {"pixel_values": _inp(["B", 3, cfg["R"], cfg["R"]]), "input_ids": _inp(["B", T], "int64", 0, cfg["V"]),
           "attention_mask": _inp(["B", T], "int64", 1, 2)}
    return Case(m, ins, ["hidden_states", "logits"], export, [1, 4], calib_method=_spec(name).get("int8_method", "entropy"),
                factory_device=True, calib_samples=1,
                int8_heavy=HEAVY_INT8 + f" (a 27-layer 1152-wide ViT and a 16-layer 2048-wide decoder over {T} text tokens)",
                note=f"{T} text tokens, all attended")


def case_streaming(name: str, size: str) -> Case:
    import onnx
    import streaming_encoder as se
    cfg = se.SIZES[size]
    m = se.build(size)  # seeds itself
    rng = np.random.default_rng(2)
    T = 592
    L, C, D, K = cfg["layers"], cfg["cache"], cfg["d_model"], cfg["kernel"] - 1
    dyn = {"audio_signal": {0: "B", 2: "T"}, "length": {0: "B"}, "cache_last_channel": {1: "B"},
           "cache_last_time": {1: "B"}, "cache_last_channel_len": {0: "B"},
           "encoder_output": {0: "B"}, "encoded_lengths": {0: "B"}, "cache_last_channel_out": {1: "B"},
           "cache_last_time_out": {1: "B"}, "cache_last_channel_len_out": {0: "B"}}

    def export(p: Path) -> None:
        import torch
        with tempfile.TemporaryDirectory(dir=p.parent) as tmp:  # as streaming_encoder.main
            raw = Path(tmp) / "raw.onnx"
            torch.onnx.export(m, se.example_inputs(cfg, T, rng), str(raw), dynamo=False, opset_version=17,
                              do_constant_folding=True, input_names=se.INPUTS, output_names=se.OUTPUTS, dynamic_axes=dyn)
            proto = onnx.load(str(raw))
        se.declare_output_shapes(proto, cfg)
        big = sum(int(np.prod(t.dims)) * 4 for t in proto.graph.initializer) >= 1.8e9
        onnx.save(proto, str(p), save_as_external_data=big, all_tensors_to_one_file=True, location=p.name + ".data")

    ins = {"audio_signal": _inp(["B", se.N_MELS, T], low=-3.0, high=3.0), "length": _inp(["B"], "int64", value=T),
           "cache_last_channel": _inp([L, "B", C, D], low=-2.0, high=2.0),
           "cache_last_time": _inp([L, "B", D, K]), "cache_last_channel_len": _inp(["B"], "int64", 0, C + 1)}
    return Case(m, ins, se.OUTPUTS, export, [1, 16], factory_device=True, calib_samples=1,
                note=f"one chunk of {T} mel frames with random caches ([L, B, ...]: batch on axis 1); torch runs the "
                     "same step with the caches as tensors")


def case_qwen(name: str, size: str) -> Case:
    import onnx
    import torch
    import qwen3_decoder as q
    cfg_name = "tiny" if size == "tiny" else "0.6b"
    c = q.CONFIGS[cfg_name]
    m = q.make_model(c)  # seeds itself
    ins_names, outs = q.io_names(c)
    args = q.dummy_inputs(c, 1, 5, 3, torch.Generator().manual_seed(11))
    axes = {"input_ids": {0: "batch", 1: "seq"}, "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    for n in ins_names[2:]:
        axes[n] = {0: "batch", 2: "past"}
    for n in outs[1:]:
        axes[n] = {0: "batch", 2: "total"}

    def export(p: Path) -> None:
        with tempfile.TemporaryDirectory(dir=p.parent) as tmp:  # as qwen3_decoder.export
            torch.onnx.export(m, args, f"{tmp}/model.onnx", dynamo=False, opset_version=17, do_constant_folding=True,
                              input_names=ins_names, output_names=outs, dynamic_axes=axes)
            proto = onnx.load(f"{tmp}/model.onnx")
        big = sum(len(t.raw_data) for t in proto.graph.initializer) > 1 << 30
        onnx.save(proto, str(p), save_as_external_data=big, all_tensors_to_one_file=True, location=p.name + ".data")

    P = 7 if size == "tiny" else 255
    ins = {"input_ids": _inp(["B", 1], "int64", 0, c.vocab), "position_ids": _inp(["B", 1], "int64", value=P)}
    for n in ins_names[2:]:
        ins[n] = _inp(["B", c.kv_heads, P, c.head_dim], low=-2.0, high=2.0)
    note = f"configuration {cfg_name}: one decode step (1 new token after {P} cached)"
    if size != "tiny":
        note += "; the script's full size (Qwen3-8B, 33 GB of FP32 weights, ~75 GB to export) does not fit a quick run"
    return Case(m, ins, outs, export, [1, 8], calib_method=_spec(name).get("int8_method", "entropy"), note=note)


CASES = {"resnet18": case_resnet, "resnet50": case_resnet, "vit_b_16": case_vit, "vit_b_16_opset17": case_vit,
         "clip": case_clip, "whisper_encoder": case_whisper, "yolov8n": case_yolov8n, "gesture_qat": case_gesture,
         "faster_rcnn": case_faster_rcnn, "faster_rcnn_opset11": case_faster_rcnn, "streaming_encoder": case_streaming,
         "qwen3_decoder": case_qwen, "groot_dit": case_groot, "vlm_backbone": case_vlm}


def make_feeds(case: Case, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs at this batch, as tests/zoo/test_zoo.py's make_inputs draws them."""
    feeds = {}
    for name, d in case.inputs.items():
        shape = [batch if s == "B" else s for s in d["shape"]]
        dtype = np.dtype(d["dtype"])
        if "value" in d:
            feeds[name] = np.full(shape, d["value"], dtype=dtype)
        elif dtype.kind in "iu":
            feeds[name] = rng.integers(int(d["low"]), int(d["high"]), size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[name] = rng.random(shape) < d.get("p_true", 0.5)
        else:
            feeds[name] = rng.uniform(d["low"], d["high"], size=shape).astype(dtype)
    return feeds


# ------------------------------------------------------------------------------------------ helpers

class Budget:
    def __init__(self, seconds: float | None):
        self.end = time.monotonic() + seconds if seconds else None

    def left(self) -> float:
        return self.end - time.monotonic() if self.end else float("inf")

    def timeout(self, cap: float = 1800) -> float:
        return max(5.0, min(cap, self.left()))


def kiln_bin() -> Path:
    return Path(os.environ.get("KILN_BUILD_DIR", REPO / "build-gpu" / "dist")) / "kiln"


def kiln_commit() -> str | None:
    f = kiln_bin().parent / "COMMIT"
    if f.exists():
        return f.read_text().strip()
    r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True)
    return (r.stdout.strip() + " (worktree HEAD; no COMMIT file)") if r.returncode == 0 else None


def sh(args: list, timeout: float) -> float:
    t0 = time.monotonic()
    try:
        p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"kiln {args[1]}: stopped after {timeout:.0f} s (time budget)") from None
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines() or ["(no message)"]
        raise RuntimeError(f"kiln {args[1]} exit {p.returncode}: " + " | ".join(lines[-3:])[-600:])
    return time.monotonic() - t0


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_detections(got: dict, ref: dict) -> dict:
    """Greedy match, highest reference score first: same label, IoU >= 0.5."""
    used, ious, dscore = set(), [], []
    order = np.argsort(-ref["scores"])
    for i in order:
        best, bj = 0.5, None
        for j in range(len(got["scores"])):
            if j in used or got["labels"][j] != ref["labels"][i]:
                continue
            v = iou(got["boxes"][j], ref["boxes"][i])
            if v >= best:
                best, bj = v, j
        if bj is not None:
            used.add(bj)
            ious.append(best)
            dscore.append(abs(float(got["scores"][bj]) - float(ref["scores"][i])))
    return {"ref": int(len(ref["scores"])), "got": int(len(got["scores"])), "matched": len(ious),
            "mean_iou": float(np.mean(ious)) if ious else None, "score_max_abs_err": max(dscore) if dscore else None}


def parity(got: dict, ref: dict, case: Case) -> dict:
    """Worst float output's cosine and max abs error, integer outputs compared exactly."""
    if case.compare == "detections":
        return {"detections": match_detections(got, ref)}
    worst, worst_name, err, ints_equal = 1.0, None, 0.0, None
    for name in case.outputs:
        g, r = got.get(name), ref[name]
        if g is None or g.shape != r.shape:
            return {"error": f"output {name}: kiln {None if g is None else g.shape} vs torch {r.shape}"}
        if r.dtype.kind in "biu":
            ints_equal = bool(np.array_equal(g, r)) and ints_equal is not False
            continue
        c = cosine(g, r)
        if c < worst or worst_name is None:
            worst, worst_name = c, name
        if r.size:
            err = max(err, float(np.abs(g.astype(np.float64) - r).max()))
    out = {"cosine": worst, "max_abs_err": err}
    if len(case.outputs) > 1:
        out["worst_output"] = worst_name
    if ints_equal is not None:
        out["int_outputs_equal"] = ints_equal
    return out


def worst_cosine(a: dict, b: dict, case: Case) -> float | None:
    vals = [cosine(a[n], b[n]) for n in case.outputs if b[n].dtype.kind == "f" and n in a and a[n].shape == b[n].shape]
    return min(vals) if vals else None


# ---------------------------------------------------------------------------------------------- torch

def to_torch(feeds: dict, dev, half: bool = False) -> dict:
    import torch
    out = {}
    for k, v in feeds.items():
        t = torch.from_numpy(np.ascontiguousarray(v)).to(dev)
        out[k] = t.half() if half and t.is_floating_point() else t
    return out


def call(case: Case, mod, tensors: dict, dev: str, autocast: bool = False) -> list:
    import contextlib
    import torch
    with contextlib.ExitStack() as st:
        st.enter_context(torch.no_grad())
        if case.factory_device:
            st.enter_context(torch.device(dev))
        if autocast:
            st.enter_context(torch.autocast(dev, dtype=torch.float16))
        r = case.forward(mod, tensors) if case.forward else mod(*tensors.values())
    return [r] if isinstance(r, torch.Tensor) else list(r)


def timer(dev: str, fn, iters: int, seconds: float, warmup: int) -> float:
    """Median ms of at least `iters` calls and at least `seconds` of calls (at most 5000), after warm-up."""
    import torch
    for _ in range(warmup):
        fn()
    if dev == "cuda":
        torch.cuda.synchronize()
    times, t_end = [], time.monotonic() + seconds
    while (len(times) < iters or time.monotonic() < t_end) and len(times) < 5000:
        if dev == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def torch_reference(case: Case, feeds: dict, dev: str) -> dict:
    """Torch FP32 outputs (TF32 off) as numpy, by ONNX output name."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    outs = call(case, case.module, to_torch(feeds, dev), dev)
    return {n: o.detach().float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy()
            for n, o in zip(case.outputs, outs)}


def torch_cells(row: dict, case: Case, feeds: dict, dev: str, a, budget: Budget, state: dict) -> None:
    """torch eager and torch.compile (dynamic=False), FP32 (torch's defaults: TF32 for cuDNN convolutions, not
    for matmuls) and FP16: the module in half precision, or, when its forward mixes dtypes that .half() breaks
    (e.g. a float32 sinusoidal embedding concatenated with half activations), the FP32 module under
    torch.autocast(float16), recorded as torch_fp16_mode."""
    import torch
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = dev == "cuda"
    warm = 10 if dev == "cuda" else 1
    for prec in ("fp32", "fp16"):
        if budget.left() <= 0:
            row[f"torch_eager_{prec}_error"] = "not run: time budget"
            continue
        auto = False
        try:
            if prec == "fp16" and "m16" not in state:  # a copy: the FP32 module keeps its exact weights
                state["m16"] = copy.deepcopy(case.module).half()
            mod = case.module if prec == "fp32" else state["m16"]
            x = to_torch(feeds, dev, half=prec == "fp16")
            if prec == "fp16":
                try:
                    call(case, mod, x, dev)
                    row["torch_fp16_mode"] = "half"
                except Exception as e:  # noqa: BLE001
                    mod, x, auto = case.module, to_torch(feeds, dev), True
                    row["torch_fp16_mode"] = f"autocast (.half() fails: {type(e).__name__}: {str(e)[:160]})"
            row[f"torch_eager_{prec}_ms"] = timer(dev, lambda: call(case, mod, x, dev, auto), a.iterations, a.duration, warm)
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on
            row[f"torch_eager_{prec}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
            continue
        if a.no_compile or case.compile_skip or prec not in a.compile_precisions.split(","):
            row[f"torch_compile_{prec}_error"] = "not run: " + (
                "--no-compile" if a.no_compile else case.compile_skip or f"--compile-precisions {a.compile_precisions}")
            continue
        if budget.left() <= 0:
            row[f"torch_compile_{prec}_error"] = "not run: time budget"
            continue
        try:
            torch._dynamo.reset()
            cm = torch.compile(mod, dynamic=False)
            t0 = time.monotonic()
            call(case, cm, x, dev, auto)
            if dev == "cuda":
                torch.cuda.synchronize()
            row[f"torch_compile_{prec}_compile_s"] = time.monotonic() - t0
            row[f"torch_compile_{prec}_ms"] = timer(dev, lambda: call(case, cm, x, dev, auto), a.iterations, a.duration, warm)
        except Exception as e:  # noqa: BLE001
            row[f"torch_compile_{prec}_error"] = f"{type(e).__name__}: {str(e)[:300]}"


# ----------------------------------------------------------------------------------------------- kiln

def kiln_cells(row: dict, case: Case, onnx_path: Path, feeds: dict, ref: dict, work: Path, a, budget: Budget,
               rng: np.random.Generator) -> None:
    kiln, bs = kiln_bin(), row["batch"]
    xin = work / f"in_{bs}.npz"
    kilnrun.save_npz(xin, feeds)
    shapes = kilnrun.shapes_arg(feeds)
    dev_args = ["--device", "cuda", "--timing-cache", work / "timing.cache"] + case.cuda_args if a.device == "cuda" else []
    outs = {}
    n_calib = min(a.calib_samples, case.calib_samples or a.calib_samples)
    for prec in a.precisions.split(","):
        flags = list(PRECISIONS[prec])
        if budget.left() <= 0:
            row[f"kiln_{prec}_error"] = "not run: time budget"
            continue
        if prec == "int8":
            if case.int8 == "none":
                row["kiln_int8_error"] = "not built: " + case.int8_skip
                continue
            if case.int8_heavy and not a.heavy_int8 and a.size == "full":
                row["kiln_int8_error"] = "not built: " + case.int8_heavy
                continue
            if case.calib_error:
                row["kiln_int8_error"] = f"not built: calibration failed at an earlier batch ({case.calib_error[:200]})"
                continue
            if case.int8 == "calib":
                # kiln calibrates on the CPU (the reference interpreter over the FP32 graph): once per model, on
                # batch-1 samples in the inputs' ranges; the scales (TensorRT-format cache) serve every batch
                cache = work / "calib.cache"
                flags += ["--calib-cache", cache, "--calib-method", case.calib_method]
                if not cache.exists():
                    cdir = work / "calib"
                    cdir.mkdir(exist_ok=True)
                    crng = np.random.default_rng(77)
                    for i in range(n_calib):
                        kilnrun.save_npz(cdir / f"s{i:02d}.npz", make_feeds(case, 1, crng))
                    flags += ["--calib-dir", cdir]
        eng = work / f"{prec}_{bs}.kiln"
        calibrating = prec == "int8" and "--calib-dir" in flags
        try:
            cap = a.int8_timeout if calibrating else 1800
            try:
                row[f"kiln_{prec}_build_s"] = sh([kiln, "build", onnx_path, "-o", eng, "--shapes", shapes] + dev_args + flags,
                                                  budget.timeout(cap))
            except RuntimeError as e:
                if calibrating:
                    case.calib_error = str(e)
                if calibrating and "stopped after" in str(e) and cap < budget.timeout():
                    case.calib_error = (f"INT8 build with calibration (kiln's reference interpreter on the CPU, {n_calib} "
                                        f"sample(s)) did not finish within --int8-timeout {cap:.0f} s")
                    raise RuntimeError(case.calib_error) from None
                raise
            outp = work / f"out_{prec}_{bs}.npz"
            sh([kiln, "run", eng, "--inputs", xin, "--output", outp], budget.timeout())
            got = kilnrun.load_npz(outp)
            outs[prec] = got
            for k, v in parity(got, ref, case).items():
                row[f"kiln_{prec}_{k}"] = v
            if prec != "fp32" and "fp32" in outs and case.compare == "elementwise":
                row[f"kiln_{prec}_cosine_vs_kiln_fp32"] = worst_cosine(got, outs["fp32"], case)
            variants = [("", [])] + ([("_graph", ["--no-data-transfers", "--cuda-graph"])] if a.device == "cuda" else [])
            for tag, extra in variants:
                rep = work / f"rep_{prec}_{bs}{tag}.json"
                sh([kiln, "bench", eng, "--inputs", xin, "--iterations", a.iterations, "--duration", a.duration,
                    "--warmup", a.warmup_ms, "--json", rep] + extra, budget.timeout())
                summ = json.loads(rep.read_text())["summary"]
                row[f"kiln_{prec}{tag}_ms"] = summ["latency_ms"]["median"]
                if a.device == "cuda":
                    row[f"kiln_{prec}{tag}_compute_ms"] = summ["compute_ms"]["median"]
                    if not tag:
                        row[f"kiln_{prec}_h2d_ms"] = summ["h2d_ms"]["median"]
        except Exception as e:  # noqa: BLE001
            row[f"kiln_{prec}_error"] = str(e)[:700]
        finally:
            eng.unlink(missing_ok=True)  # engines of the big models are GBs each


# ------------------------------------------------------------------------------------------- the run

def bench_model(name: str, a, budget: Budget, work: Path, doc: dict, save: Callable) -> None:
    import torch
    t0 = time.monotonic()
    try:
        case = CASES[name](name, a.size)
        mdir = work / name
        mdir.mkdir()
        onnx_path = mdir / f"{name}.onnx"
        case.export(onnx_path)
        export_s = time.monotonic() - t0
        case.module = case.module.to(a.device)
    except BaseException as e:  # noqa: BLE001 - SystemExit from an export check included
        if isinstance(e, KeyboardInterrupt):
            raise
        doc["models"].append({"model": name, "size": a.size, "error": f"export: {type(e).__name__}: {str(e)[:500]}"})
        save()
        return
    import onnx
    opset = next((o.version for o in onnx.load(str(onnx_path), load_external_data=False).opset_import
                  if o.domain in ("", "ai.onnx")), None)
    default = case.batches if a.size == "full" else [min(b, 2) for b in case.batches]  # tiny: a pipeline test
    batches = [b for b in (a.batches_list or default) if b == 1 or case.batches != [1]]
    state: dict = {}
    for bs in batches:
        rng = np.random.default_rng(1000 + bs)
        feeds = make_feeds(case, bs, rng)
        row = {"model": name, "size": a.size, "batch": bs, "opset": opset, "export_s": round(export_s, 1),
               "inputs": {k: list(v.shape) for k, v in feeds.items()}}
        if case.note:
            row["note"] = case.note
        row.update(case.extra)
        if budget.left() <= 0:
            row["error"] = "not run: time budget"
            doc["models"].append(row)
            save()
            continue
        doc["models"].append(row)
        try:
            ref = torch_reference(case, feeds, a.device)
        except Exception as e:  # noqa: BLE001
            row["error"] = f"torch FP32 reference: {type(e).__name__}: {str(e)[:400]}"
            save()
            continue
        if a.size == "tiny" and bs == 1:
            row["export_vs_committed_cosine"] = committed_check(name, case, onnx_path)
        kiln_cells(row, case, onnx_path, feeds, ref, mdir, a, budget, rng)
        if "kiln_fp32_cosine" in row:  # the zoo's FP32 bound (its spec's fp32_cosine), here against torch
            row["fp32_cosine_bound"] = _spec(name).get("fp32_cosine", 0.99999)
            row["kiln_fp32_pass"] = row["kiln_fp32_cosine"] >= row["fp32_cosine_bound"] and row.get("kiln_fp32_int_outputs_equal", True)
        save()
        if not a.no_torch:
            torch_cells(row, case, feeds, a.device, a, budget, state)
        row["seconds"] = round(time.monotonic() - t0, 1)
        print(line(row), flush=True)
        save()
    del state
    case.module = None
    torch._dynamo.reset()
    if a.device == "cuda":
        torch.cuda.empty_cache()
    shutil.rmtree(work / name, ignore_errors=True)


def committed_check(name: str, case: Case, onnx_path: Path) -> float | None:
    """Tiny size: ONNX Runtime on this export and on the committed zoo/models/<name>.onnx, same inputs: the
    module made here is the one the export script made (same seeds, same weights) when this is 1."""
    committed = REPO / "zoo" / "models" / f"{name}.onnx"
    spec = _spec(name)
    if not committed.exists() or not spec:
        return None
    try:
        import onnxruntime as ort
        rng = np.random.default_rng(5)
        feeds = {}
        for k, d in spec["inputs"].items():
            feeds[k] = make_feeds(Case(None, {k: {**case.inputs.get(k, {}), **d}}, [], None, []), 1, rng)[k]
        r1 = ort.InferenceSession(str(committed), providers=["CPUExecutionProvider"]).run(None, feeds)
        r2 = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, feeds)
        return min((cosine(x, y) for x, y in zip(r1, r2) if x.dtype.kind == "f" and x.shape == y.shape), default=None)
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e)[:200]}"


def fmt(v, f="{:.3f}"):
    return f.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def fp32_parity_cell(r: dict) -> str:
    d = r.get("kiln_fp32_detections")
    if d:
        return f"{d['matched']}/{d['ref']} det. matched (kiln {d['got']})"
    if "kiln_fp32_cosine" in r:
        return f"{r['kiln_fp32_cosine']:.6f} / {r['kiln_fp32_max_abs_err']:.1e}"
    return "err" if "kiln_fp32_error" in r else "-"


def line(r: dict) -> str:
    if "error" in r and "batch" not in r:
        return f"{r['model']}: {r['error']}"
    g = "_graph" if any(k.endswith("_graph_ms") for k in r) else ""
    return (f"{r['model']:20s} b{r['batch']:<3d} kiln fp32/fp16/int8 {fmt(r.get(f'kiln_fp32{g}_ms'))}/"
            f"{fmt(r.get(f'kiln_fp16{g}_ms'))}/{fmt(r.get(f'kiln_int8{g}_ms'))} ms  torch eager fp32/fp16 "
            f"{fmt(r.get('torch_eager_fp32_ms'))}/{fmt(r.get('torch_eager_fp16_ms'))}  compile "
            f"{fmt(r.get('torch_compile_fp32_ms'))}/{fmt(r.get('torch_compile_fp16_ms'))}  fp32 {fp32_parity_cell(r)}"
            + "".join(f"  [{k}: {str(v)[:160]}]" for k, v in r.items() if k.endswith("error")))


def table(doc: dict) -> str:
    cuda = doc["device_kind"] == "cuda"
    g = "_graph" if cuda else ""
    head = ("| model | batch | kiln FP32 ms | kiln FP16 ms | kiln INT8 ms | kiln FP16 e2e ms | torch eager FP32 | "
            "torch eager FP16 | compile FP32 | compile FP16 | FP32 vs torch: cosine / max abs err | FP16 cosine | "
            "INT8 cosine vs kiln FP32 | build s FP32/FP16/INT8 |")
    lines = [f"{doc['device']}, torch {doc['torch']}, kiln {doc['kiln_commit']}, {doc['date']}, size {doc['size']}. "
             + ("kiln columns: the engine alone (--no-data-transfers --cuda-graph, as torch is timed, tensors on the GPU); "
                "e2e: from host memory, copies included. " if cuda else "kiln CPU engines (end to end). ")
             + "Medians in ms; errors in the JSON.", "", head, "|" + "---|" * 14]
    for r in doc["models"]:
        if "batch" not in r:
            lines.append(f"| {r['model']} | - | {r.get('error', '')[:120]} |" + " |" * 11)
            continue
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['batch']} | {r['error'][:120]} |" + " |" * 11)
            continue
        d16 = r.get("kiln_fp16_detections")
        c16 = f"{d16['matched']}/{d16['ref']} det." if d16 else fmt(r.get("kiln_fp16_cosine"), "{:.5f}")
        i8 = r.get("kiln_int8_cosine_vs_kiln_fp32")
        cell = lambda p: fmt(r.get(f"kiln_{p}{g}_ms")) if f"kiln_{p}{g}_ms" in r else ("err" if f"kiln_{p}_error" in r else "-")
        lines.append(" | ".join([f"| {r['model']}", str(r["batch"]), cell("fp32"), cell("fp16"), cell("int8"),
                                 fmt(r.get("kiln_fp16_ms")), fmt(r.get("torch_eager_fp32_ms")),
                                 fmt(r.get("torch_eager_fp16_ms")), fmt(r.get("torch_compile_fp32_ms")),
                                 fmt(r.get("torch_compile_fp16_ms")), fp32_parity_cell(r), c16,
                                 fmt(i8, "{:.4f}"),
                                 "/".join(fmt(r.get(f"kiln_{p}_build_s"), "{:.1f}") for p in PRECISIONS)]) + " |")
    return "\n".join(lines) + "\n"


def merge(docs: list[dict]) -> dict:
    """Runs of the same kiln on the same device (one per device call) into one document: a later run's rows
    replace an earlier run's rows of the same model."""
    out = copy.deepcopy(docs[0])
    for d in docs[1:]:
        for k in ("device", "device_kind", "kiln_commit", "size"):
            if d[k] != out[k]:
                raise SystemExit(f"cannot merge runs with different {k}: {out[k]!r} vs {d[k]!r}")
        names = {r["model"] for r in d["models"]}
        out["models"] = [r for r in out["models"] if r["model"] not in names] + d["models"]
    return out


def outputs(doc: dict, out: Path | None, results: Path | None, bench_md: Path | None) -> None:
    text = json.dumps(doc, indent=1) + "\n"
    if out:
        (out / "zoo_gpu.json").write_text(text)
        (out / "zoo_gpu.md").write_text(table(doc))
    if results:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(text)
    if bench_md:
        bench_md.write_text("# The zoo on the GPU (zoo/bench_gpu.py)\n\n" + table(doc))


def result_paths(doc: dict, results: str | None) -> tuple[Path | None, Path | None]:
    """zoo/results/gpu_<date>.json and bench/results/<date>_zoo-gpu_<commit>.md for a GPU run; none on the CPU."""
    if doc["device_kind"] != "cuda" and not results:
        return None, None
    short = (doc["kiln_commit"] or "unknown").split()[0][:10]
    return (Path(results) if results else REPO / "zoo" / "results" / f"gpu_{doc['date']}.json",
            REPO / "bench" / "results" / f"{doc['date']}_zoo-gpu_{short}.md" if doc["device_kind"] == "cuda" else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/kiln-gpu", help="results folder (zoo_gpu.json, zoo_gpu.md)")
    ap.add_argument("--models", help="comma-separated zoo names (default: every one, smallest first)")
    ap.add_argument("--batches", help="comma-separated batches for models with a dynamic batch (default: each model's 1 and N)")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--size", choices=["full", "tiny"], default="full")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--iterations", type=int, default=20, help="at least N timed runs per cell (kiln bench and torch)")
    ap.add_argument("--duration", type=float, help="and at least S seconds of timed runs per cell (default 1 on the "
                    "GPU, 0 on the CPU)")
    ap.add_argument("--warmup-ms", type=int, default=200, help="kiln bench warm-up")
    ap.add_argument("--calib-samples", type=int, default=2, help="random batch-1 samples for INT8 calibration (default 2)")
    ap.add_argument("--heavy-int8", action="store_true", help="also the INT8 builds whose calibration is left out by default "
                    "(groot_dit, vlm_backbone at full size: see their notes)")
    ap.add_argument("--int8-timeout", type=float, default=150,
                    help="seconds for an INT8 build that calibrates (kiln calibrates on the CPU), default 150")
    ap.add_argument("--time-budget", type=float, help="seconds: no model or cell is started after this")
    ap.add_argument("--no-compile", action="store_true", help="no torch.compile cells")
    ap.add_argument("--compile-precisions", default="fp32,fp16", help="torch.compile cells for these (default fp32,fp16)")
    ap.add_argument("--no-torch", action="store_true", help="no torch timings (the FP32 reference still runs)")
    ap.add_argument("--results", help="default: zoo/results/gpu_<date>.json on a GPU run, none on the CPU")
    ap.add_argument("--merge", nargs="+", metavar="ZOO_GPU.json",
                    help="no run: merge the zoo_gpu.json files of several device calls (same kiln, same GPU) into "
                         "zoo/results/gpu_<date>.json and bench/results/<date>_zoo-gpu_<commit>.md")
    a = ap.parse_args(argv)
    if a.merge:
        doc = merge([json.loads(Path(f).read_text()) for f in a.merge])
        results, bench_md = result_paths(doc, a.results)
        outputs(doc, None, results, bench_md)
        print(table(doc))
        print(f"wrote {results}" + (f", {bench_md}" if bench_md else "") if results else "CPU runs: nothing written (give --results)")
        return 0
    a.batches_list = [int(b) for b in a.batches.split(",")] if a.batches else None
    if a.duration is None:
        a.duration = 1.0 if a.device == "cuda" else 0.0
    names = a.models.split(",") if a.models else list(ESTIMATE_S)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown models {unknown}; known: {', '.join(CASES)}")
    import torch
    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device for torch (use --device cpu --size tiny to test the pipeline)")
    budget = Budget(a.time_budget)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    device = torch.cuda.get_device_name(0) if a.device == "cuda" else (platform.processor() or platform.machine()) + " (CPU)"
    doc = {"date": date, "device": device, "device_kind": a.device, "torch": torch.__version__, "kiln_commit": kiln_commit(),
           "size": a.size, "iterations": a.iterations, "precisions": a.precisions, "compile": not a.no_compile,
           "reference": "torch FP32 on the same inputs (TF32 off); kiln engines built with --shapes at each batch",
           "kiln_bench": f"--iterations {a.iterations} --duration {a.duration} --warmup {a.warmup_ms}; median latency; "
                         "_graph: --no-data-transfers --cuda-graph",
           "torch_timing": f"median of at least {a.iterations} calls and {a.duration} s of CUDA-event timed calls after "
                           "10 warm-up calls (CPU: perf_counter, 1 warm-up call)",
           "models": []}
    results, bench_md = result_paths(doc, a.results)
    earlier = []  # an earlier call's rows of other models, same kiln and GPU (a machine that keeps the file)
    if results and results.exists():
        try:
            prev = json.loads(results.read_text())
            if all(prev.get(k) == doc[k] for k in ("device", "device_kind", "kiln_commit", "size")):
                earlier = [r for r in prev["models"] if r["model"] not in names]
        except (ValueError, KeyError):
            pass

    def save():
        outputs(doc, out, None, None)
        if results:
            outputs({**doc, "models": earlier + doc["models"]}, None, results, bench_md)

    total = sum(ESTIMATE_S.get(n, 60) for n in names)
    print(json.dumps({k: doc[k] for k in ("device", "torch", "kiln_commit", "size")}), flush=True)
    print("estimates (planning guesses, not measurements; full size on the GPU): "
          + ", ".join(f"{n} ~{ESTIMATE_S.get(n, 60)} s" for n in names) + f"; total ~{total} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="kiln_zoo_gpu_") as td:
        for name in names:
            if budget.left() <= 0:
                doc["models"].append({"model": name, "size": a.size, "error": "not run: time budget"})
                print(f"{name}: not run (time budget)", flush=True)
                save()
                continue
            print(f"== {name} (~{ESTIMATE_S.get(name, 60)} s planned, {budget.left():.0f} s of budget left)", flush=True)
            bench_model(name, a, budget, Path(td), doc, save)
            save()
    print(table(doc))
    print(f"wrote {out / 'zoo_gpu.json'}" + (f", {results}" if results else "") + (f", {bench_md}" if bench_md else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
