#!/usr/bin/env python3
"""cpu_vs_ort.py — kiln against ONNX Runtime on this machine's CPU, on the same models and inputs.

For each model: kiln builds a .kiln engine (`kiln build`, into a temporary folder) and ONNX Runtime
opens an InferenceSession on the same .onnx file; both get the same seeded random input. Then, for
--rounds rounds, interleaved model by model (and alternating which side goes first each round, so
neither always runs on a warmer or cooler machine), each side warms up and times runs until it has
at least --iterations runs and --seconds seconds:
    kiln: its Python-free path, `kiln bench ENGINE --inputs IN.npz --json OUT` (one record per run);
    ORT:  session.run in a loop, each run timed with time.perf_counter.
The result per model is the median latency of each side over every timed run of every round, and
their ratio (kiln / ORT: above 1 kiln is slower). Each model's outputs are also compared once
(`kiln run` vs session.run, max abs difference), so the numbers are for the same computation.

Threads: both sides get --threads (default 1): kiln through OMP_NUM_THREADS, the threads of the
oneDNN kernels (src/backends/cpu/) inside one stream (its executor runs on the calling thread);
ORT as intra_op_num_threads, inter_op 1, sequential. The threads each side used, and how many of
kiln's layers run on oneDNN and how many on the reference kernels (`kiln inspect`), are written
into the results. KILN_CPU_REF=1 in the environment times kiln's reference kernels instead.

Models: examples/tiny_cnn.onnx; two built here (cnn224: a small CNN on a 1x3x224x224 image;
transformer: one pre-LN encoder block, 1x128 tokens x 256, 4 heads, FFN 1024, Gelu as Erf);
and, when ../shared/testdata/onnx-light is present (read in place, never copied), onnx's light
squeezenet and resnet50 (--light NAME,... picks others; --light all for the nine).

Results go to bench/results/<date>_<cpu>_<cores>c_<commit>.{md,json} (--out-dir to change).

    /tmp/venv/bin/python bench/cpu_vs_ort.py                    # build/kiln, defaults
    python bench/cpu_vs_ort.py --kiln build/kiln --rounds 5 --seconds 2 --models tiny_cnn,transformer
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
LIGHT_DEFAULT = ["squeezenet", "resnet50"]
LIGHT_ALL = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
             "vgg19", "zfnet512"]


def log(msg: str) -> None:
    """Progress, on a terminal only."""
    if sys.stderr.isatty():
        print(msg, file=sys.stderr, flush=True)


# ---- models built here ---------------------------------------------------------------------------

def _w(rng, name, *shape, scale=None):
    scale = scale if scale is not None else 1.0 / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 1.0)
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def make_cnn224(path: Path) -> Path:
    """Conv(3→16,s2)+Relu → Conv(16→32,s2)+Relu → MaxPool → Conv(32→64)+Relu → Conv(64→64,s2)+Relu →
    GlobalAveragePool → Flatten → Gemm(64→100) → Softmax on 1x3x224x224."""
    rng = np.random.default_rng(224)
    inits, nodes, x = [], [], "image"
    convs = [("conv1", 3, 16, 2), ("conv2", 16, 32, 2), ("pool", 0, 0, 0), ("conv3", 32, 64, 1), ("conv4", 64, 64, 2)]
    for name, cin, cout, stride in convs:
        if name == "pool":
            nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
            x = "pool"
            continue
        inits += [_w(rng, f"{name}_w", cout, cin, 3, 3), _w(rng, f"{name}_b", cout, scale=0.05)]
        nodes += [helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"], name=name, pads=[1, 1, 1, 1],
                                   strides=[stride, stride]),
                  helper.make_node("Relu", [f"{name}_c"], [f"{name}_r"], name=f"{name}_relu")]
        x = f"{name}_r"
    inits += [_w(rng, "fc_w", 100, 64), _w(rng, "fc_b", 100, scale=0.05)]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
              helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    g = helper.make_graph(nodes, "cnn224", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 100])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def make_transformer(path: Path, seq=128, d=256, heads=4, ffn=1024) -> Path:
    """One pre-LayerNorm encoder block on x[1, seq, d]: LN → Q,K,V MatMuls → split heads → softmax(QKᵀ/√dh)V →
    merge heads → out projection → residual; LN → MatMul(d→ffn) → Gelu (as Erf) → MatMul(ffn→d) → residual."""
    rng = np.random.default_rng(256)
    dh = d // heads
    c = lambda name, v: numpy_helper.from_array(np.asarray(v), name)  # noqa: E731
    inits = [
        c("ln1_s", np.ones(d, np.float32)), c("ln1_b", np.zeros(d, np.float32)),
        c("ln2_s", np.ones(d, np.float32)), c("ln2_b", np.zeros(d, np.float32)),
        _w(rng, "wq", d, d), _w(rng, "wk", d, d), _w(rng, "wv", d, d), _w(rng, "wo", d, d),
        _w(rng, "bq", d, scale=0.02), _w(rng, "bo", d, scale=0.02),
        _w(rng, "w1", d, ffn), _w(rng, "b1", ffn, scale=0.02), _w(rng, "w2", ffn, d), _w(rng, "b2", d, scale=0.02),
        c("split_shape", np.array([1, seq, heads, dh], np.int64)), c("merge_shape", np.array([1, seq, d], np.int64)),
        c("scale", np.array(1.0 / np.sqrt(dh), np.float32)), c("sqrt2", np.array(np.sqrt(2.0), np.float32)),
        c("one", np.array(1.0, np.float32)), c("half", np.array(0.5, np.float32)),
    ]
    n = helper.make_node
    nodes = [
        n("LayerNormalization", ["x", "ln1_s", "ln1_b"], ["h"], name="ln1", axis=-1, epsilon=1e-5),
        n("MatMul", ["h", "wq"], ["q0"], name="q_proj"), n("Add", ["q0", "bq"], ["q1"], name="q_bias"),
        n("MatMul", ["h", "wk"], ["k1"], name="k_proj"),
        n("MatMul", ["h", "wv"], ["v1"], name="v_proj"),
    ]
    for t in ("q", "k", "v"):
        nodes += [n("Reshape", [f"{t}1", "split_shape"], [f"{t}2"], name=f"{t}_split"),
                  n("Transpose", [f"{t}2"], [f"{t}3"], name=f"{t}_heads", perm=[0, 2, 3, 1] if t == "k" else [0, 2, 1, 3])]
    nodes += [
        n("MatMul", ["q3", "k3"], ["s0"], name="scores"), n("Mul", ["s0", "scale"], ["s1"], name="scale"),
        n("Softmax", ["s1"], ["p"], name="softmax", axis=-1),
        n("MatMul", ["p", "v3"], ["a0"], name="attend"),
        n("Transpose", ["a0"], ["a1"], name="merge_heads", perm=[0, 2, 1, 3]),
        n("Reshape", ["a1", "merge_shape"], ["a2"], name="merge"),
        n("MatMul", ["a2", "wo"], ["o0"], name="out_proj"), n("Add", ["o0", "bo"], ["o1"], name="out_bias"),
        n("Add", ["x", "o1"], ["r1"], name="residual1"),
        n("LayerNormalization", ["r1", "ln2_s", "ln2_b"], ["h2"], name="ln2", axis=-1, epsilon=1e-5),
        n("MatMul", ["h2", "w1"], ["f0"], name="ffn1"), n("Add", ["f0", "b1"], ["f1"], name="ffn1_bias"),
        n("Div", ["f1", "sqrt2"], ["g0"], name="gelu_div"), n("Erf", ["g0"], ["g1"], name="gelu_erf"),
        n("Add", ["g1", "one"], ["g2"], name="gelu_add"), n("Mul", ["f1", "g2"], ["g3"], name="gelu_mul"),
        n("Mul", ["g3", "half"], ["g4"], name="gelu_half"),
        n("MatMul", ["g4", "w2"], ["f2"], name="ffn2"), n("Add", ["f2", "b2"], ["f3"], name="ffn2_bias"),
        n("Add", ["r1", "f3"], ["y"], name="residual2"),
    ]
    g = helper.make_graph(nodes, "transformer_block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, d])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, d])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


# ---- inputs --------------------------------------------------------------------------------------

NP_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.INT64: np.int64, TensorProto.INT32: np.int32}


def model_inputs(path: Path, seed: int, batch: int = 1) -> dict[str, np.ndarray]:
    """Seeded random data for every graph input that has no initializer (dynamic dims become `batch`
    for the first dim and 1 elsewhere)."""
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    rng = np.random.default_rng(seed)
    out = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (batch if k == 0 else 1) for k, d in enumerate(tt.shape.dim)]
        if tt.elem_type not in NP_TYPES:
            raise SystemExit(f"{path.name}: input '{vi.name}' has element type {tt.elem_type}, which this script does not fill")
        t = NP_TYPES[tt.elem_type]
        out[vi.name] = (rng.uniform(-1, 1, shape) if t == np.float32 else rng.integers(0, 8, shape)).astype(t)
    return out


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)  # input names here are plain identifiers or paths np.savez accepts


# ---- the two sides -------------------------------------------------------------------------------

def kiln_env(args) -> dict:
    """The environment of the kiln commands: oneDNN's threads set to --threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads)}


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def kiln_times(kiln: Path, engine: Path, inputs: Path, work: Path, args) -> tuple[list[float], dict]:
    out = work / "bench.json"
    run([kiln, "bench", engine, "--inputs", inputs, "--warmup", args.warmup_ms, "--iterations", args.iterations,
         "--duration", args.seconds, "--json", out], env=kiln_env(args))
    d = json.loads(out.read_text())
    return [it["latency_ms"] for it in d["iterations"]], d


def ort_times(sess: ort.InferenceSession, feeds: dict, args) -> list[float]:
    t_end = time.perf_counter() + args.warmup_ms / 1e3
    sess.run(None, feeds)
    while time.perf_counter() < t_end:
        sess.run(None, feeds)
    times, t0 = [], time.perf_counter()
    while len(times) < args.iterations or time.perf_counter() - t0 < args.seconds:
        a = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - a) * 1e3)
    return times


ORT_MAX_IR = 10  # what every onnxruntime this script meets reads (onnx 1.23 writes IR 11+ by default)


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    """ORT on the same model; a model stamped with a newer IR version than ORT reads (examples/tiny_cnn.onnx)
    gets an in-memory copy stamped ORT_MAX_IR: the graph, opsets and weights are unchanged."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only: the light models' unused initializers make ORT chatty
    m = onnx.load(str(path))
    if m.ir_version > ORT_MAX_IR:
        m.ir_version = ORT_MAX_IR
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ---- the machine ---------------------------------------------------------------------------------

def machine() -> dict:
    cpu, physical = platform.processor() or "unknown", None
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        cpu = m.group(1).strip() if m else cpu
        ids = set(re.findall(r"^physical id\s*:\s*(\d+)$.*?^core id\s*:\s*(\d+)$", text, re.M | re.S))
        physical = len(ids) or None
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "physical_cores": physical,
            "usable_cpus": len(os.sched_getaffinity(0)), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "onnxruntime": ort.__version__, "onnx": onnx.__version__,
            "numpy": np.__version__}


def kiln_commit() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---- main ----------------------------------------------------------------------------------------

def pick_models(args, work: Path) -> list[tuple[str, Path]]:
    models = [("tiny_cnn", REPO / "examples" / "tiny_cnn.onnx"), ("cnn224", make_cnn224(work / "cnn224.onnx")),
              ("transformer", make_transformer(work / "transformer.onnx"))]
    light = Path(args.shared_dir) / "testdata" / "onnx-light"
    names = LIGHT_ALL if args.light == "all" else [n for n in args.light.split(",") if n]
    for n in names:
        p = light / f"light_{n}.onnx"
        if p.is_file():
            models.append((n, p))
        else:
            log(f"(no {p}: {n} skipped)")
    if args.models:
        want = args.models.split(",")
        unknown = set(want) - {n for n, _ in models}
        if unknown:
            raise SystemExit(f"--models: unknown or absent model(s) {sorted(unknown)}; have {[n for n, _ in models]}")
        models = [(n, p) for n, p in models if n in want]
    return models


def prepare(name: str, path: Path, kiln: Path, work: Path, args) -> dict:
    """Inputs, the kiln engine, the ORT session, and one output comparison."""
    d = work / name
    d.mkdir()
    feeds = model_inputs(path, seed=args.seed)
    save_npz(d / "in.npz", feeds)
    shapes = ",".join(f"{k}:{'x'.join(map(str, v.shape))}" for k, v in feeds.items())
    engine = d / f"{name}.kiln"
    t = time.perf_counter()
    run([kiln, "build", path, "-o", engine, "--shapes", shapes], env=kiln_env(args))
    build_s = time.perf_counter() - t
    sess = ort_session(path, args.threads)
    run([kiln, "run", engine, "--inputs", d / "in.npz", "--output", d / "out.npz"], env=kiln_env(args))
    layers = json.loads(run([kiln, "inspect", engine, "--json"], env=kiln_env(args)).stdout)["layers"]
    kernels = {}
    for layer in layers:
        kernels[layer["kernel"]] = kernels.get(layer["kernel"], 0) + 1
    with np.load(d / "out.npz") as z:
        got = {k: z[k] for k in z.files}
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    err = max(float(np.max(np.abs(got[k].astype(np.float64) - want[k].astype(np.float64)))) if want[k].size else 0.0
              for k in want)
    return {"name": name, "path": path, "dir": d, "feeds": feeds, "engine": engine, "sess": sess, "build_s": build_s,
            "max_abs_diff": err, "kiln": [], "ort": [], "kiln_rounds": [], "ort_rounds": [], "kiln_json": None,
            "shapes": {k: list(v.shape) for k, v in feeds.items()}, "kernels": kernels}


def summarize(m: dict) -> dict:
    k, o = statistics.median(m["kiln"]), statistics.median(m["ort"])
    return {"model": m["name"], "file": str(m["path"]), "input_shapes": m["shapes"],
            "kiln_median_ms": k, "ort_median_ms": o, "ratio_kiln_over_ort": k / o,
            "kiln_runs": len(m["kiln"]), "ort_runs": len(m["ort"]),
            "kiln_round_medians_ms": m["kiln_rounds"], "ort_round_medians_ms": m["ort_rounds"],
            "kiln_p90_ms": float(np.percentile(m["kiln"], 90)), "ort_p90_ms": float(np.percentile(m["ort"], 90)),
            "kiln_build_s": m["build_s"], "kiln_engine_bytes": m["engine"].stat().st_size,
            "kiln_arena_bytes": m["kiln_json"]["engine"]["arena_bytes"],
            "kiln_backend": m["kiln_json"]["engine"]["backend"], "kiln_layer_kernels": m["kernels"],
            "max_abs_diff_kiln_vs_ort": m["max_abs_diff"]}


def write_results(rows: list[dict], info: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", info["machine"]["cpu"].lower()).strip("-")[:40] or "cpu"
    stem = f"{info['date']}_{slug}_{info['machine']['usable_cpus']}c_{info['kiln_commit']}"
    jpath, mpath = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jpath.write_text(json.dumps({**info, "results": rows}, indent=2) + "\n")
    mc = info["machine"]
    lines = [
        f"# kiln vs ONNX Runtime on the CPU — {info['date']}",
        "",
        f"- machine: {mc['cpu']}, {mc['usable_cpus']} usable CPUs ({mc['logical_cpus']} logical, "
        f"{mc['physical_cores'] or '?'} physical cores), {mc['system']}",
        f"- kiln commit {info['kiln_commit']}, engine backend {rows[0]['kiln_backend'] if rows else '?'} (the CPU executor; each model's layer kernels in the last column); "
        f"onnxruntime {mc['onnxruntime']} (CPUExecutionProvider, default graph optimizations)",
        f"- threads: kiln {info['threads']['kiln']} (OMP_NUM_THREADS, oneDNN's kernels inside one stream; the executor "
        f"runs on the calling thread), ORT intra-op {info['threads']['ort_intra_op']}, inter-op 1, sequential"
        + (" — KILN_CPU_REF=1: kiln ran its reference kernels only" if info["kiln_cpu_ref"] else ""),
        f"- method: {info['rounds']} interleaved rounds; per round and side a {info['warmup_ms']:g} ms warmup, then at least "
        f"{info['iterations']} runs and {info['seconds']:g} s; medians over every timed run of every round. "
        f"kiln is timed by `kiln bench --json` (wall time of kiln_context_run), ORT by perf_counter around session.run.",
        f"- command: `{info['command']}`; 1-minute load average {info['load_average_1m']['before']:.2f} before, "
        f"{info['load_average_1m']['after']:.2f} after (other work on the machine shows here)",
        "",
        "| model | input | kiln median ms | ORT median ms | kiln / ORT | kiln runs | ORT runs | max abs diff | kiln layers |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        shape = "; ".join(f"{k} {'x'.join(map(str, v))}" for k, v in r["input_shapes"].items())
        lines.append(f"| {r['model']} | {shape} | {r['kiln_median_ms']:.3f} | {r['ort_median_ms']:.3f} | "
                     f"{r['ratio_kiln_over_ort']:.2f} | {r['kiln_runs']} | {r['ort_runs']} | {r['max_abs_diff_kiln_vs_ort']:.2e} | "
                     + ", ".join(f"{n} {k}" for k, n in sorted(r["kiln_layer_kernels"].items())) + " |")
    lines += ["", "kiln / ORT above 1 means kiln is slower. Per-round medians (ms), kiln | ORT:", ""]
    for r in rows:
        lines.append(f"- {r['model']}: " + ", ".join(f"{a:.3f}" for a in r["kiln_round_medians_ms"]) + " | " +
                     ", ".join(f"{b:.3f}" for b in r["ort_round_medians_ms"]))
    mpath.write_text("\n".join(lines) + "\n")
    return mpath, jpath


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    default_kiln = Path(os.environ.get("KILN_BUILD_DIR") or REPO / "build") / "kiln"
    ap.add_argument("--kiln", type=Path, default=default_kiln, help=f"the kiln binary (default {default_kiln})")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--iterations", type=int, default=5, help="at least this many timed runs per side and round (default 5)")
    ap.add_argument("--seconds", type=float, default=1.0, help="and at least this long per side and round (default 1)")
    ap.add_argument("--warmup-ms", type=float, default=200, help="warmup per side and round (default 200)")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of each side: OMP_NUM_THREADS for kiln's oneDNN kernels, intra-op threads for ORT (default 1)")
    ap.add_argument("--models", default="", help="only these models (comma-separated names)")
    ap.add_argument("--light", default=",".join(LIGHT_DEFAULT), help="onnx-light models to add ('all' for nine, '' for none)")
    ap.add_argument("--shared-dir", default=os.environ.get("KILN_SHARED_DIR") or REPO.parent / "shared")
    ap.add_argument("--seed", type=int, default=1, help="seed of the input data")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.iterations < 1 or args.seconds < 0 or args.threads < 1:
        ap.error("--rounds, --iterations and --threads must be >= 1, --seconds >= 0")
    kiln = args.kiln.resolve()
    if not kiln.is_file():
        ap.error(f"kiln binary not found: {kiln} (build it, or pass --kiln / set KILN_BUILD_DIR)")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        work = Path(tmp)
        models = [prepare(n, p, kiln, work, args) for n, p in pick_models(args, work)]
        for r in range(args.rounds):
            for m in models:
                sides = ["kiln", "ort"] if (r % 2 == 0) else ["ort", "kiln"]
                for side in sides:
                    log(f"round {r + 1}/{args.rounds}: {m['name']} on {side}")
                    if side == "kiln":
                        t, m["kiln_json"] = kiln_times(kiln, m["engine"], m["dir"] / "in.npz", m["dir"], args)
                    else:
                        t = ort_times(m["sess"], m["feeds"], args)
                    m[side] += t
                    m[f"{side}_rounds"].append(statistics.median(t))
        rows = [summarize(m) for m in models]

    info = {"date": dt.date.today().isoformat(), "machine": machine(), "kiln_commit": kiln_commit(),
            "threads": {"kiln": args.threads, "ort_intra_op": args.threads},
            "kiln_cpu_ref": os.environ.get("KILN_CPU_REF", "0") not in ("", "0"), "rounds": args.rounds, "iterations": args.iterations,
            "seconds": args.seconds, "warmup_ms": args.warmup_ms, "input_seed": args.seed,
            "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
            "command": " ".join(["bench/cpu_vs_ort.py", *(argv if argv is not None else sys.argv[1:])])}
    mpath, jpath = write_results(rows, info, args.out_dir)
    print(f"{'model':<14} {'kiln ms':>11} {'ORT ms':>11} {'kiln/ORT':>9}")
    for r in rows:
        print(f"{r['model']:<14} {r['kiln_median_ms']:>11.3f} {r['ort_median_ms']:>11.3f} {r['ratio_kiln_over_ort']:>9.2f}")
    print(f"results: {mpath.relative_to(REPO) if mpath.is_relative_to(REPO) else mpath} and {jpath.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
