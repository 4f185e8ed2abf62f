"""Writes docs/models.md from the zoo test results (the JSON lines tests/zoo/ append to
$KILN_ZOO_RESULTS, default build/zoo_results.jsonl): one row per model, the last result of each; the CPU
speed column from the newest zoo/results/cpu_*.json (zoo/bench_cpu.py) and the GPU column and table from
the newest zoo/results/gpu_*.json (zoo/bench_gpu.py on a GPU; files made on the CPU are not used).
    python3 zoo/report.py [RESULTS.jsonl] [--out docs/models.md] [--gpu-results FILE]"""
from __future__ import annotations

import argparse
import json
import sys
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_speed() -> tuple[dict, str]:
    """The newest zoo/results/cpu_<date>.json (zoo/bench_cpu.py): its cells by model, and a line saying where
    they come from."""
    files = sorted((REPO / "zoo" / "results").glob("cpu_*.json"))
    if not files:
        return {}, "CPU speed: not measured yet (zoo/bench_cpu.py)."
    d = json.loads(files[-1].read_text())
    cells = {}
    for r in d["models"]:
        cells[r["model"]] = (f"{r['kiln_ms']:.2f} / {r['ort_ms']:.2f} ({r['ratio']:.2f}x)" if r.get("kiln_ms") is not None
                             else f"fails / {r['ort_ms']:.2f}")
    src = (f"CPU speed: median latency in ms, kiln FP32 engine / ONNX Runtime, {d['threads']} thread (kiln/ORT ratio in parentheses; "
           f"above 1 kiln is slower), from {files[-1].relative_to(REPO)} ({d['machine']['cpu']}, kiln {d['kiln_commit']}).")
    return cells, src


def gpu_results(explicit: str | None = None) -> tuple[dict | None, Path | None]:
    """The newest zoo/results/gpu_<date>.json made on a GPU (or the file given), and its path."""
    files = [Path(explicit)] if explicit else sorted((REPO / "zoo" / "results").glob("gpu_*.json"), reverse=True)
    for f in files:
        d = json.loads(f.read_text())
        if d.get("device_kind") == "cuda" or explicit:
            return d, f
    return None, None


def gpu_speed(d: dict | None, path: Path | None) -> tuple[dict, str]:
    """Cells by model: per batch, kiln FP16 / torch.compile FP16 (ms) and kiln FP32's cosine vs torch FP32."""
    if d is None:
        return {}, "GPU: not measured yet (zoo/bench_gpu.py)."
    cells: dict = {}

    def ms(r, k):
        v = r.get(k)
        if isinstance(v, (int, float)):
            return f"{v:.3f}"
        err = r.get(k.replace("_graph_ms", "_ms").removesuffix("_ms") + "_error", "")
        if "time budget" in err:  # the device call's time ran out before this cell (zoo/bench_gpu.py --time-budget)
            return "not run"
        if err.startswith("not run") or err.startswith("not built"):  # left out on purpose (the JSON says why)
            return "not run"
        return "fails" if err or k.startswith("kiln") else "-"

    for r in d["models"]:
        if "batch" not in r or r.get("error"):
            cells.setdefault(r["model"], []).append(r.get("error", "fails")[:60])
            continue
        det = r.get("kiln_fp32_detections")
        par = (f"{det['matched']}/{det['ref']} detections" if det else
               f"cos {r['kiln_fp32_cosine']:.6f}" if "kiln_fp32_cosine" in r else
               "FP32 not run" if "time budget" in r.get("kiln_fp32_error", "") else "FP32 fails")
        tag = "_graph" if d.get("device_kind") == "cuda" else ""
        cells.setdefault(r["model"], []).append(
            f"b{r['batch']}: {ms(r, f'kiln_fp16{tag}_ms')} / {ms(r, 'torch_compile_fp16_ms')}, {par}")
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    src = (f"GPU: per batch, median ms of kiln's FP16 engine (data on the device, CUDA graph) / torch.compile FP16, and "
           f"kiln FP32's worst-output cosine against torch FP32, from {rel} ({d['device']}, torch {d['torch']}, "
           f"kiln {d['kiln_commit']}, size {d['size']}); every precision and torch eager in the table below.")
    return {k: "; ".join(v) for k, v in cells.items()}, src


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="?", default=str(REPO / "build" / "zoo_results.jsonl"))
    ap.add_argument("--out", default=str(REPO / "docs" / "models.md"))
    ap.add_argument("--gpu-results", help="a zoo/bench_gpu.py JSON instead of the newest zoo/results/gpu_*.json")
    a = ap.parse_args()
    rows = {}
    for line in Path(a.results).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows.setdefault(r["model"], {}).update(r)
    specs = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in (REPO / "zoo" / "models").glob("*.json")}
    speed, speed_src = cpu_speed()
    gdoc, gpath = gpu_results(a.gpu_results)
    gpu, gpu_src = gpu_speed(gdoc, gpath)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = ["# The seed model zoo", "",
           f"Generated by `zoo/report.py` from the zoo tests (tests/zoo/) on {time.strftime('%Y-%m-%d')}, commit {commit},",
           "on the CPU (reference backend and oneDNN kernels). Tiny configurations with random weights (fixed seeds),",
           "exported by zoo/export/. FP32: kiln's engine against ONNX Runtime on fresh random inputs (worst output's",
           "cosine and max abs error). INT8: kiln's INT8 engine against its FP32 engine (cosine). The GPU column comes",
           "from zoo/bench_gpu.py: the real-size models as CUDA engines against PyTorch on the same GPU.", "",
           speed_src, "", gpu_src, "",
           "| model | seeds | exercises | FP32 vs ORT: cosine | max abs err | INT8 vs FP32: cosine | extra check "
           "| CPU ms kiln / ORT (1 thread) | GPU |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(set(rows) | set(specs)):
        r, s = rows.get(name, {}), specs.get(name, {})
        fp32 = (f"{r['fp32_cosine']:.7f}" if "fp32_cosine" in r else (f"fails: {r.get('fp32_message', '')[:80]}" if r.get("fp32") else "not run"))
        err = f"{r['fp32_max_abs_err']:.2e}" if "fp32_max_abs_err" in r else "-"
        i8 = (f"{r['int8_cosine']:.4f}" if "int8_cosine" in r else (f"fails: {r.get('int8_message', '')[:80]}" if r.get("int8") else "-"))
        extra = r.get("extra_result", "-")
        seeds = ", ".join(s.get("seeds", r.get("seeds", [])))
        out.append(f"| {name} | {seeds} | {s.get('exercises', r.get('exercises', ''))} | {fp32} | {err} | {i8} | {extra} | {speed.get(name, '-')} | {gpu.get(name, 'not run')} |")
    if gdoc is not None:
        sys.path.insert(0, str(REPO / "zoo"))
        import bench_gpu  # the table zoo/bench_gpu.py prints, from the same file
        out += ["", f"## GPU: the {'real-size' if gdoc['size'] == 'full' else 'tiny'} models (zoo/bench_gpu.py)", "",
                bench_gpu.table(gdoc).rstrip()]
    Path(a.out).write_text("\n".join(out) + "\n")
    print(f"wrote {a.out} ({len(rows)} models)")


if __name__ == "__main__":
    main()
