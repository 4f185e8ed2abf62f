"""The zoo models for zoo/bench_gpu.py: per model, the torch module built by its export script's own
build functions (zoo/export/, same seeds and weight settings as the committed tiny models), how to export
it in this process (so torch and the ONNX file share the weights), its inputs and how to compare it.
    CASES[name](name, "full" | "tiny") -> Case"""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "zoo" / "export"))

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
              "at full size the INT8 build with one calibration sample took 82 s (groot_dit) and 101 s (vlm_backbone) on "
              "the H100 machine's 16 cores (2026-11-23, with --int8-timeout 300): run it with --heavy-int8 in a call of its own")


def _inp(shape, dtype="float32", low=-1.0, high=1.0, **kw):
    return {"shape": shape, "dtype": dtype, "low": low, "high": high, **kw}


def zoo_spec(name: str) -> dict:
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
                [1, 32], calib_method=zoo_spec(name).get("int8_method", "percentile"))


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
                forward=forward, compare="detections", int8="none", cuda_args=zoo_spec(name).get("cuda_build_args", []),
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
    return Case(m, ins, ["velocity"], export, [1, 8], calib_method=zoo_spec(name).get("int8_method", "entropy"), factory_device=True,
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
    return Case(m, ins, ["hidden_states", "logits"], export, [1, 4], calib_method=zoo_spec(name).get("int8_method", "entropy"),
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
    return Case(m, ins, outs, export, [1, 8], calib_method=zoo_spec(name).get("int8_method", "entropy"), note=note)


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
