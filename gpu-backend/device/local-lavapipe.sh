#!/usr/bin/env bash
# Runs the device check's WebGPU path here, without a GPU, on lavapipe (Mesa's software Vulkan driver):
# proves the WebGPU provider, the resident KV cache and gpu-buffer IO binding; its speed means nothing.
# Debian 12's Mesa 22.3 lavapipe is refused by Dawn ("shaderUniform*ArrayDynamicIndexing required"), so
# Mesa 25 from bookworm-backports is unpacked into a scratch folder (nothing installed system-wide).
# Needs once, as root: apt-get install mesa-vulkan-drivers libvulkan1 (for the loader and Mesa's deps).
# Usage, from the repository root: gpu-backend/device/local-lavapipe.sh [check.ts flags]
set -euo pipefail

mesa="${LAVAPIPE_DIR:-/tmp/lavapipe-mesa25}"
if [ ! -f "$mesa/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" ]; then
  mkdir -p "$mesa/lists/partial" "$mesa/debs"
  echo 'deb http://deb.debian.org/debian bookworm-backports main' > "$mesa/sources.list"
  o="-oDir::Etc::SourceList=$mesa/sources.list -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists=$mesa/lists -oAPT::Architecture=amd64 -oDebug::NoLocking=1"
  apt-get $o update -qq 2>&1 | grep -v unsandboxed || true
  (cd "$mesa/debs" && apt-get $o download mesa-vulkan-drivers libdrm2 libdrm-amdgpu1 2>&1 | grep -v -e unsandboxed -e '^W:' || true)
  for f in "$mesa"/debs/*.deb; do dpkg -x "$f" "$mesa"; done
fi
lib="$mesa/usr/lib/x86_64-linux-gnu"
sed "s#\"libvulkan_lvp.so\"#\"$lib/libvulkan_lvp.so\"#" "$mesa/usr/share/vulkan/icd.d/lvp_icd.json" > "$mesa/lvp_icd.json"
export VK_DRIVER_FILES="$mesa/lvp_icd.json" LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
exec npx tsx gpu-backend/device/check.ts --ep webgpu --local "$@"
