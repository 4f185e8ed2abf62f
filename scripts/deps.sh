#!/usr/bin/env bash
# deps.sh — installs what kiln needs on Debian 12: the build's Debian packages (as root, only
# those missing) and, with --python, a venv in .venv with the pinned test tools of
# tests/requirements.txt. Sourced by setup.sh and test.sh; safe to run again.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pkgs=(build-essential cmake ninja-build pkg-config libprotobuf-c-dev protobuf-c-compiler libonnx-dev
      libzip-dev libcjson-dev libstb-dev zlib1g-dev python3-venv libcairo2-dev libdnnl-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = "--python" ]; then
  venv="$root/.venv"
  stamp="$venv/.requirements"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$root/tests/requirements.txt" "$stamp"; then
    echo "deps: creating $venv with tests/requirements.txt" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/requirements.txt"
    cp "$root/tests/requirements.txt" "$stamp"
  fi
fi
