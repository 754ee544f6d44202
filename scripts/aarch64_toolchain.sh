#!/usr/bin/env bash
# Install what archkit.device needs on a Debian/Ubuntu host to build for aarch64 boards:
# the cross compiler used by export_library (devices/rpi4.yaml, jetson-nano.yaml, arm64.yaml)
# and the aarch64 C library it links against (crti.o, libc.so).
# Idempotent: installs only what is missing. Needs root (or sudo) and network for apt-get.
#
#   bash scripts/aarch64_toolchain.sh
set -euo pipefail
pkgs=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || pkgs+=(gcc-aarch64-linux-gnu)
dpkg -s libc6-dev-arm64-cross >/dev/null 2>&1 || pkgs+=(libc6-dev-arm64-cross)
if [ ${#pkgs[@]} -eq 0 ]; then
  echo "[archkit.device] aarch64 cross toolchain present: $(aarch64-linux-gnu-gcc --version | head -n1)"
  exit 0
fi
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
echo "[archkit.device] apt-get install ${pkgs[*]}"
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
aarch64-linux-gnu-gcc --version | head -n1
