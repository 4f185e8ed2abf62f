"""Exports a VLM backbone in the style of GR00T N1.6's Eagle (seed 003) to ONNX: random weights,
fixed seed.

Seed 003 exports the backbone (an Eagle vision encoder and a Qwen3 language model, eager
attention) to ONNX, calibrates it on ~500 samples and builds an INT8 TensorRT engine for up to 512
tokens. This is that architecture, written from its public description, at a tiny size:

  * a ViT image encoder (SigLIP-like): a patch-embedding convolution, learned positions, pre-norm
    blocks (LayerNorm, multi-head self-attention, GELU-tanh MLP), a final LayerNorm;
  * a projector (Eagle's): a 2x2 pixel shuffle of the patch grid (four neighbouring patches
    concatenated into one token), LayerNorm, Linear, GELU, Linear into the language model's width;
  * a causal decoder (Qwen3-like) over [image tokens ; text tokens]: token embeddings, RMSNorm,
    grouped-query attention with per-head RMSNorm of queries and keys and rotary positions
    (rotate-half), a SwiGLU MLP, a final RMSNorm and an LM head.

Inputs: pixel_values [B, 3, R, R] float32, input_ids [B, T] int64, attention_mask [B, T] int64
(1 for text tokens, 0 for padding; image tokens are always attended). T is dynamic, so is B.
Outputs: hidden_states [B, N_img + T, D] (the final norm's output, what GR00T's action head reads)
and logits [B, N_img + T, vocab].

The attention mask is built from comparisons of position ranges (as transformers' eager path
does) and added as float32's lowest value, so the causal prefix of image tokens keeps every row
with at least one key.

    python zoo/export/vlm_backbone.py --size tiny --out zoo/models
"""
import argparse
import math
from pathlib import Path

import torch
from torch import nn

SIZES = {
    # vision: R image side, P patch, Dv width, Lv layers, Hv heads; LLM: D width, L layers,
    # H query heads, Hkv key/value heads, hd head size, F MLP width, V vocabulary; T text tokens
    "tiny": dict(R=48, P=8, Dv=48, Lv=2, Hv=3, D=64, L=2, H=4, Hkv=2, hd=16, F=128, V=512, T=21, batch=2),
    # Eagle 2.5 in GR00T N1.6: SigLIP-so400m at 224 px (patch 14, 1152 wide, 27 layers), Qwen3-1.7B
    # (2048 wide, 16 heads, 8 KV heads, head size 128, MLP 6144), the LLM truncated to 16 layers
    "full": dict(R=224, P=14, Dv=1152, Lv=27, Hv=16, D=2048, L=16, H=16, Hkv=8, hd=128, F=6144, V=151680, T=155,
                 batch=1),
}
ROPE_THETA = 1e6


class ViTBlock(nn.Module):
    def __init__(self, D, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x):
        B, N, D = x.shape
        hd = D // self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(B, N, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd), dim=-1)
        x = x + self.proj(torch.matmul(a, v).transpose(1, 2).reshape(B, N, D))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class VisionEncoder(nn.Module):
    def __init__(self, R, P, Dv, Lv, Hv, D, **_):
        super().__init__()
        self.grid = R // P
        self.patch = nn.Conv2d(3, Dv, P, stride=P)
        self.pos = nn.Parameter(torch.randn(self.grid * self.grid, Dv) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(Dv, Hv) for _ in range(Lv))
        self.post_ln = nn.LayerNorm(Dv, eps=1e-6)
        # projector: 2x2 pixel shuffle, then LayerNorm -> Linear -> GELU -> Linear
        self.proj_ln, self.proj1, self.proj2 = nn.LayerNorm(4 * Dv), nn.Linear(4 * Dv, D), nn.Linear(D, D)

    def forward(self, pixels):
        x = self.patch(pixels).flatten(2).transpose(1, 2) + self.pos  # [B, g*g, Dv]
        for blk in self.blocks:
            x = blk(x)
        x = self.post_ln(x)
        B, _, Dv = x.shape
        g = self.grid
        x = x.reshape(B, g // 2, 2, g // 2, 2, Dv).permute(0, 1, 3, 2, 4, 5).reshape(B, (g // 2) ** 2, 4 * Dv)
        return self.proj2(torch.nn.functional.gelu(self.proj1(self.proj_ln(x))))


class RMSNorm(nn.Module):
    def __init__(self, D, eps=1e-6):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(1 + 0.1 * torch.randn(D))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class DecoderLayer(nn.Module):
    def __init__(self, D, H, Hkv, hd, F):
        super().__init__()
        self.H, self.Hkv, self.hd = H, Hkv, hd
        self.ln1, self.ln2 = RMSNorm(D), RMSNorm(D)
        self.q, self.k, self.v = nn.Linear(D, H * hd, bias=False), nn.Linear(D, Hkv * hd, bias=False), \
            nn.Linear(D, Hkv * hd, bias=False)
        self.o = nn.Linear(H * hd, D, bias=False)
        self.q_norm, self.k_norm = RMSNorm(hd), RMSNorm(hd)
        self.gate, self.up, self.down = nn.Linear(D, F, bias=False), nn.Linear(D, F, bias=False), \
            nn.Linear(F, D, bias=False)

    def forward(self, x, cos, sin, bias):
        B, L, _ = x.shape
        h = self.ln1(x)
        q = self.q_norm(self.q(h).reshape(B, L, self.H, self.hd)).transpose(1, 2)
        k = self.k_norm(self.k(h).reshape(B, L, self.Hkv, self.hd)).transpose(1, 2)
        v = self.v(h).reshape(B, L, self.Hkv, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = self.H // self.Hkv  # grouped-query attention: each KV head serves `rep` query heads
        k = k[:, :, None].expand(B, self.Hkv, rep, L, self.hd).reshape(B, self.H, L, self.hd)
        v = v[:, :, None].expand(B, self.Hkv, rep, L, self.hd).reshape(B, self.H, L, self.hd)
        s = torch.matmul(q, k.transpose(-1, -2)) * (self.hd ** -0.5) + bias
        a = torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(B, L, self.H * self.hd)
        x = x + self.o(a)
        h = self.ln2(x)
        return x + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.vision = VisionEncoder(**cfg)
        self.embed = nn.Embedding(cfg["V"], cfg["D"])
        self.layers = nn.ModuleList(DecoderLayer(cfg["D"], cfg["H"], cfg["Hkv"], cfg["hd"], cfg["F"])
                                    for _ in range(cfg["L"]))
        self.norm = RMSNorm(cfg["D"])
        self.lm_head = nn.Linear(cfg["D"], cfg["V"], bias=False)
        hd = cfg["hd"]
        self.register_buffer("inv_freq", 1.0 / ROPE_THETA ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd),
                             persistent=False)

    def forward(self, pixel_values, input_ids, attention_mask):
        img = self.vision(pixel_values)
        x = torch.cat([img, self.embed(input_ids)], dim=1)
        B, L, _ = x.shape
        keep = torch.cat([torch.ones(B, img.shape[1], dtype=torch.int64), attention_mask], dim=1) != 0  # [B, L]
        pos = torch.arange(L, dtype=torch.int64)
        causal = pos[None, :] <= pos[:, None]  # [L(query), L(key)]
        allowed = causal[None, None] & keep[:, None, None, :]
        bias = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
        freqs = pos.to(torch.float32)[:, None] * self.inv_freq[None]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        for layer in self.layers:
            x = layer(x, cos, sin, bias)
        h = self.norm(x)
        return h, self.lm_head(h)


def example_inputs(cfg, gen):
    B, T = cfg["batch"], cfg["T"]
    mask = torch.ones(B, T, dtype=torch.int64)
    mask[0, T - 5:] = 0  # right padding on the first row
    return dict(pixel_values=torch.rand(B, 3, cfg["R"], cfg["R"], generator=gen) * 2 - 1,
                input_ids=torch.randint(0, cfg["V"], (B, T), generator=gen), attention_mask=mask)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=SIZES, default="tiny")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models"))
    a = ap.parse_args()
    cfg = SIZES[a.size]
    torch.manual_seed(3)
    model = Backbone(cfg).eval()
    inputs = example_inputs(cfg, torch.Generator().manual_seed(31))
    out = Path(a.out) / ("vlm_backbone.onnx" if a.size == "tiny" else f"vlm_backbone_{a.size}.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(inputs)
    dyn = {"pixel_values": {0: "batch"}, "input_ids": {0: "batch", 1: "text_len"},
           "attention_mask": {0: "batch", 1: "text_len"}, "hidden_states": {0: "batch", 1: "seq_len"},
           "logits": {0: "batch", 1: "seq_len"}}
    with torch.no_grad():
        ref = model(**inputs)
        # the full model is past protobuf's 2 GB: torch then writes its weights as external data
        torch.onnx.export(model, tuple(inputs.values()), str(out), input_names=names,
                          output_names=["hidden_states", "logits"], dynamic_axes=dyn, opset_version=17,
                          do_constant_folding=True, dynamo=False)
    check(out, inputs, ref)


def check(path, inputs, refs):
    """onnx.checker, then ONNX Runtime against torch on the export's inputs."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in inputs.items()})
    err = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, refs))
    print(f"{path}: {path.stat().st_size} bytes, ORT vs torch max abs err {err:.2e}")
    assert err < 1e-4, err


if __name__ == "__main__":
    main()
