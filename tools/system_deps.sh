#!/usr/bin/env bash
# System tools sparsec's setup needs (present on the dev image; installed here on a bare Debian machine):
# a C++ toolchain and cmake for the x86 EP, and for the ARM target the aarch64 cross toolchain plus qemu-user,
# which the ARM tests use to run the cross-built example host; for the wasm target Debian's emscripten (links the
# kernels), node + npm (run artifacts, install onnxruntime-web) and chromium (the browser test).
# Idempotent: does nothing when all are present.
set -euo pipefail
declare -A pkg_of=(
  [cmake]=cmake [g++]=g++ [make]=make
  [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu [aarch64-linux-gnu-g++]=g++-aarch64-linux-gnu
  [qemu-aarch64]=qemu-user
  [emcc]=emscripten [node]=nodejs [npm]=npm [chromium]=chromium
)
missing=()
for tool in "${!pkg_of[@]}"; do command -v "$tool" >/dev/null || missing+=("${pkg_of[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
