#!/usr/bin/env bash
# The device check, run from the repository root on the GPU machine (no Node.js, no network there). It
# verifies and unpacks the loads of gpu-backend/device/pack/ (made by pack.sh) that this machine holds:
# load1 always; for CUDA the full provider when all its pieces (load3..) are here, else the sm_90 one
# (load2), or DEVICE_PROVIDER=full|sm90 to choose. A warm machine keeps the loads of earlier calls, so a
# provider can arrive in a call of its own. Then it finds CUDA 13's libraries (cuda-env.sh), installs the
# Vulkan loader if the machine has none, records nvidia-smi, and runs the bundled check. Extra flags go
# to check.ts (default --ep webgpu). Results: check.log, check.json, check-table.txt and gpu.txt under
# $OUT (or $DEVICE_CHECK_DIR/out). --unpack-only stops after unpacking and finding the CUDA libraries.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
pack="$here/pack"
work="${DEVICE_CHECK_DIR:-/tmp/device-check}"
out="${OUT:-$work/out}"
[ -f "$pack/load1/check.mjs" ] || { echo "check.sh: $pack/load1 is missing: run gpu-backend/device/pack.sh here and carry gpu-backend/device/pack/load1" >&2; exit 2; }
mkdir -p "$work" "$out"

unxz_stream() { # stdin -> stdout, with xz or Python's lzma where xz is missing
  if command -v xz >/dev/null; then xz -dc -T0; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)'; fi
}

started=$(date +%s)
for load in "$pack"/load*/; do
  (cd "$load" && sha256sum --quiet -c SHA256SUMS) || { echo "check.sh: $(basename "$load") does not match its SHA256SUMS: pack and carry it again" >&2; exit 2; }
done
unxz_stream < "$pack/load1/node.xz" > "$work/node" && chmod +x "$work/node"
rm -rf "$work/node_modules" && unxz_stream < "$pack/load1/node_modules.tar.xz" | tar xf - -C "$work"
cp "$pack/load1/check.mjs" "$work/check.mjs"
# The addon's RUNPATH is build/Release/../../../../node_modules/onnxruntime-node/...: the same tree here.
mkdir -p "$work/gpu-backend/native/build/Release"
cp "$pack/load1/native_session.node" "$work/gpu-backend/native/build/Release/"
core="$work/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"

full_pieces=$(cat "$pack"/load*/provider-full.pieces 2>/dev/null | head -1)
have_pieces=$(ls "$pack"/load*/provider-full.tar.xz.? 2>/dev/null | wc -l)
provider="${DEVICE_PROVIDER:-}"
if [ -z "$provider" ]; then
  if [ -n "$full_pieces" ] && [ "$have_pieces" = "$full_pieces" ]; then provider=full
  elif [ -f "$pack/load2/provider-sm90.tar.xz" ]; then provider=sm90
  else provider=none; fi
fi
case "$provider" in
  full)
    [ -n "$full_pieces" ] && [ "$have_pieces" = "$full_pieces" ] || { echo "check.sh: the full provider has $have_pieces of ${full_pieces:-?} pieces here" >&2; exit 2; }
    # Pieces in their suffix order (.0, .1, ...), whichever load holds them.
    ls "$pack"/load*/provider-full.tar.xz.? | awk -F. '{ print $NF " " $0 }' | sort -n | cut -d' ' -f2- | xargs cat | unxz_stream | tar xf - -C "$core" ;;
  sm90) unxz_stream < "$pack/load2/provider-sm90.tar.xz" | tar xf - -C "$core" ;;
  none) ;;
  *) echo "check.sh: DEVICE_PROVIDER must be full or sm90, got $provider" >&2; exit 2 ;;
esac
echo "unpacked in $(( $(date +%s) - started )) s: node $("$work/node" --version), CUDA provider: $provider ($have_pieces/${full_pieces:-0} full pieces here)"

# CUDA 13 libraries: a system CUDA or NVIDIA's pip wheels (inside the machine's PyTorch environment).
if cuda_env=$(bash "$here/cuda-env.sh" 2>"$out/cuda-env.txt"); then
  eval "$cuda_env"
  echo "cuda libraries: ${LD_LIBRARY_PATH}"
else
  echo "cuda libraries: $(cat "$out/cuda-env.txt")"
fi

case " $* " in *" --unpack-only "*) exit 0 ;; esac

# Vulkan loader (Dawn, the WebGPU provider's backend, loads libvulkan.so.1). Only into a machine that
# lacks one, and only as root: these .debs are extracted over / as the device README prescribes.
if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
  if [ "$(id -u)" = 0 ]; then
    for f in "$pack"/load1/debs/*.deb; do dpkg -x "$f" /; done
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

{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv 2>&1 || echo "no nvidia-smi"; } > "$out/gpu.txt"
echo "cuda provider: $provider" >> "$out/gpu.txt"
cat "$out/gpu.txt"

args=("$@")
case " $* " in *" --ep "*) ;; *) args=(--ep webgpu "${args[@]}") ;; esac
cd "$work" && ./node check.mjs --out "$out" --native-addon "$work/gpu-backend/native/build/Release/native_session.node" "${args[@]}" 2>&1 | tee "$out/check.log"
exit "${PIPESTATUS[0]}"
