#!/usr/bin/env bash
# The device check, run from the repository root on the GPU machine (no Node.js, no network there):
# unpacks gpu-backend/device/pack/ (made by pack.sh, carried by the run), installs the Vulkan loader
# if the machine has none, and runs the bundled check. Extra flags go to check.ts (default --ep webgpu).
# Results: check.log, check.json, check-table.txt and gpu.txt under $OUT (or $DEVICE_CHECK_DIR/out).
set -uo pipefail

pack="$(cd "$(dirname "$0")" && pwd)/pack"
work="${DEVICE_CHECK_DIR:-/tmp/device-check}"
out="${OUT:-$work/out}"
[ -f "$pack/check.mjs" ] || { echo "check.sh: $pack is empty: run gpu-backend/device/pack.sh here and carry gpu-backend/device/pack" >&2; exit 2; }
mkdir -p "$work" "$out"

unxz_to() { # unxz_to FILE: decompress to stdout with xz, or Python's lzma where xz is missing
  if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}

started=$(date +%s)
unxz_to "$pack/node.xz" > "$work/node" && chmod +x "$work/node"
rm -rf "$work/node_modules" && unxz_to "$pack/node_modules.tar.xz" | tar xf - -C "$work"
cp "$pack/check.mjs" "$work/check.mjs"
echo "unpacked in $(( $(date +%s) - started )) s: $("$work/node" --version)"

# Vulkan loader (Dawn, the WebGPU provider's backend, loads libvulkan.so.1). Only into a machine that
# lacks one, and only as root: these .debs are extracted over / as the device README prescribes.
if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
  if [ "$(id -u)" = 0 ]; then
    for f in "$pack"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
  else
    echo "check.sh: no libvulkan.so.1 and not root: the webgpu provider will not find an adapter" >&2
  fi
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then
  export VK_DRIVER_FILES="$nvidia_icd"
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv 2>&1 || echo "no nvidia-smi"; } > "$out/gpu.txt"
cat "$out/gpu.txt"

args=("$@")
case " $* " in *" --ep "*) ;; *) args=(--ep webgpu "${args[@]}") ;; esac
cd "$work" && ./node check.mjs --out "$out" "${args[@]}" 2>&1 | tee "$out/check.log"
exit "${PIPESTATUS[0]}"
