#!/usr/bin/env bash
# setup.sh — the first quick-start command: installs the dependencies, builds kiln into build/
# and runs the main job on the small model that ships in examples/ (the reference backend on
# the CPU; the GPU backend is used when it is built and a GPU is present).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build
echo "== kiln run examples/tiny_cnn.onnx --inputs examples/tiny_cnn_input.npz"
./build/kiln run examples/tiny_cnn.onnx --inputs examples/tiny_cnn_input.npz
