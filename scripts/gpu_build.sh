#!/usr/bin/env bash
# gpu_build.sh — builds kiln with the CUDA backend into build-gpu/ (here, where the toolkit is)
# and packs what the GPU machine needs into build-gpu/dist: the kiln binary, the shared
# libraries it links that such a machine may lack (libzip, cJSON, protobuf-c, stb...), and a
# wrapper `kiln` that points the loader at them and at the machine's CUDA libraries. Carry
# build-gpu/dist.tar.xz (the same, compressed) to the GPU machine and run scripts/gpu_check.sh there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_WERROR=ON -DKILN_CUDA=ON -DKILN_CAIRO=OFF >/dev/null
cmake --build build-gpu -j "$(nproc)" --target kiln_cli gemm_check enqueue_check
dist=build-gpu/dist
rm -rf "$dist"
mkdir -p "$dist/lib"
cp build-gpu/kiln "$dist/kiln.bin"
cp build-gpu/tests/gemm_check "$dist/gemm_check"
cp build-gpu/tests/enqueue_check "$dist/enqueue_check"
# every library it links but the C runtime's own and the CUDA ones the GPU machine has
ldd build-gpu/kiln | awk '$3 ~ /^\// {print $1, $3}' | while read -r name src; do
  case "$name" in
    libc.so.*|libm.so.*|libdl.so.*|librt.so.*|libpthread.so.*|ld-linux*|libgcc_s.so.*|libstdc++.so.*|libz.so.*) ;;
    libcudart*|libcublas*|libcudnn*|libcuda.so*) ;;
    *) cp -L "$src" "$dist/lib/" ;;
  esac
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
# one compressed file to carry (the device tool carries at most 64 MiB): gpu_check.sh unpacks it
tar -C build-gpu -cf - dist | xz -6 -T"$(nproc)" > build-gpu/dist.tar.xz
du -sh build-gpu/dist.tar.xz
