"""Exports a gesture-recognition transformer as a QAT model with per-channel Q/DQ (seed 000), random
weights, fixed seed.

Seed 000 deploys "gesture transformer variants" for MR/AR hand interaction, exported to ONNX as
QAT models with per-channel INT8 weights ("gesture-transformer-qat-perchannel-int8/model.onnx"),
and builds them with TensorRT's INT8 flag and no calibration: the scales are in the graph. The
seed names no layout, so this is a common one for hand-gesture classifiers fed by XR hand
tracking: a window of T frames of the 25 joints of one hand (WebXR's joint set), xyz each,
[B, T, 25, 3], classified into 12 gestures (logits [B, 12]).

Architecture: a temporal Conv1d front-end over the 75 joint coordinates (kernel 3), learned
positions, pre-norm transformer encoder layers (LayerNorm, 4-head self-attention, GELU MLP), a
final LayerNorm, mean over time, and a linear classifier (a Gemm).

Quantization, as pytorch-quantization (NVIDIA's QAT toolkit for TensorRT) exports it: every Conv
and Linear has a per-tensor int8 quantizer on its input and a per-channel int8 quantizer on its
weight (axis 0, symmetric, amax/127); the attention's two products of activations quantize their
inputs per tensor too, as its BERT recipe does. Weight scales come from the weights' ranges,
activation scales from max |x| over a float run on random hand poses (QAT's calibration step
before fine-tuning, which is skipped: the weights stay random). torch's fake-quant functions
export as QuantizeLinear -> DequantizeLinear pairs (opset 13+; this file uses 17).

    python zoo/export/gesture_qat.py --size tiny --out zoo/models
"""
import argparse
import math
from pathlib import Path

import torch
from torch import nn

SIZES = {
    "tiny": dict(T=32, J=25, D=64, heads=4, layers=2, F=128, classes=12, batch=4),
    "full": dict(T=64, J=25, D=256, heads=8, layers=6, F=1024, classes=12, batch=8),
}


class Quantizer(nn.Module):
    """Per-tensor symmetric int8 fake quantization; `calibrating` records max |x| instead."""

    def __init__(self):
        super().__init__()
        self.calibrating, self.amax = False, 0.0

    def forward(self, x):
        if self.calibrating:
            self.amax = max(self.amax, float(x.detach().abs().max()))
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.amax / 127.0, 0, -128, 127)


class WeightQuantized:
    """Per-output-channel (axis 0) symmetric int8 weights: scale max|w_c| / 127, kept as a buffer
    (pytorch-quantization's amax), so that the export holds constant scales."""

    def init_weight_quantizer(self):
        self.input_quantizer = Quantizer()
        self.register_buffer("w_scale", torch.ones(self.weight.shape[0]))
        self.register_buffer("w_zero", torch.zeros(self.weight.shape[0], dtype=torch.int32))

    def set_weight_scale(self):
        amax = self.weight.detach().abs().reshape(self.weight.shape[0], -1).max(dim=1).values
        self.w_scale.copy_(amax.clamp(min=1e-8) / 127.0)

    def quant_weight(self):
        return torch.fake_quantize_per_channel_affine(self.weight, self.w_scale, self.w_zero, 0, -128, 127)


class QuantLinear(nn.Linear, WeightQuantized):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.init_weight_quantizer()

    def forward(self, x):
        return torch.nn.functional.linear(self.input_quantizer(x), self.quant_weight(), self.bias)


class QuantConv1d(nn.Conv1d, WeightQuantized):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.init_weight_quantizer()

    def forward(self, x):
        return self._conv_forward(self.input_quantizer(x), self.quant_weight(), self.bias)


class EncoderLayer(nn.Module):
    def __init__(self, D, heads, F):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = QuantLinear(D, 3 * D), QuantLinear(D, D)
        self.fc1, self.fc2 = QuantLinear(D, F), QuantLinear(F, D)
        self.q_in, self.k_in, self.p_in, self.v_in = Quantizer(), Quantizer(), Quantizer(), Quantizer()

    def forward(self, x):
        B, T, D = x.shape
        hd = D // self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(B, T, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        s = torch.matmul(self.q_in(q), self.k_in(k).transpose(-1, -2)) * (1.0 / math.sqrt(hd))
        a = torch.matmul(self.p_in(torch.softmax(s, dim=-1)), self.v_in(v))
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


class GestureTransformer(nn.Module):
    def __init__(self, T, J, D, heads, layers, F, classes, **_):
        super().__init__()
        self.embed = QuantConv1d(3 * J, D, 3, padding=1)
        self.pos = nn.Parameter(torch.randn(T, D) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(D, heads, F) for _ in range(layers))
        self.norm = nn.LayerNorm(D)
        self.head = QuantLinear(D, classes)

    def forward(self, hand_joints):
        B, T = hand_joints.shape[:2]
        x = self.embed(hand_joints.reshape(B, T, -1).transpose(1, 2)).transpose(1, 2) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(dim=1))


def hand_poses(cfg, n, gen):
    """Joint positions in metres around a wrist at the origin: a hand is ~0.2 m across."""
    return torch.randn(n, cfg["T"], cfg["J"], 3, generator=gen) * 0.05


def calibrate(model, cfg, gen):
    for m in model.modules():
        if isinstance(m, WeightQuantized):
            m.set_weight_scale()
    qs = [m for m in model.modules() if isinstance(m, Quantizer)]
    for q in qs:
        q.calibrating = True
    with torch.no_grad():
        for _ in range(8):
            model(hand_poses(cfg, 16, gen))
    for q in qs:
        q.calibrating = False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=SIZES, default="tiny")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models"))
    a = ap.parse_args()
    cfg = SIZES[a.size]
    torch.manual_seed(0)
    model = GestureTransformer(**cfg).eval()
    gen = torch.Generator().manual_seed(100)
    calibrate(model, cfg, gen)
    x = hand_poses(cfg, cfg["batch"], gen)
    out = Path(a.out) / ("gesture_qat.onnx" if a.size == "tiny" else f"gesture_qat_{a.size}.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        ref = model(x)
        torch.onnx.export(model, (x,), str(out), input_names=["hand_joints"], output_names=["logits"],
                          dynamic_axes={"hand_joints": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          do_constant_folding=True, dynamo=False)
    check(out, x, ref)


def check(path, x, ref):
    """onnx.checker, the Q/DQ census, then ONNX Runtime against torch's fake-quant forward."""
    import collections

    import numpy as np
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"hand_joints": x.numpy()})[0]
    err = float(np.abs(got - ref.numpy()).max())
    print(f"{path}: {path.stat().st_size} bytes, QuantizeLinear {ops['QuantizeLinear']}, DequantizeLinear "
          f"{ops['DequantizeLinear']}, ORT vs torch max abs err {err:.2e}")
    # fake quantization rounds: a float difference at a rounding boundary moves a value one step
    assert err < 1e-3, err


if __name__ == "__main__":
    main()
