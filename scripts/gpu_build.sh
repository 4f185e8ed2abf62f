#!/usr/bin/env bash
# gpu_build.sh — builds kiln with the CUDA backend into build-gpu/ (here, where the toolkit is)
# and packs what the GPU machine needs into build-gpu/dist: the kiln binary, the shared
# libraries it links that such a machine may lack (libzip, cJSON, protobuf-c, stb...), and a
# wrapper `kiln` that points the loader at them and at the machine's CUDA libraries. Carry
# build-gpu/dist to the GPU machine and run scripts/gpu_check.sh there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_WERROR=ON -DKILN_CUDA=ON -DKILN_CAIRO=OFF >/dev/null
cmake --build build-gpu -j "$(nproc)" --target kiln_cli gemm_check
dist=build-gpu/dist
rm -rf "$dist"
mkdir -p "$dist/lib"
cp build-gpu/kiln "$dist/kiln.bin"
cp build-gpu/tests/gemm_check "$dist/gemm_check"
for lib in libcjson.so.1 libprotobuf-c.so.1 libzip.so.4 libstb.so.0 libbz2.so.1.0; do
  src=$(ldd build-gpu/kiln | awk -v l="$lib" '$1 == l {print $3}')
  [ -n "$src" ] && cp -L "$src" "$dist/lib/"
done
cat > "$dist/kiln" <<'WRAP'
#!/bin/sh
# kiln with its bundled libraries (see scripts/gpu_build.sh)
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/kiln.bin" "$@"
WRAP
chmod +x "$dist/kiln"
git rev-parse HEAD > "$dist/COMMIT" 2>/dev/null || true
du -sh "$dist"
