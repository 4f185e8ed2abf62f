#!/usr/bin/env python3
"""run_node_tests.py — runs kiln on the ONNX backend node tests (onnx.backend.test.case.node).

Each case (1884 in onnx 1.23.2) is one small model with one data set. For each: write model.onnx
and inputs.npz (keyed by graph input names), run `kiln run model.onnx --inputs inputs.npz --output
outputs.npz` with a per-case timeout, and compare every graph output with the expected array:
same dtype and shape, integers and bools exactly, floats with the case's rtol/atol (onnx's
defaults: rtol=1e-3, atol=1e-7) under |got-exp| <= atol + rtol*|exp|, NaN positions equal.

One line per case:
    PASS name
    FAIL name: <max abs err | shape/dtype mismatch | kiln's message>
    UNSUPPORTED name: <reason>          kiln said "unsupported: ...", or the harness cannot feed it
    CRASH name: <signal or sanitizer report>
    TIMEOUT name
and a total:  node tests: P passed, F failed, U unsupported, C crashed of N
(F counts TIMEOUTs too; the line then says how many.)

The generators' inputs come from numpy's global generator, seeded here (DATA_SEED) so every run
uses the same data. Bernoulli cases are random by definition: their output is checked for dtype,
shape and 0/1 values only (RANDOM_OUTPUT).

Not run (reported UNSUPPORTED by the harness): cases whose graph inputs/outputs are sequences,
optionals, maps or sparse tensors; string tensors; dtypes that npz cannot carry (float8,
int4/uint4, int2/uint2, float4: numpy has no native type; bf16 crosses as ml_dtypes' '<V2').

Usage:
    tests/conformance/run_node_tests.py [-j N] [--filter REGEX] [-q] [--timeout S]
        [--baseline tests/conformance/baseline.txt] [--write-baseline FILE] [--json FILE]
        [--kiln PATH] [--keep DIR]
Exit status: 0; 1 if any case CRASHed or (with --baseline) fewer cases passed than the baseline;
2 for usage errors or a missing kiln binary.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for kilnrun

import numpy as np  # noqa: E402

import kilnrun  # noqa: E402

DEFAULT_RTOL, DEFAULT_ATOL = 1e-3, 1e-7

# ONNX TensorProto.DataType codes kiln can receive and return through .npz (numpy-native types).
# bf16 (16) crosses as ml_dtypes' bfloat16, which npy stores as '<V2' and kiln reads and writes so.
NPZ_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
              9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


# onnx's case generators draw their inputs from numpy's global generator, unseeded; seeding it
# makes every run feed kiln the same data, so a failure reproduces.
DATA_SEED = 0

# Cases whose expected output is one random draw (onnx: "non-deterministic and may not produce the
# same values in different implementations even if a seed is specified"; numpy.random.binomial).
# For these the output is checked for dtype, shape and values in {0, 1} instead of equality.
RANDOM_OUTPUT = re.compile(r"^test_bernoulli")


def collect_cases():
    """onnx's node test cases, with the warnings and numpy floating-point noise their generators
    emit silenced."""
    import onnx  # noqa: F401
    from onnx.backend.test.case.node import collect_testcases

    state = np.random.get_state()
    np.random.seed(DATA_SEED)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return collect_testcases()
    finally:
        np.random.set_state(state)


def check_random_output(got: np.ndarray, exp: np.ndarray) -> kilnrun.Comparison:
    if got.dtype != exp.dtype:
        return kilnrun.Comparison(False, f"dtype {got.dtype} != expected {exp.dtype}")
    if got.shape != exp.shape:
        return kilnrun.Comparison(False, f"shape {got.shape} != expected {exp.shape}")
    bad = ~np.isin(got, (0, 1))
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        return kilnrun.Comparison(False, f"random output: {int(bad.sum())} values not 0 or 1, first {got[i]!r} at {i}")
    return kilnrun.Comparison(True, "random output: dtype, shape and 0/1 values checked", 0.0)


def _type_kind(tp) -> str:
    return tp.WhichOneof("value") or "undefined"


def _as_array(x):
    """A data-set entry as a numpy array; TensorProto entries are decoded as onnx's runner does.
    Returns None for things that are not tensors (lists = sequences, None = empty optional)."""
    import onnx
    from onnx import numpy_helper

    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, np.generic):
        return np.asarray(x)
    return None


def unsupported_reason(case) -> str | None:
    """Why the harness cannot run this case through npz files, or None if it can."""
    import onnx

    g = case.model.graph
    kinds = set()
    for vi in list(g.input) + list(g.output):
        k = _type_kind(vi.type)
        if k != "tensor_type":
            kinds.add(k.replace("_type", ""))
    if kinds:
        return f"non-tensor graph inputs/outputs ({', '.join(sorted(kinds))})"
    for inputs, outputs in case.data_sets:
        for x in list(inputs) + list(outputs):
            if isinstance(x, list):
                return "non-tensor data (sequence)"
            if x is None:
                return "non-tensor data (empty optional)"
            if isinstance(x, dict):
                return "non-tensor data (map)"
    elem_types = [vi.type.tensor_type.elem_type for vi in list(g.input) + list(g.output)]
    if onnx.TensorProto.STRING in elem_types:
        return "string tensors"
    for inputs, outputs in case.data_sets:
        for x in list(inputs) + list(outputs):
            a = _as_array(x)
            if a is not None and a.dtype.kind in "OSU":
                return "string tensors"
    bad = sorted({onnx.TensorProto.DataType.Name(t) for t in elem_types if t not in NPZ_DTYPES})
    if bad:
        return f"dtype {', '.join(bad)} in graph inputs/outputs (not representable in npz)"
    for inputs, outputs in case.data_sets:
        if len(inputs) != len(g.input) or len(outputs) != len(g.output):
            return (f"data set has {len(inputs)} inputs/{len(outputs)} outputs for a graph with "
                    f"{len(g.input)}/{len(g.output)}")
    return None


def run_case(case, workroot: Path, args) -> dict:
    t0 = time.monotonic()
    res = {"name": case.name, "status": None, "detail": "", "seconds": 0.0, "max_abs_err": None}

    def done(status, detail=""):
        res["status"], res["detail"] = status, detail
        res["seconds"] = round(time.monotonic() - t0, 3)
        return res

    why = unsupported_reason(case)
    if why:
        return done("UNSUPPORTED", why)
    import onnx

    d = workroot / case.name
    d.mkdir(parents=True, exist_ok=True)
    model_path = d / "model.onnx"
    onnx.save_model(case.model, str(model_path))
    g = case.model.graph
    rtol = case.rtol if case.rtol is not None else DEFAULT_RTOL
    atol = case.atol if case.atol is not None else DEFAULT_ATOL
    max_err = 0.0
    for k, (inputs, outputs) in enumerate(case.data_sets):
        feeds = {vi.name: _as_array(x) for vi, x in zip(g.input, inputs)}
        dsdir = d / f"data_set_{k}"
        dsdir.mkdir(exist_ok=True)
        run, got = kilnrun.run_model(model_path, feeds, dsdir, binary=args.kiln, timeout=args.timeout,
                                     engine=args.engine or bool(args.build_args),
                                     build_args=args.build_args.split() if args.build_args else None,
                                     in_memory=args.in_memory)
        if run.kind == "timeout":
            return done("TIMEOUT", run.message)
        # kiln's messages name the model file; drop the temporary directory so lines are stable
        run.message = run.message.replace(str(d) + os.sep, "")
        if run.kind == "crash":
            return done("CRASH", run.message)
        if run.kind == "unsupported":
            return done("UNSUPPORTED", run.message)
        if run.kind != "ok":
            return done("FAIL", f"kiln exit {run.returncode}: {run.message}")
        for vi, x in zip(g.output, outputs):
            exp = _as_array(x)
            if vi.name not in got:
                return done("FAIL", f"output '{vi.name}' missing from kiln's npz (has {sorted(got)})")
            if RANDOM_OUTPUT.search(case.name):
                c = check_random_output(got[vi.name], exp)
            else:
                c = kilnrun.compare(got[vi.name], exp, rtol=rtol, atol=atol)
            if not c.ok:
                res["max_abs_err"] = c.max_abs_err
                return done("FAIL", f"output '{vi.name}': {c.detail}")
            max_err = max(max_err, c.max_abs_err or 0.0)
    res["max_abs_err"] = max_err
    return done("PASS")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel cases (default: CPU count)")
    ap.add_argument("--filter", metavar="REGEX", help="only cases whose name matches (re.search)")
    ap.add_argument("--baseline", metavar="FILE", help="exit 1 if fewer cases pass than the integer in FILE")
    ap.add_argument("--write-baseline", metavar="FILE", help="write the pass count to FILE")
    ap.add_argument("--json", metavar="FILE", help="write per-case results as JSON")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only non-PASS lines and the total")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per kiln run (default 20)")
    ap.add_argument("--kiln", metavar="PATH", help="kiln binary (default: $KILN_BIN, else $KILN_BUILD_DIR/kiln, else build/kiln)")
    ap.add_argument("--engine", action="store_true",
                    help="build each case into a .kiln engine (profile fixed at its inputs' shapes) and run that")
    ap.add_argument("--build-args", metavar="ARGS", default="",
                    help="extra `kiln build` arguments, e.g. '--device cuda' (implies --engine)")
    ap.add_argument("--in-memory", action="store_true",
                    help="with --build-args '--device D' alone: build and run in one `kiln run --device D` process")
    ap.add_argument("--only-passed", metavar="FILE",
                    help="only the cases that passed in FILE (another run's --json), e.g. the CPU run's for the GPU's")
    ap.add_argument("--time-limit", type=float, metavar="S",
                    help="start no case after S seconds; the rest are reported NOT_RUN and the JSON is still written")
    ap.add_argument("--keep", metavar="DIR", help="keep each case's model.onnx and npz files under DIR")
    args = ap.parse_args(argv)

    if args.filter and (args.baseline or args.write_baseline):
        ap.error("--baseline/--write-baseline count the whole suite; do not combine them with --filter")
    try:
        args.kiln = str(kilnrun.kiln_binary(args.kiln))
    except kilnrun.MissingPrerequisite as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    baseline = None
    if args.baseline:
        try:
            baseline = int(Path(args.baseline).read_text().strip())
        except (OSError, ValueError) as e:
            print(f"error: cannot read an integer from baseline file {args.baseline}: {e}", file=sys.stderr)
            return 2

    cases = sorted(collect_cases(), key=lambda c: c.name)
    if args.filter:
        rx = re.compile(args.filter)
        cases = [c for c in cases if rx.search(c.name)]
    if args.only_passed:
        passed = {c["name"] for c in json.loads(Path(args.only_passed).read_text())["cases"] if c["status"] == "PASS"}
        cases = [c for c in cases if c.name in passed]
    if not cases:
        print(f"error: no node test matches --filter {args.filter!r}", file=sys.stderr)
        return 2

    if args.keep:
        workroot = Path(args.keep)
        workroot.mkdir(parents=True, exist_ok=True)
    else:
        workroot = Path(tempfile.mkdtemp(prefix="kiln-node-tests-"))
    counts = {"PASS": 0, "FAIL": 0, "UNSUPPORTED": 0, "CRASH": 0, "TIMEOUT": 0, "NOT_RUN": 0}
    results = []

    def safe_run(case):
        if args.time_limit is not None and time.monotonic() - t0 > args.time_limit:
            return {"name": case.name, "status": "NOT_RUN", "detail": f"--time-limit {args.time_limit:g} s reached",
                    "seconds": 0.0, "max_abs_err": None}
        try:
            return run_case(case, workroot, args)
        except Exception as e:  # a harness bug: report it against the case, keep going
            return {"name": case.name, "status": "FAIL", "detail": f"harness error: {type(e).__name__}: {e}",
                    "seconds": 0.0, "max_abs_err": None}

    t0 = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for r in pool.map(safe_run, cases):  # in case order, as each completes
                results.append(r)
                counts[r["status"]] += 1
                if r["status"] == "PASS":
                    if not args.quiet:
                        print(f"PASS {r['name']}", flush=True)
                elif r["status"] in ("TIMEOUT", "NOT_RUN"):
                    if r["status"] == "TIMEOUT" or not args.quiet:
                        print(f"{r['status']} {r['name']}", flush=True)
                else:
                    print(f"{r['status']} {r['name']}: {r['detail']}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)

    n = len(cases)
    failed = counts["FAIL"] + counts["TIMEOUT"]
    total = (f"node tests: {counts['PASS']} passed, {failed} failed, {counts['UNSUPPORTED']} unsupported, "
             f"{counts['CRASH']} crashed of {n}")
    if counts["TIMEOUT"]:
        total += f" ({counts['TIMEOUT']} of the failures timed out)"
    if counts["NOT_RUN"]:
        total += f"; {counts['NOT_RUN']} not run (--time-limit)"
    print(total, flush=True)
    print(f"({time.monotonic() - t0:.1f} s, -j {args.jobs}, kiln {args.kiln})", file=sys.stderr)

    if args.json:
        summary = {"passed": counts["PASS"], "failed": counts["FAIL"], "timed_out": counts["TIMEOUT"],
                   "unsupported": counts["UNSUPPORTED"], "crashed": counts["CRASH"], "not_run": counts["NOT_RUN"], "total": n,
                   "filter": args.filter, "kiln": args.kiln}
        Path(args.json).write_text(json.dumps({"summary": summary, "cases": results}, indent=1) + "\n")
    if args.write_baseline:
        Path(args.write_baseline).write_text(f"{counts['PASS']}\n")

    rc = 0
    if counts["CRASH"]:
        print(f"error: {counts['CRASH']} case(s) crashed kiln", file=sys.stderr)
        rc = 1
    if baseline is not None and counts["PASS"] < baseline:
        print(f"error: {counts['PASS']} passed, below the baseline of {baseline} ({args.baseline})", file=sys.stderr)
        rc = 1
    elif baseline is not None and counts["PASS"] > baseline:
        print(f"note: {counts['PASS']} passed, above the baseline of {baseline}: raise it "
              f"(--write-baseline {args.baseline})", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
