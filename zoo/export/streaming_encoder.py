"""Exports a cache-aware streaming FastConformer encoder (seed 002: parakeet-tdt-0.6b-v3's streaming
encoder as deployed with TensorRT) with random weights, written here in torch from the public
description of FastConformer and NeMo's cache-aware streaming (Rekesh et al. 2023, "Fast Conformer";
Noroozi et al. 2023, "Stateful Conformer with cache-based inference for streaming ASR").

    /tmp/tvenv/bin/python zoo/export/streaming_encoder.py --size tiny --out zoo/models
    /tmp/tvenv/bin/python zoo/export/streaming_encoder.py --size full --out /tmp/big   # not for CI

The I/O contract is seed 002's (names, layouts, dtypes):
    audio_signal            [B, 128, T]   float32  log-mel chunk (T = 584..592 in the seed's profiles)
    length                  [B]           int64    valid frames of the chunk
    cache_last_channel      [L, B, C, D]  float32  per layer, the last C attention inputs (after LayerNorm)
    cache_last_time         [L, B, D, K]  float32  per layer, the last K inputs of the depthwise conv
    cache_last_channel_len  [B]           int64    how many of the C cache frames are valid (0 at start)
  ->
    encoder_output              [B, D, V]     float32  the chunk's V = 2 valid output frames
    encoded_lengths             [B]           int64    min(subsampled length, V): 2 for a full chunk
    cache_last_channel_out      [L, B, C, D]
    cache_last_time_out         [L, B, D, K]
    cache_last_channel_len_out  [B]           int64    min(cache_len + encoded_lengths, C): non-decreasing

What one call does (NeMo's cache_aware_stream_step with keep_all_outputs=False):
  1. Subsampling x8 (FastConformer "dw_striding", causal): Conv2d 3x3/2 + ReLU, then twice
     [depthwise Conv2d 3x3/2, pointwise 1x1, ReLU], each with causal padding (2 before, 1 after)
     on time and frequency; then Linear(channels * 17 -> D). T' = floor(T/2)+1 three times (592 ->
     75, 584 -> 74); lengths by the same arithmetic in float (Cast, Div, Floor), as NeMo does.
  2. x * sqrt(D), relative positional encodings (Transformer-XL / NeMo "rel_pos": sinusoids for
     distances C+T'-1 .. -(T'-1), sliced out of a fixed table by the dynamic chunk length).
  3. L Conformer layers: x += FF/2; x += MHSA; x += Conv; x += FF/2; LayerNorm.
     MHSA is relative-position attention (pos_bias_u / pos_bias_v, linear_pos, rel_shift by
     Pad + Reshape + Slice). Queries are the chunk's T' frames; keys and values are
     [cache ; chunk] (C + T' frames) with a mask: a key of the cache counts only when it is one of
     the cache_len valid (right-aligned) frames, a key of the chunk only below its length, and every
     query sees at most C frames to its left (the cache window) and the whole chunk to its right
     (look-ahead). Only the first V frames of the chunk are consumed: they are appended to the
     cache, which is shifted left by V (Concat + Slice); the rest is look-ahead, re-sent in the
     next chunk. The conv module: pointwise D->2D, GLU, padded frames zeroed, depthwise causal conv
     (kernel K+1) over [cache_last_time ; chunk], BatchNorm, SiLU, pointwise; its cache keeps the
     K frames ending at the V-th frame of the chunk.
  4. encoder_output = the first V frames, [B, D, V] (NeMo's channels-first layout).

Sizes: tiny (CI): D 32, 2 layers, 2 heads, cache 16, kernel 5 (K 4), 16 subsampling channels.
full: parakeet-tdt-0.6b-v3's encoder (D 1024, 24 layers, 8 heads, FF 4096, 256 subsampling channels)
with the seed's cache shapes (C 256, K 4; the real model's kernel 9 has 4 frames of left context).
"""
from __future__ import annotations

import argparse
import hashlib
import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = {
    #          D     L   heads  C    kernel  sub_ch
    "tiny": dict(d_model=32, layers=2, heads=2, cache=16, kernel=5, sub_channels=16),
    "full": dict(d_model=1024, layers=24, heads=8, cache=256, kernel=5, sub_channels=256),
}
N_MELS = 128
VALID_OUT = 2       # frames consumed (output, appended to the cache) per chunk: the seed's valid_out_len
MAX_CHUNK_FRAMES = 128  # largest subsampled chunk the positional table covers (T up to ~1016 mel frames)


class CausalDwStridingSubsampling(nn.Module):
    """x8 subsampling: [B, 128, T] log-mel -> [B, T', D], and the lengths."""

    def __init__(self, d_model: int, ch: int):
        super().__init__()
        self.conv0 = nn.Conv2d(1, ch, 3, stride=2)
        self.dw1, self.pw1 = nn.Conv2d(ch, ch, 3, stride=2, groups=ch), nn.Conv2d(ch, ch, 1)
        self.dw2, self.pw2 = nn.Conv2d(ch, ch, 3, stride=2, groups=ch), nn.Conv2d(ch, ch, 1)
        freq = N_MELS
        for _ in range(3):
            freq = freq // 2 + 1
        self.out = nn.Linear(ch * freq, d_model)

    @staticmethod
    def causal(x):
        return F.pad(x, (2, 1, 2, 1))  # (freq before, after, time before, after)

    def forward(self, audio, length):
        x = audio.transpose(1, 2).unsqueeze(1)                   # [B, 1, T, F]
        x = F.relu(self.conv0(self.causal(x)))
        x = F.relu(self.pw1(self.dw1(self.causal(x))))
        x = F.relu(self.pw2(self.dw2(self.causal(x))))
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))     # [B, T', D]
        n = length.to(torch.float32)
        for _ in range(3):  # (n + pads - kernel) / stride + 1, floored: pads 3, kernel 3
            n = torch.floor(n / 2.0 + 1.0)
        return x, n.to(torch.int64)


def sinusoids(positions: torch.Tensor, d: int) -> torch.Tensor:
    inv = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    ang = positions[:, None].float() * inv[None, :]
    pe = torch.zeros(len(positions), d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(ang), torch.cos(ang)
    return pe


class RelPositionMHSA(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.h, self.dk = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.pos = nn.Linear(d, d, bias=False)
        self.pos_bias_u = nn.Parameter(torch.randn(heads, self.dk) * 0.1)
        self.pos_bias_v = nn.Parameter(torch.randn(heads, self.dk) * 0.1)

    @staticmethod
    def rel_shift(x):
        """[B, H, Tq, R] scores by relative-position index -> out[i, j] = x[i, j + Tq - 1 - i]."""
        b, h, tq, r = x.shape
        x = F.pad(x, (1, 0)).reshape(b, h, r + 1, tq)
        return x[:, :, 1:].reshape(b, h, tq, r)

    def forward(self, xq, kv, pos_emb, mask):
        b, tq, _ = xq.shape
        tk = kv.shape[1]
        q = self.q(xq).reshape(b, tq, self.h, self.dk).transpose(1, 2)          # [B, H, Tq, dk]
        k = self.k(kv).reshape(b, tk, self.h, self.dk).transpose(1, 2)          # [B, H, Tk, dk]
        v = self.v(kv).reshape(b, tk, self.h, self.dk).transpose(1, 2)
        p = self.pos(pos_emb).reshape(1, -1, self.h, self.dk).transpose(1, 2)   # [1, H, R, dk]
        ac = torch.matmul(q + self.pos_bias_u[:, None, :], k.transpose(-1, -2))
        bd = self.rel_shift(torch.matmul(q + self.pos_bias_v[:, None, :], p.transpose(-1, -2)))[..., :tk]
        scores = (ac + bd) / math.sqrt(self.dk)
        m = mask[:, None]                                                         # [B, 1, Tq, Tk]
        attn = torch.softmax(scores.masked_fill(m, -10000.0), dim=-1).masked_fill(m, 0.0)
        return self.o(torch.matmul(attn, v).transpose(1, 2).reshape(b, tq, -1))


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int):
        super().__init__()
        self.k = kernel - 1
        self.pw1 = nn.Conv1d(d, 2 * d, 1)
        self.dw = nn.Conv1d(d, d, kernel, groups=d)
        self.bn = nn.BatchNorm1d(d)
        self.pw2 = nn.Conv1d(d, d, 1)

    def forward(self, x, pad, cache):
        x = F.glu(self.pw1(x.transpose(1, 2)), dim=1)         # [B, D, T']
        x = x.masked_fill(pad[:, None, :], 0.0)
        x = torch.cat([cache, x], dim=2)                       # [B, D, K + T']
        cache_next = x[:, :, VALID_OUT:VALID_OUT + self.k]     # the K frames ending at frame V
        x = self.pw2(F.silu(self.bn(self.dw(x))))
        return x.transpose(1, 2), cache_next


class FeedForward(nn.Sequential):
    def __init__(self, d: int):
        super().__init__(nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))


class ConformerLayer(nn.Module):
    def __init__(self, d: int, heads: int, kernel: int, cache: int):
        super().__init__()
        self.cache = cache
        self.ff1, self.ff2 = FeedForward(d), FeedForward(d)
        self.norm_att, self.norm_conv, self.norm_out = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.att = RelPositionMHSA(d, heads)
        self.conv = ConvModule(d, kernel)

    def forward(self, x, pos_emb, att_mask, pad, cache_ch, cache_t):
        x = x + 0.5 * self.ff1(x)
        xn = self.norm_att(x)
        kv = torch.cat([cache_ch, xn], dim=1)                  # [B, C + T', D]
        cache_ch_next = kv[:, VALID_OUT:VALID_OUT + self.cache]  # shift left by V, append V frames
        x = x + self.att(xn, kv, pos_emb, att_mask)
        y, cache_t_next = self.conv(self.norm_conv(x), pad, cache_t)
        x = x + y
        x = x + 0.5 * self.ff2(x)
        return self.norm_out(x), cache_ch_next, cache_t_next


class StreamingEncoder(nn.Module):
    def __init__(self, d_model, layers, heads, cache, kernel, sub_channels):
        super().__init__()
        self.d, self.c = d_model, cache
        self.pre = CausalDwStridingSubsampling(d_model, sub_channels)
        self.rmax = cache + MAX_CHUNK_FRAMES
        # distances rmax, rmax-1, ..., -rmax: index i holds distance rmax - i
        self.register_buffer("pe", sinusoids(torch.arange(self.rmax, -self.rmax - 1, -1), d_model))
        self.layers = nn.ModuleList(ConformerLayer(d_model, heads, kernel, cache) for _ in range(layers))

    def masks(self, t, n, cache_len):
        """att_mask [B, T', C+T'] and pad [B, T'] (True = masked)."""
        c = self.c
        i = torch.arange(t)[None, :, None]                    # query
        j = torch.arange(c + t)[None, None, :]                # key: cache then chunk
        valid_cache = (j < c) & (j >= (c - cache_len)[:, None, None])
        valid_chunk = (j >= c) & ((j - c) < n[:, None, None])
        in_window = j >= i                                    # at most C frames to the left
        valid_query = i < n[:, None, None]
        att_mask = ~((valid_cache | valid_chunk) & in_window & valid_query)
        pad = torch.arange(t)[None, :] >= n[:, None]
        return att_mask, pad

    def forward(self, audio_signal, length, cache_last_channel, cache_last_time, cache_last_channel_len):
        x, n = self.pre(audio_signal, length)
        t = x.shape[1]
        x = x * math.sqrt(self.d)
        pos_emb = self.pe[self.rmax - (self.c + t - 1): self.rmax + t]   # distances C+T'-1 .. -(T'-1)
        att_mask, pad = self.masks(t, n, cache_last_channel_len)
        ch_next, t_next = [], []
        for li, layer in enumerate(self.layers):
            x, cc, ct = layer(x, pos_emb, att_mask, pad, cache_last_channel[li], cache_last_time[li])
            ch_next.append(cc)
            t_next.append(ct)
        encoded_lengths = torch.clamp(n, max=VALID_OUT)
        encoder_output = x[:, :VALID_OUT].transpose(1, 2)
        cache_len_next = torch.clamp(cache_last_channel_len + encoded_lengths, max=self.c)
        return (encoder_output, encoded_lengths, torch.stack(ch_next), torch.stack(t_next), cache_len_next)


INPUTS = ["audio_signal", "length", "cache_last_channel", "cache_last_time", "cache_last_channel_len"]
OUTPUTS = ["encoder_output", "encoded_lengths", "cache_last_channel_out", "cache_last_time_out",
           "cache_last_channel_len_out"]


def build(size: str) -> StreamingEncoder:
    torch.manual_seed(2)
    m = StreamingEncoder(**SIZES[size])
    with torch.no_grad():  # BatchNorm with non-trivial statistics, so folding it is tested
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return m.eval()


def example_inputs(cfg: dict, t: int, rng: np.random.Generator, cache_len: int = 0):
    L, C, D, K = cfg["layers"], cfg["cache"], cfg["d_model"], cfg["kernel"] - 1
    return (torch.from_numpy(rng.standard_normal((1, N_MELS, t)).astype(np.float32)),
            torch.tensor([t], dtype=torch.int64),
            torch.from_numpy(rng.uniform(-1, 1, (L, 1, C, D)).astype(np.float32)),
            torch.from_numpy(rng.uniform(-1, 1, (L, 1, D, K)).astype(np.float32)),
            torch.tensor([cache_len], dtype=torch.int64))


def check_rel_shift():
    """rel_shift against the definition: score(i, j) uses distance (C + i) - j."""
    tq, tk = 5, 9
    x = torch.randn(1, 1, tq, tq + tk - 1)
    got = RelPositionMHSA.rel_shift(x)[..., :tk]
    want = torch.stack([torch.stack([x[0, 0, i, (tk - 1) - ((tk - tq) + i - j)] for j in range(tk)])
                        for i in range(tq)])
    assert torch.equal(got[0, 0], want), "rel_shift does not index by relative distance"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models"))
    a = ap.parse_args()
    check_rel_shift()
    cfg = SIZES[a.size]
    model = build(a.size)
    rng = np.random.default_rng(2)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "streaming_encoder.onnx"
    dyn = {"audio_signal": {0: "B", 2: "T"}, "length": {0: "B"}, "cache_last_channel": {1: "B"},
           "cache_last_time": {1: "B"}, "cache_last_channel_len": {0: "B"},
           "encoder_output": {0: "B"}, "encoded_lengths": {0: "B"}, "cache_last_channel_out": {1: "B"},
           "cache_last_time_out": {1: "B"}, "cache_last_channel_len_out": {0: "B"}}
    with tempfile.TemporaryDirectory() as tmp:  # the exporter splits a >2 GB model into one file per weight
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(model, example_inputs(cfg, 592, rng), str(raw), dynamo=False, opset_version=17,
                          do_constant_folding=True, input_names=INPUTS, output_names=OUTPUTS, dynamic_axes=dyn)
        proto = onnx.load(str(raw))
    proto.producer_name, proto.producer_version = "kiln zoo/export/streaming_encoder.py", a.size
    declare_output_shapes(proto, cfg)
    weights = sum(np.prod(t.dims) * 4 for t in proto.graph.initializer)
    if weights < 1.8e9:  # the tiny model (CI) keeps its weights inside the .onnx
        onnx.save(proto, str(path))
    else:                # full: protobuf's 2 GB limit, so one side file of weights
        onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data")
    onnx.checker.check_model(str(path), full_check=True)
    verify(model, path, cfg, rng)
    print(f"wrote {path} ({path.stat().st_size} bytes, sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:16]})")


def declare_output_shapes(proto, cfg: dict):
    """The exporter leaves the sliced dims symbolic; the contract fixes them (V, C, K)."""
    fixed = {"encoder_output": {2: VALID_OUT}, "cache_last_channel_out": {2: cfg["cache"]},
             "cache_last_time_out": {3: cfg["kernel"] - 1}}
    for out in proto.graph.output:
        for axis, size in fixed.get(out.name, {}).items():
            out.type.tensor_type.shape.dim[axis].dim_value = size


def verify(model, path: Path, cfg: dict, rng):
    """ONNX Runtime against torch: both chunk lengths, a short chunk, a partly filled cache, and a
    few closed-loop steps (each side feeding back its own caches)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for t, cache_len, n in [(592, 0, 592), (584, 7, 584), (592, 16, 301), (584, 3, 9)]:
        ins = list(example_inputs(cfg, t, rng, cache_len))
        ins[1] = torch.tensor([n], dtype=torch.int64)
        with torch.no_grad():
            want = [o.numpy() for o in model(*ins)]
        got = sess.run(OUTPUTS, dict(zip(INPUTS, [i.numpy() for i in ins])))
        for name, w, g in zip(OUTPUTS, want, got):
            assert w.shape == g.shape and w.dtype == g.dtype, f"{name}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
            worst = max(worst, float(np.abs(w.astype(np.float64) - g).max()))
    ins = list(example_inputs(cfg, 592, rng))
    state_t = [i.clone() for i in ins[2:]]
    state_o = [i.numpy() for i in ins[2:]]
    for step in range(12):
        audio = torch.from_numpy(rng.standard_normal((1, N_MELS, 592)).astype(np.float32))
        with torch.no_grad():
            want = model(audio, ins[1], *state_t)
        got = sess.run(OUTPUTS, dict(zip(INPUTS, [audio.numpy(), ins[1].numpy(), *state_o])))
        assert int(want[1][0]) == VALID_OUT and int(want[4][0]) == min(VALID_OUT * (step + 1), cfg["cache"])
        for w, g in zip(want, got):
            worst = max(worst, float(np.abs(w.numpy().astype(np.float64) - g).max()))
        state_t, state_o = list(want[2:]), got[2:]
    assert worst < 1e-3, f"ONNX Runtime differs from torch by {worst}"
    print(f"ONNX Runtime vs torch: max abs err {worst:.2e} (4 single chunks, 12 closed-loop steps)")


if __name__ == "__main__":
    main()
