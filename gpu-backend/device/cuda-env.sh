#!/usr/bin/env bash
# Prints an `export LD_LIBRARY_PATH=...` line that adds the folders holding CUDA 13's runtime libraries
# (cudart, cuBLAS, cuBLASLt, cuRAND, cuDNN) wherever they are installed: a system CUDA, or NVIDIA's pip
# wheels inside a Python environment (how the GPU machines carry CUDA). The dynamic loader reads
# LD_LIBRARY_PATH only when a process starts, so set it before starting the backend:
#   eval "$(gpu-backend/device/cuda-env.sh)" && npm run backend -- --ep cuda --runtime native ...
# Exit 1 (and the missing names on stderr) when a library the CUDA provider links is not found.
set -uo pipefail

roots=("$@")
[ ${#roots[@]} -gt 0 ] || roots=(/usr/local/cuda /usr/lib/x86_64-linux-gnu /opt /usr/local/lib /usr/lib/python3 /root /home /venv /workspace)
needed=(libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10)
wanted=("${needed[@]}" libcudnn.so.9)

expr=()
for name in "${wanted[@]}"; do expr+=(-name "$name" -o); done
unset 'expr[${#expr[@]}-1]'
mapfile -t found < <(find "${roots[@]}" -xdev \( "${expr[@]}" \) 2>/dev/null)

folders=()
missing=()
for name in "${needed[@]}"; do
  hit=""
  for file in "${found[@]}"; do [ "$(basename "$file")" = "$name" ] && { hit=$file; break; }; done
  if [ -z "$hit" ]; then missing+=("$name"); continue; fi
  folders+=("$(dirname "$hit")")
done
for file in "${found[@]}"; do [ "$(basename "$file")" = libcudnn.so.9 ] && { folders+=("$(dirname "$file")"); break; }; done

joined=$(printf '%s\n' "${folders[@]}" | awk '!seen[$0]++' | paste -sd: -)
echo "export LD_LIBRARY_PATH=${joined}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "cuda-env: not found under ${roots[*]}: ${missing[*]}" >&2
  exit 1
fi
