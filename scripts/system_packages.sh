#!/usr/bin/env bash
# Install the Debian packages archkit's tests and demo need, once (idempotent, quiet when done).
# Usage: scripts/system_packages.sh [GROUP...]   groups: chromium postgres arm64 (default: all)
set -euo pipefail
declare -A GROUP=(
  [chromium]="chromium fonts-dejavu-core"
  [postgres]="postgresql"
  [arm64]="gcc-aarch64-linux-gnu qemu-user-static"
)
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(chromium postgres arm64)
missing=()
for g in "${groups[@]}"; do
  for pkg in ${GROUP[$g]:?unknown group $g}; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system_packages.sh: need root to apt-get install: ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
