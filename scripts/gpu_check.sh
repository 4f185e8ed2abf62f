#!/usr/bin/env bash
# gpu_check.sh — the whole GPU pass in one call on a machine with an NVIDIA GPU: the op suite at
# FP32/FP16/BF16/INT8 against the reference backend (tests/gpu/), the ONNX node conformance suite
# as CPU engines and as CUDA engines (every CPU pass must pass on the GPU or be refused at build),
# the model suites as CUDA engines, then the benchmarks (bench/gpu_bench.py). Logs go to $OUT
# (default /tmp/kiln-gpu). Needs build-gpu/dist from scripts/gpu_build.sh (built on a machine with
# the CUDA toolkit and kiln's build dependencies) and python3 with numpy, onnx, onnxruntime,
# pytest (torch and torchvision for the benchmarks).
#   scripts/gpu_check.sh [all|tests|ops|conformance|models|bench|zoo]...
# zoo (only when named; neither `all` nor `tests` runs it): zoo/bench_gpu.py, every zoo model at its real
# size as kiln FP32/FP16/INT8 engines at batch 1 and a larger batch, parity against torch FP32 and
# latency next to torch eager and torch.compile; results in $OUT/zoo_gpu.{json,md} (and, on a machine
# that keeps the checkout, zoo/results/gpu_<date>.json and bench/results/; otherwise merge the calls'
# $OUT/zoo_gpu.json files into them with zoo/bench_gpu.py --merge). Its options come from ZOO_ARGS, e.g.
# the groups of zoo/bench_gpu.py's docstring, one device call each:
#   ZOO_ARGS="--time-budget 450 --duration 0.3 --compile-precisions fp16 --models resnet50,vit_b_16,yolov8n" \
#     GPU_STAGE_TIMEOUT=540 scripts/gpu_check.sh zoo
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
OUT=${OUT:-/tmp/kiln-gpu}
mkdir -p "$OUT"
[ -d "$root/.gpu_carry/shared" ] && export KILN_SHARED_DIR="$root/.gpu_carry/shared"
export KILN_BUILD_DIR="$root/build-gpu/dist" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # set: the kiln CLI then does not re-exec itself to set it
if [ ! -x "$KILN_BUILD_DIR/kiln" ] && [ -f "$root/build-gpu/dist.tar.xz" ]; then
  python3 -c "import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$root/build-gpu/dist.tar.xz" "$root/build-gpu"
fi
# a stage's time limit in seconds (GPU_STAGE_TIMEOUT; the device tool stops a command at 10 minutes)
limit=${GPU_STAGE_TIMEOUT:-1800}
[ -x "$KILN_BUILD_DIR/kiln" ] || { echo "gpu_check: $KILN_BUILD_DIR/kiln is missing: run scripts/gpu_build.sh first" >&2; exit 2; }
jobs=$(nproc)
log="$OUT/gpu_check.log"
stages=${*:-all}
rc=0
want() {
  [[ " $stages " == *" $1 "* ]] && return 0
  [[ "$1" == zoo ]] && return 1  # its own device calls: only when named
  [[ " $stages " == *" all "* || ( " $stages " == *" tests "* && "$1" != bench ) ]]
}
step() { echo "== $* ($(date -u +%H:%M:%S))" | tee -a "$log"; }

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; "$KILN_BUILD_DIR/kiln" --version; \
  echo "commit $(cat "$KILN_BUILD_DIR/COMMIT" 2>/dev/null)"; } 2>&1 | tee -a "$log"

if want ops; then
  if [ -x "$KILN_BUILD_DIR/gemm_check" ]; then
    step "gemm family node checks (tests/cuda/gemm_check.c)"
    LD_LIBRARY_PATH="$KILN_BUILD_DIR/lib:/usr/local/cuda/lib64" "$KILN_BUILD_DIR/gemm_check" 2>&1 | tail -15 | tee -a "$log" || rc=1
  fi
  if [ -x "$KILN_BUILD_DIR/enqueue_check" ]; then
    step "enqueue on a caller's stream (tests/unit/test_enqueue.c)"
    LD_LIBRARY_PATH="$KILN_BUILD_DIR/lib:/usr/local/cuda/lib64" "$KILN_BUILD_DIR/enqueue_check" examples/tiny_cnn.onnx cuda 2>&1 \
      | tee -a "$log" | tail -1 | grep -q " 0 failed" || rc=1
  fi
    step "op suite (tests/gpu/test_gpu_ops.py)"
  # OPS_FILTER: a pytest -k expression (only those cases)
  timeout "$limit" python3 -m pytest -q -p no:cacheprovider -n "$((jobs / 2))" tests/gpu/test_gpu_ops.py -rA \
    ${OPS_FILTER:+-k "$OPS_FILTER"} 2>&1 \
    | grep -v "^PASSED" > "$OUT/ops.txt"; tail -40 "$OUT/ops.txt" | tee -a "$log"; tail -1 "$OUT/ops.txt" | grep -q "failed\|error" && rc=1
fi
if want models; then
  # the light models and ORT parity models; the 14 tiny zoo models at FP32 and INT8 against ONNX
  # Runtime; the streaming encoder's 300 closed-loop chunks through kiln compare (the reference
  # interpreter on the CPU against the CUDA engine)
  export KILN_ZOO_RESULTS="$OUT/zoo_tiny_gpu.jsonl"
  step "model suites as CUDA engines"
  KILN_BUILD_ARGS="--device cuda" timeout "$limit" python3 -m pytest -q -p no:cacheprovider -n "$((jobs / 2))" \
    tests/models/test_onnx_light.py tests/models/test_ort_parity.py tests/zoo/test_zoo.py \
    tests/zoo/test_streaming_encoder.py::test_fp32_closed_loop_300_chunks > "$OUT/models.txt" 2>&1
  tail -25 "$OUT/models.txt" | tee -a "$log"; tail -1 "$OUT/models.txt" | grep -q "failed\|error" && rc=1
fi
if want conformance; then
  step "node conformance: CPU engines"
  if [ "${CONF_CPU_JSON:-}" = skip ]; then
    echo "skipped (CONF_CPU_JSON=skip)" | tee -a "$log"
  elif [ -n "${CONF_CPU_JSON:-}" ]; then  # the same kiln's CPU-engine run, made on another machine with the same onnx
    cp "$CONF_CPU_JSON" "$OUT/conf_cpu.json"; echo "from $CONF_CPU_JSON" | tee -a "$log"
  else
    timeout "$limit" python3 tests/conformance/run_node_tests.py -q --engine -j "$jobs" --json "$OUT/conf_cpu.json" 2>&1 | tail -3 | tee -a "$log"
  fi
  step "node conformance: CUDA engines"
  # each case built and run by one `kiln run --device cuda` process (CUDA start-up dominates tiny
  # cases); only the CPU's passes when that run is given; no case started after CONF_TIME_LIMIT s
  # CONF_FILTER: a regex of case names (e.g. only the cases a pass under test changes)
  only=(); [ -f "$OUT/conf_cpu.json" ] && only=(--only-passed "$OUT/conf_cpu.json")
  [ -n "${CONF_FILTER:-}" ] && only+=(--filter "$CONF_FILTER")
  timeout "$limit" python3 tests/conformance/run_node_tests.py -q --build-args "--device cuda" --in-memory "${only[@]}" \
    -j "${CONF_JOBS:-$jobs}" --timeout 30 --time-limit "${CONF_TIME_LIMIT:-$((limit - 60))}" \
    --json "$OUT/conf_gpu.json" > "$OUT/conf_gpu.txt" 2>&1
  tail -2 "$OUT/conf_gpu.txt" | tee -a "$log"
  [ -f "$OUT/conf_cpu.json" ] && python3 tests/gpu/conformance_diff.py "$OUT/conf_cpu.json" "$OUT/conf_gpu.json" 2>&1 | tee -a "$log" || rc=1
fi
if want bench; then
  step "benchmarks (bench/gpu_bench.py)"
  timeout "$limit" python3 bench/gpu_bench.py --out "$OUT" ${GPU_BENCH_ARGS:-} 2>&1 | tee -a "$log" || rc=1
fi
if want zoo; then
  step "model zoo at real size (zoo/bench_gpu.py ${ZOO_ARGS:-})"
  # shellcheck disable=SC2086  # ZOO_ARGS is a list of options
  timeout "$limit" python3 zoo/bench_gpu.py --out "$OUT" ${ZOO_ARGS:-} 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
fi
step "done, status $rc"
exit $rc
