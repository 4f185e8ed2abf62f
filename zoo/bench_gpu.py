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

Special cases (the Case of each model, zoo/gpu_cases.py): faster_rcnn* take a list of one image and give data-dependent
detections: matched by label and IoU >= 0.5 instead of a cosine (and no batch axis); yolov8n's export
has a static batch (batch 1 only); gesture_qat is a Q/DQ model (explicit INT8: its "fp32" engine is
already int8, the INT8 cell is --int8 --fp16 without calibration); streaming_encoder's caches are
inputs ([L, B, ...], batch on axis 1); qwen3_decoder runs its 0.6b configuration (Qwen3-8B, the script's
"full", is 33 GB of FP32 weights: not a quick run) as one decode step after 255 cached tokens; CLIP's
two towers get B images and B texts.

Device time (the GPU machine: calls of at most 10 minutes). The per-model estimates printed at the
start (ESTIMATE_S) are the 2026-11-23 runs' seconds (the calls that measured each model); each row's
"seconds" says what a run took. A device call (10 minutes) holds about 450 s of models: groups whose
ESTIMATE_S add up to that, each under `--time-budget 450` (no model or cell starts after it; those are
recorded as not run), torch.compile in FP16 only (a compile costs 10-50 s; FP16 is the comparison the docs
show) and `--duration 0.3`; the whole zoo takes about six calls, e.g.
    python3 zoo/bench_gpu.py --out "$OUT" --time-budget 450 --duration 0.3 --compile-precisions fp16 \\
        --models resnet50,vit_b_16,yolov8n
    ... --models clip,faster_rcnn,faster_rcnn_opset11 / whisper_encoder,resnet18,gesture_qat,vit_b_16_opset17 /
        qwen3_decoder / streaming_encoder,faster_rcnn / groot_dit / vlm_backbone
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
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
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
              "whisper_encoder": 100, "vit_b_16_opset17": 110, "faster_rcnn": 80, "faster_rcnn_opset11": 60,
              "qwen3_decoder": 365, "streaming_encoder": 250, "groot_dit": 285, "vlm_backbone": 300}


from gpu_cases import CASES, Case, zoo_spec, make_feeds  # noqa: E402  (the per-model cases)


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
            if prec in a.profile_list:
                # a per-layer table (kiln bench --profile: each layer timed apart, so no CUDA graph) beside the JSON
                pdir = Path(a.out) / "profiles"
                pdir.mkdir(exist_ok=True)
                try:
                    p = subprocess.run([str(x) for x in [kiln, "bench", eng, "--inputs", xin, "--iterations", 20,
                                                         "--duration", 0, "--warmup", a.warmup_ms, "--profile"]],
                                       capture_output=True, text=True, timeout=budget.timeout())
                    (pdir / f"{row['model']}_b{bs}_{prec}.txt").write_text(p.stdout + p.stderr)
                except subprocess.TimeoutExpired:
                    row[f"kiln_{prec}_profile_error"] = "kiln bench --profile: stopped (time budget)"
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
            row["fp32_cosine_bound"] = zoo_spec(name).get("fp32_cosine", 0.99999)
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
    spec = zoo_spec(name)
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
    mixed = len({r.get("kiln_commit", doc["kiln_commit"]) for r in doc["models"]}) > 1
    if mixed:
        head += " kiln commit |"
    lines = [f"{doc['device']}, torch {doc['torch']}, kiln {doc['kiln_commit']}, {doc['date']}, size {doc['size']}. "
             + ("kiln columns: the engine alone (--no-data-transfers --cuda-graph, as torch is timed, tensors on the GPU); "
                "e2e: from host memory, copies included. " if cuda else "kiln CPU engines (end to end). ")
             + "Medians in ms; errors in the JSON.", "", head, "|" + "---|" * (15 if mixed else 14)]
    tail = (lambda r: f" {str(r.get('kiln_commit', doc['kiln_commit']))[:10]} |") if mixed else (lambda r: "")
    for r in doc["models"]:
        if "batch" not in r:
            lines.append(f"| {r['model']} | - | {r.get('error', '')[:120]} |" + " |" * 11 + tail(r))
            continue
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['batch']} | {r['error'][:120]} |" + " |" * 11 + tail(r))
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
                                 "/".join(fmt(r.get(f"kiln_{p}_build_s"), "{:.1f}") for p in PRECISIONS)]) + " |" + tail(r))
    return "\n".join(lines) + "\n"


def merge(docs: list[dict]) -> dict:
    """Runs on the same device (one per device call) into one document: a later run's rows replace an earlier
    run's rows of the same model and batch. Each row keeps the kiln commit it was measured with (runs of several commits:
    the table then has a commit column)."""
    out = copy.deepcopy(docs[0])
    for r in out["models"]:
        r.setdefault("kiln_commit", out["kiln_commit"])
    for d in docs[1:]:
        for k in ("device", "device_kind", "size"):
            if d[k] != out[k]:
                raise SystemExit(f"cannot merge runs with different {k}: {out[k]!r} vs {d[k]!r}")
        names = {(r["model"], r["batch"]) for r in d["models"]}
        out["models"] = [r for r in out["models"] if (r["model"], r["batch"]) not in names] + \
            [dict(r, kiln_commit=r.get("kiln_commit", d["kiln_commit"])) for r in d["models"]]
        out["date"] = max(out["date"], d["date"])
    commits = sorted({r["kiln_commit"] for r in out["models"]})
    out["kiln_commit"] = commits[0] if len(commits) == 1 else ", ".join(c[:10] for c in commits)
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
    ap.add_argument("--profile", default="", metavar="PRECS",
                    help="also write kiln bench --profile tables for these precisions (e.g. fp16,int8) to OUT/profiles/")
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
    a.profile_list = [p for p in a.profile.split(",") if p]
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
