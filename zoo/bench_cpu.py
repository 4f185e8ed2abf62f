"""Times every zoo model (zoo/models/*.json) on the CPU, one thread: kiln's FP32 engine against ONNX Runtime on
the same inputs, and writes zoo/results/cpu_<date>.json for zoo/report.py's speed column.

    OMP_NUM_THREADS=1 /tmp/venv/bin/python zoo/bench_cpu.py [--kiln build/kiln] [--models resnet18,clip]

Inputs come from the zoo test's own make_inputs (tests/zoo/test_zoo.py), seeded. Per model, in turn (the two
sides interleaved model by model, the first side swapped each round):
- kiln: `kiln bench ENGINE --inputs IN.npz --iterations N --duration 0 --warmup 100`, the median of its
  timed runs' latencies (docs/bench.md);
- ORT: InferenceSession with intra_op_num_threads=1, warm-up runs, then the median of N timed session.run calls.
The ratio is kiln / ORT: above 1 kiln is slower. A model that kiln cannot build or run is recorded with the
error and no times."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "zoo"))
sys.path.insert(0, str(REPO / "bench"))
import test_zoo  # noqa: E402  (specs and inputs exactly as the zoo tests make them)
import kilnrun  # noqa: E402  (on sys.path through test_zoo)
from cpu_vs_ort import kiln_commit, machine, ort_session  # noqa: E402

THREADS = 1


def kiln_median(kiln: Path, engine: Path, inputs: Path, work: Path, iterations: int) -> float:
    rep = work / "rep.json"
    run([kiln, "bench", engine, "--inputs", inputs, "--iterations", iterations, "--duration", 0,
         "--warmup", 100, "--json", rep])
    return json.loads(rep.read_text())["summary"]["latency_ms"]["median"]


def ort_median(sess, feeds: dict, iterations: int, warmup_ms: float = 100) -> float:
    """Like kiln bench: runs untimed for warmup_ms (at least once), then times `iterations` runs."""
    t_end = time.perf_counter() + warmup_ms / 1e3
    sess.run(None, feeds)
    while time.perf_counter() < t_end:
        sess.run(None, feeds)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(cmd: list) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"kiln {cmd[1]} exited {r.returncode}: {msg}")


def prepare(spec: dict, kiln: Path, work: Path, seed: int) -> dict:
    """Inputs, the FP32 engine and the ORT session of one model."""
    feeds = test_zoo.make_inputs(spec, np.random.default_rng(seed))
    npz, engine = work / "in.npz", work / f"{spec['name']}.kiln"
    kilnrun.save_npz(npz, feeds)
    m = {"name": spec["name"], "feeds": feeds, "npz": npz, "engine": engine, "kiln_ms": [], "ort_ms": []}
    try:
        run([kiln, "build", spec["path"], "-o", engine, "--shapes", kilnrun.shapes_arg(feeds)])
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        m["error"] = str(e)
    m["sess"] = ort_session(spec["path"], THREADS)
    return m


def time_round(m: dict, kiln: Path, iterations: int, kiln_first: bool) -> None:
    sides = ["kiln", "ort"] if kiln_first else ["ort", "kiln"]
    for side in sides:
        if side == "ort":
            m["ort_ms"].append(ort_median(m["sess"], m["feeds"], iterations))
        elif "error" not in m:
            try:
                m["kiln_ms"].append(kiln_median(kiln, m["engine"], m["npz"], m["engine"].parent, iterations))
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                m["error"] = str(e)


def row(m: dict) -> dict:
    k = statistics.median(m["kiln_ms"]) if m["kiln_ms"] and "error" not in m else None
    o = statistics.median(m["ort_ms"])
    r = {"model": m["name"], "kiln_ms": k, "ort_ms": o, "ratio": (k / o) if k is not None else None,
         "kiln_round_ms": m["kiln_ms"], "ort_round_ms": m["ort_ms"]}
    if "error" in m:
        r["error"] = m["error"]
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", default=str(REPO / "build" / "kiln"))
    ap.add_argument("--models", help="comma-separated zoo names (default: every spec)")
    ap.add_argument("--iterations", type=int, default=20, help="timed runs per side and round (default 20)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds per model, first side swapped each round")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", help="default zoo/results/cpu_<date>.json")
    a = ap.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != str(THREADS):
        print(f"note: OMP_NUM_THREADS set to {THREADS} for kiln", file=sys.stderr)
    specs = [test_zoo.load_spec(p) for p in test_zoo.SPECS]
    if a.models:
        want = set(a.models.split(","))
        specs = [s for s in specs if s["name"] in want]
    kiln, rows = Path(a.kiln).resolve(), []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kiln_zoo_bench_") as tmp:
        for spec in specs:
            work = Path(tmp) / spec["name"]
            work.mkdir()
            m = prepare(spec, kiln, work, a.seed)
            for rnd in range(a.rounds):
                time_round(m, kiln, a.iterations, kiln_first=rnd % 2 == 0)
            rows.append(row(m))
            r = rows[-1]
            k = f"{r['kiln_ms']:.3f}" if r["kiln_ms"] is not None else "fails"
            print(f"{r['model']:24s} kiln {k:>10s} ms  ORT {r['ort_ms']:10.3f} ms"
                  + (f"  ratio {r['ratio']:.2f}" if r["ratio"] is not None else f"  ({r['error']})"), flush=True)
    info = {"date": dt.date.today().isoformat(), "threads": THREADS, "kiln_commit": kiln_commit(),
            "machine": machine(), "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
            "iterations": a.iterations, "rounds": a.rounds, "seed": a.seed,
            "kiln_bench": "--iterations N --duration 0 --warmup 100 (ms), median latency",
            "ort": "intra_op_num_threads=1, inter_op_num_threads=1, sequential; 100 ms warm-up, median of N runs",
            "ratio": "kiln_ms / ort_ms (above 1: kiln slower)", "models": rows}
    out = Path(a.out) if a.out else REPO / "zoo" / "results" / f"cpu_{info['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
