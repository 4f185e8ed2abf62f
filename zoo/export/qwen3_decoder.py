"""qwen3_decoder.py — exports a Qwen3-style decoder LLM with explicit KV-cache inputs and outputs
(seed 001: Qwen3 served through an engine builder with a KV cache) to ONNX, random weights.

The architecture is written here in plain torch from Qwen3's public description (the transformers
Qwen3 model card and config): token embedding; per layer RMSNorm → attention (q/k/v projections
without bias, RMSNorm over each head's q and k — Qwen3's q_norm/k_norm —, rotary embeddings at
the given positions, grouped-query attention, causal over past + new keys) → residual → RMSNorm →
SwiGLU MLP → residual; final RMSNorm; lm_head (untied in the tiny model and in Qwen3-8B, tied in Qwen3-0.6B).
Written by hand rather than exported from transformers' Qwen3ForCausalLM because its cache object
does not export as plain tensors; the export checks this module against Qwen3ForCausalLM loaded
with the same weights when transformers is installed (it is in /tmp/tvenv: pip install transformers).

Graph inputs and outputs (B batch, S new tokens, P past tokens, L layers):
    input_ids [B,S] int64, position_ids [B,S] int64,
    past_key_i / past_value_i [B, kv_heads, P, head_dim] float32 for i < L     (P may be 0)
    logits [B,S,vocab] float32, present_key_i / present_value_i [B, kv_heads, P+S, head_dim]
The causal mask is built from the shapes: new token s (absolute index P+s) sees keys 0..P+s.
No padding mask (one sequence per batch row, all of the same length).

    /tmp/tvenv/bin/python zoo/export/qwen3_decoder.py --size tiny --out zoo/models
    /tmp/tvenv/bin/python zoo/export/qwen3_decoder.py --size full --out /data/zoo   # Qwen3-8B shape
    /tmp/tvenv/bin/python zoo/export/qwen3_decoder.py --size 0.6b --out /data/zoo   # Qwen3-0.6B shape

The tiny model's weights live inside the .onnx; the big ones are written with their weights in
one external data file beside it (qwen3_decoder.onnx.data), past protobuf's 2 GB limit. Memory:
0.6b took 5 GB of RAM and 5 minutes on 2 busy cores; full (Qwen3-8B, 33 GB of FP32 weights) should
need about 75 GB (the peak is about 2.2 times the weights)."""
from __future__ import annotations

import argparse
import gc
import json
import math
import tempfile
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NAME = "qwen3_decoder"
SEED = 1001


@dataclass
class Config:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    rope_theta: float = 1_000_000.0
    eps: float = 1e-6
    tied: bool = True


CONFIGS = {
    # Untied: with random weights a tied lm_head scores the current token's own embedding highest,
    # and greedy decoding then repeats one token forever, which would test the KV cache poorly.
    "tiny": Config(vocab=256, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, intermediate=128, tied=False),
    # Qwen3-8B, the model seed 001 deploys (its published config: untied lm_head).
    "full": Config(vocab=151936, hidden=4096, layers=36, heads=32, kv_heads=8, head_dim=128, intermediate=12288,
                   tied=False),
    # Qwen3-0.6B (tied), a real-size model that exports on a small machine.
    "0.6b": Config(vocab=151936, hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128, intermediate=3072),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.hidden, c.heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.heads * c.head_dim, c.hidden, bias=False)
        self.q_norm = RMSNorm(c.head_dim, c.eps)
        self.k_norm = RMSNorm(c.head_dim, c.eps)

    def forward(self, x, cos, sin, past_k, past_v):
        c = self.c
        b, s, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, s, c.heads, c.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, s, c.kv_heads, c.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, s, c.kv_heads, c.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin           # cos, sin: [B, 1, S, head_dim]
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)             # [B, kv_heads, P+S, head_dim]
        v = torch.cat([past_v, v], dim=2)
        group = c.heads // c.kv_heads
        kk = k.repeat_interleave(group, dim=1)        # GQA: query head h reads kv head h // group
        vv = v.repeat_interleave(group, dim=1)
        scores = torch.matmul(q, kk.transpose(2, 3)) / math.sqrt(c.head_dim)
        p, t = past_k.shape[2], k.shape[2]
        q_pos = torch.arange(s, device=x.device) + p  # absolute index of each new token
        allowed = torch.arange(t, device=x.device)[None, :] <= q_pos[:, None]   # [S, P+S]
        scores = scores.masked_fill(~allowed, float("-inf"))
        out = torch.matmul(F.softmax(scores, dim=-1), vv)
        out = out.transpose(1, 2).reshape(b, s, c.heads * c.head_dim)
        return self.o_proj(out), k, v


class MLP(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.up_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.down_proj = nn.Linear(c.intermediate, c.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden, c.eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden, c.eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, past_k, past_v):
        a, k, v = self.self_attn(self.input_layernorm(x), cos, sin, past_k, past_v)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), k, v


class Qwen3Decoder(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab, c.hidden)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden, c.eps)
        self.lm_head = nn.Linear(c.hidden, c.vocab, bias=False)
        if c.tied:
            self.lm_head.weight = self.embed_tokens.weight
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, input_ids, position_ids, *past):
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :]   # [B, S, head_dim/2]
        emb = torch.cat([freqs, freqs], dim=-1)[:, None]                       # [B, 1, S, head_dim]
        cos, sin = emb.cos(), emb.sin()
        x = self.embed_tokens(input_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, past[2 * i], past[2 * i + 1])
            presents += [k, v]
        return (self.lm_head(self.norm(x)), *presents)


def make_model(c: Config) -> Qwen3Decoder:
    torch.manual_seed(SEED)
    m = Qwen3Decoder(c).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))    # norms away from 1 so their weights matter
            elif name == "embed_tokens.weight":
                p.normal_()
            elif name == "lm_head.weight":                  # untied: wide logits, clear greedy choices
                p.copy_(torch.randn_like(p) * 4.0 / math.sqrt(p.shape[-1]))
            else:                                           # projections: small next to the residual
                p.copy_(torch.randn_like(p) * 0.5 / math.sqrt(p.shape[-1]))
    return m


def io_names(c: Config):
    past = [f"past_{kv}_{i}" for i in range(c.layers) for kv in ("key", "value")]
    present = [f"present_{kv}_{i}" for i in range(c.layers) for kv in ("key", "value")]
    return ["input_ids", "position_ids"] + past, ["logits"] + present


def dummy_inputs(c: Config, b: int, s: int, p: int, gen: torch.Generator):
    ids = torch.randint(0, c.vocab, (b, s), generator=gen)
    pos = torch.arange(p, p + s)[None].expand(b, s).contiguous()
    past = [torch.randn(b, c.kv_heads, p, c.head_dim, generator=gen) for _ in range(2 * c.layers)]
    return (ids, pos, *past)


def check_against_transformers(m: Qwen3Decoder, c: Config) -> str:
    """Loads the same weights into transformers' Qwen3ForCausalLM; compares a prefill and a
    cached decode step. Returns a line for the log; raises if they differ."""
    try:
        from transformers import Qwen3Config, Qwen3ForCausalLM
    except ImportError:
        return "transformers not installed: Qwen3ForCausalLM cross-check skipped"
    hf = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=c.vocab, hidden_size=c.hidden, num_hidden_layers=c.layers, num_attention_heads=c.heads,
        num_key_value_heads=c.kv_heads, head_dim=c.head_dim, intermediate_size=c.intermediate,
        rope_theta=c.rope_theta, rms_norm_eps=c.eps, tie_word_embeddings=c.tied, attention_bias=False,
        max_position_embeddings=4096, attn_implementation="eager")).eval()
    ours = {k: v for k, v in m.state_dict().items()}
    theirs = hf.state_dict()
    mapped = {("model." + k if not k.startswith("lm_head") else k): v for k, v in ours.items()}
    missing = set(theirs) - set(mapped)
    assert not missing, f"weights transformers expects that this model lacks: {sorted(missing)[:5]}"
    hf.load_state_dict(mapped, strict=True)
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, c.vocab, (1, 9), generator=gen)
    with torch.no_grad():
        full = hf(ids).logits
        pre = hf(ids[:, :6], use_cache=True)
        step = hf(ids[:, 6:], past_key_values=pre.past_key_values, use_cache=True).logits
        empty = [torch.zeros(1, c.kv_heads, 0, c.head_dim) for _ in range(2 * c.layers)]
        o_full = m(ids, torch.arange(9)[None], *empty)
        o_pre = m(ids[:, :6], torch.arange(6)[None], *empty)
        o_step = m(ids[:, 6:], torch.arange(6, 9)[None], *o_pre[1:])[0]
    e1 = (o_full[0] - full).abs().max().item()
    e2 = (o_step - step).abs().max().item()
    assert e1 < 1e-4 and e2 < 1e-4, f"differs from Qwen3ForCausalLM: full {e1:.3g}, cached step {e2:.3g}"
    return f"matches transformers Qwen3ForCausalLM: max abs err {e1:.2e} (9 tokens), {e2:.2e} (3 tokens after 6 cached)"


def export(c: Config, out: Path) -> None:
    # The architecture is checked against transformers at the tiny config (cheap at any --size).
    tiny = Config(**{**asdict(CONFIGS["tiny"]), "tied": c.tied})
    print(check_against_transformers(make_model(tiny), tiny))
    m = make_model(c)
    cases = torch_cases(m, c)
    ins, outs = io_names(c)
    # Traced with P > 0 and S > 1 so that neither size is specialised into the graph.
    args = dummy_inputs(c, 1, 5, 3, torch.Generator().manual_seed(11))
    axes = {"input_ids": {0: "batch", 1: "seq"}, "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    for n in ins[2:]:
        axes[n] = {0: "batch", 2: "past"}
    for n in outs[1:]:
        axes[n] = {0: "batch", 2: "total"}
    path = out / f"{NAME}.onnx"
    import onnx
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        # torch writes weights past 2 GB as one file per tensor beside its output: a scratch folder
        torch.onnx.export(m, args, f"{tmp}/{NAME}.onnx", dynamo=False, opset_version=17, do_constant_folding=True,
                          input_names=ins, output_names=outs, dynamic_axes=axes)
        del m  # the full model's weights once in memory at a time, not twice
        gc.collect()
        model = onnx.load(f"{tmp}/{NAME}.onnx")
    model.producer_name, model.producer_version = "kiln zoo/export/qwen3_decoder.py", "1"
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    if weight_bytes > 1 << 30:  # past protobuf's 2 GB with the graph: external data in one file
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data")
        del model
        onnx.checker.check_model(str(path))
    else:
        onnx.save(model, str(path))
        onnx.checker.check_model(model)
        del model
    gc.collect()
    check_with_ort(cases, c, path)


def torch_cases(m: Qwen3Decoder, c: Config):
    """Inputs at several (S, P), P = 0 included, and torch's outputs for them."""
    gen = torch.Generator().manual_seed(12)
    cases = []
    for s, p in [(7, 0), (1, 7), (4, 9), (1, 1)]:
        args = dummy_inputs(c, 1, s, p, gen)
        with torch.no_grad():
            cases.append((s, p, [a.numpy() for a in args], [o.numpy() for o in m(*args)]))
    return cases


def check_with_ort(cases, c: Config, path: Path) -> None:
    """Runs ONNX Runtime on the export at torch_cases' inputs against torch's outputs."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ins, outs = io_names(c)
    for s, p, args, want in cases:
        got = sess.run(outs, dict(zip(ins, args)))
        err = max(float(np.abs(g - w).max() / max(1.0, np.abs(w).max())) for g, w in zip(got, want))
        assert err < 1e-4, f"ONNX Runtime differs from torch at S={s} P={p}: max relative err {err:.3g}"
        print(f"ORT vs torch at S={s} P={p}: max abs err relative to the largest output {err:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(CONFIGS), default="tiny")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    c = CONFIGS[a.size]
    print(f"{NAME} ({a.size}): {json.dumps(asdict(c))}")
    export(c, a.out)
    print(f"wrote {a.out / (NAME + '.onnx')}")


if __name__ == "__main__":
    main()
