"""groot_dit (seed 003) beyond the harness: the deployment builds the DiT action head once for
vision-language sequences of 1..512 tokens, in INT8 with FP16 fallback.

* One engine with a dynamic profile (batch 1..2, vl_len 1..512, opt 64) runs at 1, 37 and 512
  tokens against ONNX Runtime (cosine >= 0.99999); a length past the profile is refused.
* An INT8 + FP16 engine (entropy calibration at 64 tokens, the seed's method) on the same
  profile: the products with weights are int8, LayerNorm, Softmax and SiLU stay float (fp16; the
  timestep sinusoid fp32). Its velocity against ONNX Runtime's FP32: cosine >= 0.98 at 37 and 512
  tokens; at 1 token it is reported only (0.90-0.99 on random draws, see the test), and the same
  engine with the two cross-attention output projections kept fp32 must reach 0.99 everywhere."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kilnrun  # noqa: E402
import test_zoo as zoo  # noqa: E402

SPEC = zoo.load_spec(zoo.ZOO / "groot_dit.json")
VL = ("vl_embs", "backbone_attention_mask", "image_mask")
LENGTHS = ((1, 1), (2, 37), (2, 512))  # (batch, vl_len)


def dims_at(name: str, batch: int, vl_len: int) -> list[int]:
    dims = [batch] + SPEC["inputs"][name]["shape"][1:]
    if name in VL:
        dims[1] = vl_len
    return dims


def inputs_at(batch: int, vl_len: int) -> dict[str, np.ndarray]:
    spec = copy.deepcopy(SPEC)
    for name, d in spec["inputs"].items():
        d["shape"] = dims_at(name, batch, vl_len)
    return zoo.make_inputs(spec)


def profile_args() -> list[str]:
    def shapes(batch, vl_len):
        return ",".join(f"{n}:" + "x".join(map(str, dims_at(n, batch, vl_len))) for n in SPEC["inputs"])
    return ["--min-shapes", shapes(1, 1), "--opt-shapes", shapes(2, 64), "--max-shapes", shapes(2, 512)]


def build(tmp_path: Path, name: str, extra: list[str]) -> Path:
    eng = tmp_path / f"{name}.kiln"
    b = kilnrun.run_kiln(["build", SPEC["path"], "-o", eng] + profile_args() + extra, timeout=600)
    assert b.kind == "ok", f"{name} build: {b.message}"
    return eng


def run(eng: Path, feeds, workdir: Path):
    workdir.mkdir()
    r, got = kilnrun.run_model(eng, feeds, workdir)
    assert r.kind == "ok", f"{eng.name} at {feeds['vl_embs'].shape}: {r.message}"
    return got["velocity"]


def test_dynamic_vl_length_fp32_and_int8_fp16(tmp_path):
    fp32 = build(tmp_path, "fp32", [])
    samples = [inputs_at(2, 64) for _ in range(4)]
    kilnrun.save_npz(tmp_path / "calib.npz", {k: np.concatenate([s[k] for s in samples]) for k in samples[0]})
    int8 = ["--int8", "--fp16", "--calib", tmp_path / "calib.npz", "--calib-batch", "2", "--calib-method", "entropy",
            "--calib-cache", tmp_path / "dit.cache"]
    mixed = build(tmp_path, "int8_fp16", int8)
    # Calibrated at 64 tokens, the cross-attention outputs are averages over many keys; over one key
    # they are one value row, past the calibrated range of the output projection's input. The
    # seed's remedy, layer-level precision, on those two layers (the cache is reused):
    keep = [a for blk in (0, 1) for a in ("--layer-precision", f"/blocks.{blk}/xattn/o/MatMul:fp32")]
    mixed_keep = build(tmp_path, "int8_fp16_keep", int8 + keep)
    rows = []
    for batch, vl_len in LENGTHS:
        feeds = inputs_at(batch, vl_len)
        ref = zoo.ort_run(SPEC["path"], feeds)["velocity"]
        got = run(fp32, feeds, tmp_path / f"fp32_{vl_len}")
        got8 = run(mixed, feeds, tmp_path / f"mixed_{vl_len}")
        got8k = run(mixed_keep, feeds, tmp_path / f"keep_{vl_len}")
        rows.append((vl_len, zoo.cosine(got, ref), float(np.abs(got - ref).max()), zoo.cosine(got8, ref),
                     zoo.cosine(got8k, ref)))
    print("\n".join(f"vl_len {n}: FP32 cosine {c:.7f} max err {e:.1e}; INT8+FP16 cosine {c8:.5f}, "
                    f"with the cross-attention outputs in fp32 {c8k:.5f}" for n, c, e, c8, c8k in rows))
    zoo.record({"model": "groot_dit", "extra_result": "dynamic vl_len " + "/".join(str(r[0]) for r in rows) +
                f": FP32 min cosine {min(r[1] for r in rows):.7f}; INT8+FP16 cosine " +
                "/".join(f"{r[3]:.4f}" for r in rows) + " (" + "/".join(f"{r[4]:.4f}" for r in rows) +
                " with 2 layers fp32)"})
    for vl_len, c, _, c8, c8k in rows:
        assert c >= 0.99999, f"vl_len {vl_len}: FP32 cosine {c:.7f}"
        assert c8k >= 0.99, f"vl_len {vl_len}: INT8+FP16 (cross-attention outputs fp32) cosine {c8k:.5f}"
        if vl_len > 1:
            assert c8 >= 0.98, f"vl_len {vl_len}: INT8+FP16 cosine {c8:.5f}"

    feeds = inputs_at(1, 513)
    (tmp_path / "past").mkdir()
    r, _ = kilnrun.run_model(fp32, feeds, tmp_path / "past")
    assert r.kind == "error" and "vl_embs" in r.message, f"vl_len 513 past the profile: {r.describe()}"

    r = kilnrun.run_kiln(["inspect", mixed, "--json"])
    assert r.kind == "ok", r.message
    layers = json.loads(r.stdout)["layers"]
    prec = lambda pred: {l["precision"] for l in layers if pred(l)}  # noqa: E731
    assert prec(lambda l: l["op"] == "MatMulInteger") == {"int8"}
    assert sum(l["op"] == "MatMulInteger" for l in layers) == 33  # every product with weights
    for what, pred in (("LayerNormalization", lambda l: l["op"] == "LayerNormalization"),
                       ("Softmax", lambda l: l["op"] == "Softmax"),
                       ("SiLU", lambda l: l.get("fused_activation") == "SiLU" or l["op"] == "Sigmoid")):
        assert prec(pred) == {"fp16"}, f"{what}: {prec(pred)}"
    assert prec(lambda l: l["op"] in ("Sin", "Cos")) == {"fp32"}
