"""GPU benchmark: kiln's CUDA engines (FP32, FP16, INT8) next to PyTorch eager and torch.compile,
measured in the same run on the same GPU, for ResNet-50 and ViT-B/16 (torchvision definitions,
random weights from a fixed seed) at batch 1 and 32.

For each model and batch it exports ONNX once (dynamic batch), builds one kiln engine per
precision at that batch, times it with `kiln bench` (median of many runs after warm-up; the
engine's GPU compute time from CUDA events is reported next to the end-to-end latency, which
also copies inputs and outputs over PCIe), times torch in eager mode and compiled
(torch.compile, default mode) in fp32 and fp16 with CUDA events, and checks kiln's outputs
against torch's (cosine). FLOPs come from torch's flop counter; the matrix peak is measured here
with large torch matmuls. Writes OUT/bench_<model>.json and a markdown table to stdout.

Run on the GPU machine (scripts/gpu_check.sh bench): python3 bench/gpu_bench.py --out DIR
    [--models resnet50,vit_b_16] [--batches 1,32] [--iterations 200]"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "zoo"))
from bench_gpu import kiln_bin, kiln_commit, sh, timer  # noqa: E402  (the zoo benchmark's kiln runner and timer)

KILN_TIMEOUT = 900  # seconds for one kiln command


def cuda_time(fn, iters, warmup=20):
    """Median ms of `iters` calls timed with CUDA events, after warm-up (zoo/bench_gpu.py's timer)."""
    return timer("cuda", fn, iters, 0.0, warmup)


def matrix_peaks():
    """Measured dense matmul rates (TFLOP/s) of this GPU: the ceilings to compare against."""
    import torch
    n = 8192
    out = {}
    for name, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32), ("tf32", "tf32")):
        torch.backends.cuda.matmul.allow_tf32 = dt == "tf32"
        t = torch.float32 if dt == "tf32" else dt
        a = torch.randn(n, n, device="cuda", dtype=t)
        b = torch.randn(n, n, device="cuda", dtype=t)
        ms = cuda_time(lambda: a @ b, 10, 3)
        out[name] = 2 * n ** 3 / ms / 1e9
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a = torch.randint(-128, 127, (n, n), device="cuda", dtype=torch.int8)
        b = torch.randint(-128, 127, (n, n), device="cuda", dtype=torch.int8).t().contiguous().t()
        ms = cuda_time(lambda: torch._int_mm(a, b), 10, 3)
        out["int8"] = 2 * n ** 3 / ms / 1e9
    except Exception as e:  # noqa: BLE001 - report, not fail
        out["int8_error"] = str(e)[:200]
    return out


def make_model(name):
    import torch
    import torchvision
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)(weights=None).eval()
    # torchvision starts some tensors at zero for fine-tuning (ViT's classifier head and class
    # token): every logit would be 0 and any engine would "match". Random instead.
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0.0, p.shape[-1] ** -0.5)
    return m.cuda()


def export(model, x, path):
    """ONNX with a dynamic batch: opset 23 through the dynamo exporter (attention written as the
    ONNX Attention op, which kiln fuses), else opset 17 through the TorchScript exporter. Returns
    the opset used."""
    import copy
    import onnx
    import torch
    cpu = copy.deepcopy(model).cpu().float().eval()
    xx = torch.randn(2, *x.shape[1:])  # batch 2: torch.export specialises dims of size 1
    kw = dict(input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    with torch.enable_grad():  # keeps MultiheadAttention off its fused fast path, which no exporter knows
        try:
            prog = torch.onnx.export(cpu, (xx,), opset_version=23, dynamo=True, optimize=True, external_data=False, **kw)
            onnx.save(prog.model_proto, str(path))
            return 23
        except Exception as e:  # noqa: BLE001
            print(f"dynamo export failed ({type(e).__name__}: {str(e)[:200]}); TorchScript at opset 17", flush=True)
            torch.onnx.export(cpu, (xx,), str(path), opset_version=17, dynamo=False, **kw)
            return 17


def flops(model, x):
    from torch.utils.flop_counter import FlopCounterMode
    import torch
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops()


def cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def bench_model(name, batches, iters, out_dir, work, with_torch=True, profile=False):
    import torch
    torch.backends.cudnn.benchmark = True
    model = make_model(name)
    rows = []
    onnx_path = work / f"{name}.onnx"
    x1 = torch.randn(1, 3, 224, 224, device="cuda")
    opset = export(model, x1, onnx_path)
    import onnx
    ops = collections.Counter(n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)
    calib = work / f"{name}_calib.npz"
    rng = np.random.default_rng(1)
    np.savez(calib, x=rng.standard_normal((4, 3, 224, 224)).astype(np.float32))
    for bs in batches:
        x = torch.randn(bs, 3, 224, 224, device="cuda", generator=torch.Generator("cuda").manual_seed(bs))
        xin = work / f"x{bs}.npz"
        np.savez(xin, x=x.cpu().numpy())
        f = flops(model, x)
        torch.backends.cudnn.allow_tf32 = False  # the reference in true fp32
        with torch.no_grad():
            ref = model(x).float().cpu().numpy()
        torch.backends.cudnn.allow_tf32 = True
        row = {"model": name, "batch": bs, "gflops": f / 1e9, "opset": opset, "onnx_attention_nodes": ops.get("Attention", 0)}
        # kiln engines at this batch
        for prec, flags in (("fp32", []), ("tf32", ["--tf32"]), ("fp16", ["--fp16"]),
                            ("int8", ["--int8", "--fp16", "--calib", calib, "--calib-max", "4"])):
            eng = work / f"{name}_{prec}_{bs}.kiln"
            try:
                tb = sh([kiln_bin(), "build", onnx_path, "-o", eng, "--device", "cuda", "--shapes", f"x:{bs}x3x224x224",
                            "--timing-cache", work / "timing.cache"] + flags, KILN_TIMEOUT)
                row[f"kiln_{prec}_build_s"] = tb
                # end to end from host memory (inputs copied in, outputs out), then the engine alone:
                # inputs and outputs left on the device and the run replayed as a CUDA graph, which is
                # how torch is timed below (tensors already on the GPU)
                for tag, extra in (("", []), ("_graph", ["--no-data-transfers", "--cuda-graph"])):
                    rep = work / f"rep_{prec}_{bs}{tag}.json"
                    sh([kiln_bin(), "bench", eng, "--inputs", xin, "--iterations", iters, "--warmup", 500,
                        "--duration", 0, "--json", rep] + extra, KILN_TIMEOUT)
                    summ = json.loads(rep.read_text())["summary"]
                    row[f"kiln_{prec}{tag}_ms"] = summ["latency_ms"]["median"]
                    row[f"kiln_{prec}{tag}_compute_ms"] = summ["compute_ms"]["median"]
                    if not tag:
                        row[f"kiln_{prec}_h2d_ms"] = summ["h2d_ms"]["median"]
                        row[f"kiln_{prec}_d2h_ms"] = summ["d2h_ms"]["median"]
                if profile:  # per-layer CUDA events: where the time goes, summed by op
                    rep = work / f"prof_{prec}_{bs}.json"
                    sh([kiln_bin(), "bench", eng, "--inputs", xin, "--iterations", 20, "--duration", 0,
                        "--no-data-transfers", "--profile", "--json", rep], KILN_TIMEOUT)
                    layers = json.loads(rep.read_text())["profile"]["layers"]
                    by_op = collections.Counter()
                    for l in layers:
                        by_op[l["op"]] += l["avg_ms"]
                    row[f"kiln_{prec}_profile_by_op_ms"] = {k: round(v, 4) for k, v in by_op.most_common(12)}
                    row[f"kiln_{prec}_profile_top"] = [(l["name"], l["op"], round(l["avg_ms"], 4))
                                                       for l in sorted(layers, key=lambda l: -l["avg_ms"])[:8]]
                outp = work / f"out_{prec}_{bs}.npz"
                sh([kiln_bin(), "run", eng, "--inputs", xin, "--output", outp], KILN_TIMEOUT)
                row[f"kiln_{prec}_cosine"] = cosine(np.load(outp)["y"], ref)
            except Exception as e:  # noqa: BLE001
                row[f"kiln_{prec}_error"] = str(e)[:600]
        print(json.dumps(row), flush=True)
        (out_dir / f"bench_{name}.json").write_text(json.dumps(rows + [row], indent=1))  # kept if stopped early
        if not with_torch:
            rows.append(row)
            continue
        # torch eager and compiled, fp32 (cuDNN may use TF32 for convolutions, torch's default) and fp16
        for prec, dt in (("fp32", torch.float32), ("fp16", torch.float16)):
            m = model.to(dt)
            xx = x.to(dt)
            with torch.no_grad():
                row[f"torch_eager_{prec}_ms"] = cuda_time(lambda: m(xx), iters)
                try:
                    t0 = time.monotonic()
                    cm = torch.compile(m)
                    cm(xx)
                    row[f"torch_compile_{prec}_compile_s"] = time.monotonic() - t0
                    row[f"torch_compile_{prec}_ms"] = cuda_time(lambda: cm(xx), iters)
                except Exception as e:  # noqa: BLE001
                    row[f"torch_compile_{prec}_error"] = str(e)[:300]
            model = model.float()
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out_dir / f"bench_{name}.json").write_text(json.dumps(rows, indent=1))
    return rows


def _ms(r, key):
    x = r.get(key + "_ms")
    return f"{x:.3f}" if isinstance(x, (int, float)) else ("err" if key + "_error" in r else "-")


def _ratio(r, a, b):
    x, y = r.get(a + "_ms"), r.get(b + "_ms")
    return f"{x / y:.2f}" if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y else "-"


def _tflops(r, key, peak):
    ms = r.get(key + "_ms")
    if not isinstance(ms, (int, float)) or not ms or not peak:
        return "-"
    tf = r["gflops"] / ms
    return f"{tf:.1f} ({100 * tf / peak:.0f}%)"


def report(rows, meta):
    """The markdown tables of a run (also made from saved JSON files: --report-from DIR)."""
    peaks = meta.get("peak_tflops", {})
    out = [f"GPU: {meta.get('device')}; torch {meta.get('torch')}; kiln commit {str(meta.get('commit'))[:10]}; "
           f"date {meta.get('date')}.",
           "",
           "Latency, median ms. kiln *graph*: inputs and outputs left on the device and the run replayed as a CUDA "
           "graph (`kiln bench --no-data-transfers --cuda-graph`), which is how torch is timed (tensors on the GPU). "
           "kiln *e2e*: from host memory, the PCIe copies and per-launch enqueue included. torch fp32 lets cuDNN use "
           "TF32 for convolutions (its default); kiln FP32 is exact FP32, kiln TF32 (`--tf32`) lets cuBLASLt and cuDNN use TF32.",
           "",
           "| model | batch | GFLOP | kiln FP32 graph | kiln TF32 graph | kiln FP16 graph | kiln INT8 graph | kiln FP32 e2e "
           "| kiln FP16 e2e | torch eager FP32 | torch.compile FP32 | torch eager FP16 | torch.compile FP16 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [_ms(r, k) for k in ("kiln_fp32_graph", "kiln_tf32_graph", "kiln_fp16_graph", "kiln_int8_graph", "kiln_fp32", "kiln_fp16",
                                     "torch_eager_fp32", "torch_compile_fp32", "torch_eager_fp16", "torch_compile_fp16")]
        out.append(f"| {r['model']} | {r['batch']} | {r['gflops']:.1f} | " + " | ".join(cells) + " |")
    out += ["",
            "Ratios (kiln graph / torch; below 1 kiln is faster), achieved TFLOP/s (share of the measured matmul peak: "
            f"FP32 {peaks.get('fp32', 0):.0f}, FP16 {peaks.get('fp16', 0):.0f}, INT8 {peaks.get('int8', 0):.0f} TOPS) "
            "and output cosine against torch FP32 (TF32 off):",
            "",
            "| model | batch | FP32 / compile FP32 | TF32 / compile FP32 | FP16 / compile FP16 | FP16 / eager FP16 | FP32 TFLOP/s "
            "| FP16 TFLOP/s | INT8 TOPS | cosine FP32 / TF32 / FP16 / INT8 | build s FP32 / FP16 / INT8 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        cos = " / ".join(f"{r[k]:.7f}" if isinstance(r.get(k), float) else "-"
                         for k in ("kiln_fp32_cosine", "kiln_tf32_cosine", "kiln_fp16_cosine", "kiln_int8_cosine"))
        bld = " / ".join(f"{r[k]:.1f}" if isinstance(r.get(k), float) else "-"
                         for k in ("kiln_fp32_build_s", "kiln_fp16_build_s", "kiln_int8_build_s"))
        out.append(f"| {r['model']} | {r['batch']} | {_ratio(r, 'kiln_fp32_graph', 'torch_compile_fp32')} | "
                   f"{_ratio(r, 'kiln_tf32_graph', 'torch_compile_fp32')} | {_ratio(r, 'kiln_fp16_graph', 'torch_compile_fp16')} | {_ratio(r, 'kiln_fp16_graph', 'torch_eager_fp16')} | "
                   f"{_tflops(r, 'kiln_fp32_graph', peaks.get('fp32'))} | {_tflops(r, 'kiln_fp16_graph', peaks.get('fp16'))} | "
                   f"{_tflops(r, 'kiln_int8_graph', peaks.get('int8'))} | {cos} | {bld} |")
    errs = [(r["model"], r["batch"], k, v) for r in rows for k, v in r.items() if k.endswith("_error")]
    if errs:
        out += ["", "Errors:"] + [f"- {m} batch {b} {k}: {v[:300]}" for m, b, k, v in errs]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/kiln-gpu")
    ap.add_argument("--models", default="resnet50,vit_b_16")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--no-torch", action="store_true", help="kiln only (no PyTorch timings)")
    ap.add_argument("--profile", action="store_true", help="also kiln's per-layer times, summed by op")
    ap.add_argument("--report-from", metavar="DIR", help="print the report of a finished run's bench_*.json files, run nothing")
    a = ap.parse_args()
    if a.report_from:
        d = Path(a.report_from)
        rows = [r for f in sorted(d.glob("bench_*.json")) if f.name != "bench_meta.json" for r in json.loads(f.read_text())]
        print(report(rows, json.loads((d / "bench_meta.json").read_text())))
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch
    dev = torch.cuda.get_device_name(0)
    peaks = matrix_peaks()
    print(json.dumps({"device": dev, "torch": torch.__version__, "peak_tflops": peaks}), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for name in a.models.split(","):
            try:
                rows += bench_model(name, [int(b) for b in a.batches.split(",")], a.iterations, out, Path(td),
                                    with_torch=not a.no_torch, profile=a.profile)
            except Exception as e:  # noqa: BLE001
                print(f"{name}: {type(e).__name__}: {e}", flush=True)
    meta = {"device": dev, "torch": torch.__version__, "peak_tflops": peaks,
            "date": time.strftime("%Y-%m-%d"), "commit": kiln_commit()}
    (out / "bench_meta.json").write_text(json.dumps(meta, indent=1))
    print(report(rows, meta))
    print(f"peaks (TFLOP/s, measured 8192^3 matmuls): " + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}"
                                                              for k, v in peaks.items()))


if __name__ == "__main__":
    sys.exit(main())
