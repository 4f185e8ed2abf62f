#!/usr/bin/env bash
# test.sh — the second quick-start command and what CI runs (.ci/run): installs the
# dependencies and the pinned Python test tools, builds kiln with warnings as errors (plus an
# ASan + UBSan copy, kiln-san), and runs every test through one ctest run: C unit tests and
# hostile-input tests under the sanitizers, the ONNX node conformance suite with its ratchet,
# the real-model tests and parity against ONNX Runtime. Ends with ctest's summary.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/deps.sh --python
jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_WERROR=ON -DKILN_SANITIZER_TESTS=ON \
      -DKILN_PYTHON="$root/.venv/bin/python" >/dev/null
cmake --build build -j "$jobs"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd build
exec ctest --output-on-failure -j "$jobs"
