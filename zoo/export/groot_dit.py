"""Exports a GR00T-N1.6-style DiT action head (seed 003) to ONNX, random weights, fixed seed.

The deployment in seed 003 quantizes the flow-matching action head of GR00T N1.6 with TensorRT
(INT8, entropy calibration, FP16 fallback) and builds it with dynamic sequence lengths, up to 512
vision-language tokens. This is that head, written from its public description:

  * a state encoder (MLP) and an action encoder (noisy actions through W1, concatenated with a
    sinusoidal encoding of the timestep, W2, swish, W3) give one state token and H action tokens,
    plus learned positions;
  * the timestep (an int64 bucket 0..999, as GR00T discretizes the flow time) goes through a
    sinusoidal embedding and an MLP: the conditioning vector `temb`;
  * DiT blocks with adaLN-Zero modulation: Linear(SiLU(temb)) gives shift/scale/gate for the
    self-attention and for the MLP; the self-attention runs over the state+action tokens; a
    cross-attention (pre-LayerNorm) reads the vision-language embeddings. As in GR00T's
    AlternateVLDiT, the blocks alternate between attending the image tokens and the text tokens:
    the keys are masked with image_mask & backbone_attention_mask, then ~image_mask &
    backbone_attention_mask (a bool and an int64 mask input, [B, S_vl]);
  * a final adaLN layer (LayerNorm without affine, shift/scale from temb), a projection, and an
    action decoder MLP on the H action tokens: the predicted velocity [B, H, A].

The vision-language embeddings pass a LayerNorm first (GR00T's vlln). Their length S_vl is a
dynamic axis (the seed builds 1..512); the batch is dynamic too.

Masking uses an additive bias of float16's lowest value, not -inf, so that a query whose keys are
all masked (possible: image-only or text-only subsets of a short sequence) averages the values
instead of producing NaN, in float32 and in float16 alike.

    python zoo/export/groot_dit.py --size tiny --out zoo/models
"""
import argparse
import math
from pathlib import Path

import torch
from torch import nn

SIZES = {
    # D: DiT width, heads, blocks, D_vl: VL embedding width, A: action dim, H: horizon, S: state dim
    "tiny": dict(D=64, heads=4, blocks=2, D_vl=96, A=8, H=16, S=12, S_vl=24, batch=2),
    # GR00T N1.6's action head: 32 blocks of 1536 (32 heads), Eagle/Qwen3 features of 2048,
    # 32-dim actions over a horizon of 16, 64-dim state
    "full": dict(D=1536, heads=32, blocks=32, D_vl=2048, A=32, H=16, S=64, S_vl=411, batch=1),
}
MASK_BIAS = float(torch.finfo(torch.float16).min)


def sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] timesteps -> [B, dim]: cos then sin of t times geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    arg = t.to(torch.float32)[..., None] * freqs
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)


class TimestepEncoder(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(256, D), nn.Linear(D, D)

    def forward(self, t):
        return self.lin2(torch.nn.functional.silu(self.lin1(sinusoidal(t, 256))))


class Attention(nn.Module):
    """Multi-head attention written out (MatMul, scale, additive mask, Softmax, MatMul)."""

    def __init__(self, D, heads, kv_dim=None):
        super().__init__()
        kv_dim = kv_dim or D
        self.heads, self.hd = heads, D // heads
        self.q, self.k, self.v = nn.Linear(D, D), nn.Linear(kv_dim, D), nn.Linear(kv_dim, D)
        self.o = nn.Linear(D, D)

    def split(self, x):
        B, L, _ = x.shape
        return x.reshape(B, L, self.heads, self.hd).transpose(1, 2)

    def forward(self, x, kv, bias=None):
        q, k, v = self.split(self.q(x)), self.split(self.k(kv)), self.split(self.v(kv))
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
        if bias is not None:
            s = s + bias
        a = torch.matmul(torch.softmax(s, dim=-1), v)
        B, _, L, _ = a.shape
        return self.o(a.transpose(1, 2).reshape(B, L, -1))


class DiTBlock(nn.Module):
    def __init__(self, D, heads, D_vl):
        super().__init__()
        self.ada = nn.Linear(D, 6 * D)  # adaLN-Zero: shift/scale/gate for attention and MLP
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(D, heads)
        self.norm_x = nn.LayerNorm(D, eps=1e-5)
        self.xattn = Attention(D, heads, D_vl)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(approximate="tanh"), nn.Linear(4 * D, D))

    def forward(self, x, temb, vl, vl_bias):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(torch.nn.functional.silu(temb))[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + sc1) + sh1
        x = x + g1 * self.attn(h, h)
        x = x + self.xattn(self.norm_x(x), vl, vl_bias)
        h = self.norm2(x) * (1 + sc2) + sh2
        return x + g2 * self.mlp(h)


class ActionHead(nn.Module):
    def __init__(self, D, heads, blocks, D_vl, A, H, S, **_):
        super().__init__()
        self.D = D
        self.state_enc = nn.Sequential(nn.Linear(S, 2 * D), nn.ReLU(), nn.Linear(2 * D, D))
        self.act_w1, self.act_w2, self.act_w3 = nn.Linear(A, D), nn.Linear(2 * D, D), nn.Linear(D, D)
        self.pos = nn.Parameter(torch.randn(1 + H, D) * 0.02)
        self.vlln = nn.LayerNorm(D_vl)
        self.temb = TimestepEncoder(D)
        self.blocks = nn.ModuleList(DiTBlock(D, heads, D_vl) for _ in range(blocks))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.proj_out_1, self.proj_out_2 = nn.Linear(D, 2 * D), nn.Linear(D, D)
        self.act_dec = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, A))

    def forward(self, noisy_actions, state, timestep, vl_embs, backbone_attention_mask, image_mask):
        H = noisy_actions.shape[1]
        a = self.act_w1(noisy_actions)
        tau = sinusoidal(timestep, self.D)[:, None].expand(-1, H, -1)
        a = self.act_w3(torch.nn.functional.silu(self.act_w2(torch.cat([a, tau], dim=-1))))
        x = torch.cat([self.state_enc(state), a], dim=1) + self.pos
        temb = self.temb(timestep)
        vl = self.vlln(vl_embs)
        keep = backbone_attention_mask != 0
        # key masks [B, 1, 1, S_vl] for the image-token and text-token blocks
        img = (image_mask & keep)[:, None, None, :].to(torch.float32)
        txt = (~image_mask & keep)[:, None, None, :].to(torch.float32)
        biases = [(1.0 - img) * MASK_BIAS, (1.0 - txt) * MASK_BIAS]
        for i, blk in enumerate(self.blocks):
            x = blk(x, temb, vl, biases[i % 2])
        shift, scale = self.proj_out_1(torch.nn.functional.silu(temb))[:, None].chunk(2, dim=-1)
        x = self.proj_out_2(self.norm_out(x) * (1 + scale) + shift)
        return self.act_dec(x[:, -H:])


def example_inputs(cfg, gen):
    B, S_vl = cfg["batch"], cfg["S_vl"]
    return dict(
        noisy_actions=torch.randn(B, cfg["H"], cfg["A"], generator=gen),
        state=torch.randn(B, 1, cfg["S"], generator=gen),
        timestep=torch.randint(0, 1000, (B,), generator=gen),
        vl_embs=torch.randn(B, S_vl, cfg["D_vl"], generator=gen),
        backbone_attention_mask=(torch.rand(B, S_vl, generator=gen) < 0.8).to(torch.int64),
        image_mask=torch.rand(B, S_vl, generator=gen) < 0.5,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=SIZES, default="tiny")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models"))
    a = ap.parse_args()
    cfg = SIZES[a.size]
    torch.manual_seed(3)
    model = ActionHead(**cfg).eval()
    with torch.no_grad():  # adaLN-Zero initialises the modulation to 0; random here, or blocks are identities
        for blk in model.blocks:
            blk.ada.weight.normal_(0, 0.05)
    gen = torch.Generator().manual_seed(30)
    inputs = example_inputs(cfg, gen)
    out = Path(a.out) / ("groot_dit.onnx" if a.size == "tiny" else f"groot_dit_{a.size}.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(inputs)
    dyn = {n: {0: "batch"} for n in names}
    for n in ("vl_embs", "backbone_attention_mask", "image_mask"):
        dyn[n] = {0: "batch", 1: "vl_len"}
    dyn["velocity"] = {0: "batch"}
    with torch.no_grad():
        ref = model(**inputs)
        torch.onnx.export(model, tuple(inputs.values()), str(out), input_names=names, output_names=["velocity"],
                          dynamic_axes=dyn, opset_version=17, do_constant_folding=True, dynamo=False)
    check(out, inputs, ref)


def check(path, inputs, ref):
    """onnx.checker, then ONNX Runtime against torch on the export's inputs."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path), full_check=True)  # by path: the full model is past 2 GB
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    err = float(np.abs(got - ref.numpy()).max())
    print(f"{path}: {path.stat().st_size} bytes, ORT vs torch max abs err {err:.2e}")
    assert err < 1e-4, err


if __name__ == "__main__":
    main()
