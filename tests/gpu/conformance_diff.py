"""Compares the node conformance suite run as CPU engines and as CUDA engines (two --json files
of tests/conformance/run_node_tests.py): every case that passes on the CPU must pass on the GPU
unless the GPU build refuses it (an op or dtype without a GPU kernel, refused at build time with
the reason). Prints the counts, the refusals grouped by reason, and every regression; exits 1 if
there is any."""
import collections
import json
import re
import sys


def main(cpu_json, gpu_json):
    cpu = {c["name"]: c for c in json.load(open(cpu_json))["cases"]}
    gpu = {c["name"]: c for c in json.load(open(gpu_json))["cases"]}
    cpu_pass = {n for n, c in cpu.items() if c["status"] == "PASS"}
    gpu_pass = {n for n, c in gpu.items() if c["status"] == "PASS"}
    refused = {n for n in cpu_pass if gpu.get(n, {}).get("status") == "UNSUPPORTED"}
    not_run = {n for n in cpu_pass if gpu.get(n, {}).get("status") in (None, "NOT_RUN")}
    regressions = sorted(n for n in cpu_pass - gpu_pass - refused - not_run)
    print(f"CPU engines: {len(cpu_pass)} passed of {len(cpu)}")
    print(f"GPU engines: {len(gpu_pass)} passed, {len(refused)} of the CPU's passes refused at build "
          f"(no GPU kernel), {len(regressions)} regressions, {len(not_run)} not run")
    reasons = collections.Counter()
    for n in refused:
        d = gpu[n]["detail"]
        m = re.search(r"\((\w+)\): ([^;]*)", d)
        reasons[f"{m.group(1)}: {m.group(2)}" if m else d[:100]] += 1
    for r, k in reasons.most_common(40):
        print(f"  refused {k:4d}  {r}")
    for n in regressions:
        print(f"REGRESSION {n}: {gpu.get(n, {}).get('status')} {gpu.get(n, {}).get('detail', '')[:300]}")
    supported = len(cpu_pass) - len(refused) - len(not_run)
    print(f"GPU pass rate over the CPU's passes the GPU accepts (and ran): {len(cpu_pass & gpu_pass)}/{supported}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
