#!/usr/bin/env bash
# Set up an *emulated* aarch64 (Raspberry Pi 4 class) TVM RPC device for tests.
#
#   scripts/emulated_arm64.sh [CACHE_DIR]        (default: <repo>/.cache/arm64)
#
# What it builds (idempotent; a second run only re-checks and takes a few seconds):
#   host:   qemu-user-static + gcc-aarch64-linux-gnu (apt-get, only if missing; needs root)
#   CACHE_DIR/sysroot   Debian 12 arm64 python3.11 + the shared libraries it needs, resolved
#                       by apt itself (private apt state: the host's dpkg is NOT touched and
#                       no foreign architecture is added to it)
#   CACHE_DIR/site      aarch64 wheels unpacked: apache-tvm, apache-tvm-ffi, numpy, ml_dtypes,
#                       typing_extensions (exactly what `import tvm, tvm.rpc.server` needs)
#   CACHE_DIR/site-ort  the aarch64 onnxruntime wheel unpacked (archkit's onnxruntime runtime on
#                       the board); its own stage and stamp, so TVM's wheels are not re-fetched
#   CACHE_DIR/sysroot/proc/cpuinfo  a Cortex-A72 /proc/cpuinfo (see step 2b)
#   CACHE_DIR/bin/arm64-python   wrapper: qemu-aarch64-static -L sysroot sysroot/usr/bin/python3.11
#
# Env overrides: ARCHKIT_HOST_PYTHON (python with pip used for `pip download`),
# ARCHKIT_ARM64_{TVM,TVM_FFI,NUMPY,ML_DTYPES,TYPING_EXTENSIONS,ONNXRUNTIME}_VERSION,
# ARCHKIT_EMULATED_ONNXRUNTIME=0 (no onnxruntime on the emulated board), ARCHKIT_ARM64_SOURCES
# (a deb822 .sources file for the arm64 packages; default: the host's Debian 12 sources, else
# deb.debian.org bookworm), ARCHKIT_EMULATED_FULL_VERIFY=1 (warm runs also do the full
# `import tvm`, ~9 s, instead of the runtime-only import, ~3 s), ARCHKIT_EMULATED_WARM_VERIFY=0
# (warm runs skip the import check; the pytest fixture uses it, its server start imports tvm).
# Delete CACHE_DIR to force a rebuild; the cache is relocatable (the wrapper is rewritten).
# Exit status is non-zero with an "ERROR:" line on stderr on any failure.
set -Eeuo pipefail

log() { printf '[emulated-arm64 %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { printf '[emulated-arm64] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "[emulated-arm64] ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CACHE_DIR="${1:-$REPO_ROOT/.cache/arm64}"
mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"

# ---- pins (the device-side TVM must match the host's TVM for the RPC protocol) -------------
TVM_VERSION="${ARCHKIT_ARM64_TVM_VERSION:-0.27.0.post1}"
TVM_FFI_VERSION="${ARCHKIT_ARM64_TVM_FFI_VERSION:-0.1.14.post1}"
NUMPY_VERSION="${ARCHKIT_ARM64_NUMPY_VERSION:-2.4.6}"
ML_DTYPES_VERSION="${ARCHKIT_ARM64_ML_DTYPES_VERSION:-0.6.0}"
TYPING_EXTENSIONS_VERSION="${ARCHKIT_ARM64_TYPING_EXTENSIONS_VERSION:-4.16.0}"
ONNXRUNTIME_VERSION="${ARCHKIT_ARM64_ONNXRUNTIME_VERSION:-1.32.0}"
WITH_ORT="${ARCHKIT_EMULATED_ONNXRUNTIME:-1}"
# Root packages; apt resolves the rest (libc6, libgcc-s1, libssl3, libffi8, zlib1g, ...).
DEBS="python3.11-minimal libpython3.11-stdlib libstdc++6 libgcc-s1 zlib1g libexpat1 libssl3 libffi8"
WHEELS="apache-tvm==$TVM_VERSION apache-tvm-ffi==$TVM_FFI_VERSION numpy==$NUMPY_VERSION ml_dtypes==$ML_DTYPES_VERSION typing_extensions==$TYPING_EXTENSIONS_VERSION"
LAYOUT_VERSION=1   # bump when the layout/logic of the cache changes

SYSROOT="$CACHE_DIR/sysroot"
SITE="$CACHE_DIR/site"
SITE_ORT="$CACHE_DIR/site-ort"
APTDIR="$CACHE_DIR/apt"
WHEELDIR="$CACHE_DIR/wheels"
WRAPPER="$CACHE_DIR/bin/arm64-python"

START=$(date +%s)
log "cache dir: $CACHE_DIR"

# ---- one set-up at a time per cache dir (pytest-xdist workers, parallel CI jobs) -----------
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.lock"
  if ! flock -n 9; then
    log "another set-up holds $CACHE_DIR/.lock; waiting (max 30 min)"
    flock -w 1800 9 || die "timed out waiting for $CACHE_DIR/.lock"
  fi
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@";
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@";
  else die "need root to run: $* (install it yourself or re-run as root)"; fi
}

APT_UPDATED=0
host_apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update (host)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$CACHE_DIR/apt-host.log" 2>&1 \
      || { tail -n 20 "$CACHE_DIR/apt-host.log" >&2; die "host apt-get update failed (network?)"; }
    APT_UPDATED=1
  fi
  log "apt-get install (host): $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
    >>"$CACHE_DIR/apt-host.log" 2>&1 \
    || { tail -n 20 "$CACHE_DIR/apt-host.log" >&2; die "host apt-get install $* failed"; }
}

# ---- 1. host tools ----------------------------------------------------------------------------
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian/Ubuntu hosts only"
command -v dpkg >/dev/null 2>&1 || die "dpkg not found"
[ "$(uname -m)" = x86_64 ] || log "note: host is $(uname -m); only x86_64 hosts are tested"
need=()
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu)
dpkg -s libc6-dev-arm64-cross >/dev/null 2>&1 || need+=(libc6-dev-arm64-cross)
command -v flock >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then host_apt_install "${need[@]}"; else log "host tools present (qemu-aarch64-static, aarch64-linux-gnu-gcc)"; fi
QEMU="$(command -v qemu-aarch64-static)"

# ---- host python with pip (only used for `pip download` + unzip) -----------------------------
pick_python() {
  local c
  for c in "${ARCHKIT_HOST_PYTHON:-}" "$REPO_ROOT/.venv/bin/python" python3 /usr/bin/python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -m pip --version >/dev/null 2>&1; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

is_bookworm() { grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release && grep -qs '^ID=debian' /etc/os-release; }
stamp_of() { printf '%s\n' "layout=$LAYOUT_VERSION" "$@" | sha256sum | cut -c1-16; }
SYSROOT_STAMP="$(stamp_of "debs=$DEBS" "sources=${ARCHKIT_ARM64_SOURCES:-host}")"
SITE_STAMP="$(stamp_of "wheels=$WHEELS")"
ORT_STAMP="$(stamp_of "onnxruntime==$ONNXRUNTIME_VERSION")"

# ---- 2. arm64 sysroot (private apt: arch=arm64, empty dpkg status => full dependency closure) -
if [ -f "$SYSROOT/.archkit-stamp" ] && [ "$(cat "$SYSROOT/.archkit-stamp")" = "$SYSROOT_STAMP" ]; then
  log "arm64 sysroot cached ($SYSROOT)"
else
  log "building arm64 sysroot (python3.11 + libs) via private apt state in $APTDIR"
  rm -rf "$APTDIR/etc"
  mkdir -p "$APTDIR/lists/partial" "$APTDIR/archives/partial" "$APTDIR/etc/sources.list.d" \
           "$APTDIR/etc/preferences.d" "$APTDIR/etc/apt.conf.d"
  : >"$APTDIR/status"
  if [ -n "${ARCHKIT_ARM64_SOURCES:-}" ]; then
    cp "$ARCHKIT_ARM64_SOURCES" "$APTDIR/etc/sources.list.d/arm64.sources"
  elif is_bookworm && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$APTDIR/etc/sources.list.d/arm64.sources"
  elif is_bookworm && [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list; then
    grep '^deb ' /etc/apt/sources.list >"$APTDIR/etc/sources.list.d/arm64.list"
  else
    # Not Debian 12 (or no sources): use Debian 12 itself; needs debian-archive-keyring.
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || host_apt_install debian-archive-keyring
    cat >"$APTDIR/etc/sources.list.d/arm64.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  APTO=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
        -o Dir::State="$APTDIR" -o Dir::State::Lists="$APTDIR/lists" -o Dir::State::status="$APTDIR/status"
        -o Dir::Cache="$APTDIR" -o Dir::Cache::Archives="$APTDIR/archives"
        -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$APTDIR/etc/sources.list.d"
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$APTDIR/etc/preferences.d"
        -o Dir::Etc::Parts="$APTDIR/etc/apt.conf.d"
        -o APT::Install-Recommends=0 -o APT::Install-Suggests=0 -o Debug::NoLocking=1 -q)
  [ "$(id -u)" = 0 ] && APTO+=(-o APT::Sandbox::User=root)
  log "apt-get update (arm64 indexes, private)"
  apt-get "${APTO[@]}" update >"$APTDIR/update.log" 2>&1 \
    || { tail -n 20 "$APTDIR/update.log" >&2; die "apt-get update for arm64 failed (network? sources?)"; }
  # apt-get update exits 0 even when every mirror was unreachable: require an arm64 index.
  if ! compgen -G "$APTDIR/lists/*_binary-arm64_Packages*" >/dev/null; then
    grep -E '^(Err|W:|E:)' "$APTDIR/update.log" | tail -n 20 >&2 || true
    die "apt-get update fetched no arm64 package index (network? mirror? see $APTDIR/update.log)"
  fi
  log "resolving + downloading arm64 debs: $DEBS"
  rm -f "$APTDIR"/archives/*.deb   # only the debs of *this* resolution get unpacked
  # shellcheck disable=SC2086
  apt-get "${APTO[@]}" install --download-only -y $DEBS >"$APTDIR/download.log" 2>&1 \
    || { tail -n 20 "$APTDIR/download.log" >&2; die "downloading arm64 debs failed"; }
  rm -rf "$SYSROOT.tmp"; mkdir -p "$SYSROOT.tmp"
  n=0
  for deb in "$APTDIR"/archives/*.deb; do
    dpkg -x "$deb" "$SYSROOT.tmp"; n=$((n + 1))
  done
  [ "$n" -gt 0 ] || die "no arm64 .deb files in $APTDIR/archives"
  [ -x "$SYSROOT.tmp/usr/bin/python3.11" ] || die "python3.11 missing from the unpacked sysroot"
  # qemu -L falls back to the HOST path when a path is absent from the sysroot: shadow the
  # host's x86 python package dirs with empty ones so they never leak into sys.path.
  mkdir -p "$SYSROOT.tmp/usr/lib/python3/dist-packages" "$SYSROOT.tmp/usr/local/lib/python3.11/dist-packages" \
           "$SYSROOT.tmp/usr/local/lib/python3/dist-packages" "$SYSROOT.tmp/usr/lib/python3.11/site-packages"
  echo "$SYSROOT_STAMP" >"$SYSROOT.tmp/.archkit-stamp"
  rm -rf "$SYSROOT"; mv "$SYSROOT.tmp" "$SYSROOT"
  rm -rf "$APTDIR/archives" "$APTDIR/lists" "$APTDIR"/*.bin   # keep only the logs: saves ~35 MB
  log "arm64 sysroot ready: $n debs unpacked ($(du -sh "$SYSROOT" | cut -f1))"
fi

# ---- 2b. an ARM /proc/cpuinfo ---------------------------------------------------------------
# qemu-user 7.2 passes the host's (x86) /proc/cpuinfo through to the emulated program, and
# onnxruntime's CPU detection (the cpuinfo library) dereferences NULL when it finds no ARM
# processors there: `import onnxruntime` dies with SIGSEGV. qemu -L looks paths up in the
# sysroot first, so a Raspberry Pi 4 (4x Cortex-A72, r0p3) cpuinfo there is what it reads.
mkdir -p "$SYSROOT/proc"
{
  for i in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done
  printf 'Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B (emulated by qemu-user)\n'
} >"$SYSROOT/proc/cpuinfo.tmp"
mv "$SYSROOT/proc/cpuinfo.tmp" "$SYSROOT/proc/cpuinfo"

# ---- 3. aarch64 wheels --------------------------------------------------------------------------
if [ -f "$SITE/.archkit-stamp" ] && [ "$(cat "$SITE/.archkit-stamp")" = "$SITE_STAMP" ]; then
  log "aarch64 wheels cached ($SITE)"
else
  HOSTPY="$(pick_python)" || {
    log "no host python with pip found; installing python3-pip"
    host_apt_install python3-pip
    HOSTPY="$(pick_python)" || die "no python with pip available on the host"
  }
  log "downloading aarch64 wheels with $HOSTPY: $WHEELS"
  rm -rf "$WHEELDIR"; mkdir -p "$WHEELDIR"
  # shellcheck disable=SC2086
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$HOSTPY" -m pip download -q --no-deps --only-binary=:all: \
      --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
      --platform manylinux_2_24_aarch64 --platform manylinux_2_17_aarch64 \
      --platform manylinux2014_aarch64 --implementation cp --python-version 3.11 \
      -d "$WHEELDIR" $WHEELS >"$CACHE_DIR/pip.log" 2>&1 \
    || { grep -v "is ignored: it is neither" "$CACHE_DIR/pip.log" | tail -n 20 >&2; die "pip download of aarch64 wheels failed (network? versions?)"; }
  log "unpacking $(ls "$WHEELDIR" | wc -l) wheels"
  rm -rf "$SITE.tmp"; mkdir -p "$SITE.tmp"
  "$HOSTPY" - "$WHEELDIR" "$SITE.tmp" <<'EOF'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(src)):
    if not name.endswith(".whl"):
        continue
    with zipfile.ZipFile(os.path.join(src, name)) as zf:
        for info in zf.infolist():
            path = zf.extract(info, dst)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode)
EOF
  echo "$SITE_STAMP" >"$SITE.tmp/.archkit-stamp"
  rm -rf "$SITE"; mv "$SITE.tmp" "$SITE"
  rm -rf "$WHEELDIR"   # unpacked copy is all we need: saves ~110 MB
  log "aarch64 site-packages ready ($(du -sh "$SITE" | cut -f1))"
fi

# ---- 3b. aarch64 onnxruntime (archkit serve's second runtime) -----------------------------------
# `import onnxruntime` needs only numpy (in $SITE); flatbuffers/protobuf/packaging/sympy are for
# its tools and are not installed.
if [ "$WITH_ORT" = 0 ]; then
  log "onnxruntime skipped (ARCHKIT_EMULATED_ONNXRUNTIME=0)"
  rm -rf "$SITE_ORT"
elif [ -f "$SITE_ORT/.archkit-stamp" ] && [ "$(cat "$SITE_ORT/.archkit-stamp")" = "$ORT_STAMP" ]; then
  log "aarch64 onnxruntime cached ($SITE_ORT)"
else
  HOSTPY="${HOSTPY:-$(pick_python)}" || die "no python with pip available on the host"
  log "downloading the aarch64 onnxruntime==$ONNXRUNTIME_VERSION wheel with $HOSTPY"
  rm -rf "$WHEELDIR"; mkdir -p "$WHEELDIR"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$HOSTPY" -m pip download -q --no-deps --only-binary=:all: \
      --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
      --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
      --implementation cp --python-version 3.11 \
      -d "$WHEELDIR" "onnxruntime==$ONNXRUNTIME_VERSION" >"$CACHE_DIR/pip-ort.log" 2>&1 \
    || { grep -v "is ignored: it is neither" "$CACHE_DIR/pip-ort.log" | tail -n 20 >&2; die "pip download of the aarch64 onnxruntime wheel failed"; }
  rm -rf "$SITE_ORT.tmp"; mkdir -p "$SITE_ORT.tmp"
  "$HOSTPY" -c 'import sys, zipfile, glob; [zipfile.ZipFile(w).extractall(sys.argv[2]) for w in glob.glob(sys.argv[1] + "/*.whl")]' \
    "$WHEELDIR" "$SITE_ORT.tmp"
  echo "$ORT_STAMP" >"$SITE_ORT.tmp/.archkit-stamp"
  rm -rf "$SITE_ORT"; mv "$SITE_ORT.tmp" "$SITE_ORT"
  rm -rf "$WHEELDIR"
  log "aarch64 onnxruntime ready ($(du -sh "$SITE_ORT" | cut -f1))"
fi
ORT_PATH=""
[ -d "$SITE_ORT" ] && ORT_PATH=":$SITE_ORT"

# ---- 4. wrapper ---------------------------------------------------------------------------------
mkdir -p "$CACHE_DIR/bin"
cat >"$WRAPPER.tmp" <<EOF
#!/bin/sh
# Generated by scripts/emulated_arm64.sh: aarch64 python3.11 under qemu user-mode emulation.
# Set TVM_USE_RUNTIME_LIB=1 to skip loading libtvm_compiler.so (import ~3x faster).
PYTHONPATH="$SITE$ORT_PATH\${PYTHONPATH:+:\$PYTHONPATH}" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 \\
  exec "$QEMU" -L "$SYSROOT" "$SYSROOT/usr/bin/python3.11" "\$@"
EOF
chmod +x "$WRAPPER.tmp"; mv "$WRAPPER.tmp" "$WRAPPER"

# ---- 5. verify ----------------------------------------------------------------------------------
# Cold run: full `import tvm` (also loads libtvm_compiler.so); warm run: runtime-only import,
# which is exactly what the RPC server uses, ~3 s instead of ~9 s.
VERIFY_STAMP="$SYSROOT_STAMP-$SITE_STAMP-$([ "$WITH_ORT" = 0 ] && echo no-ort || echo "$ORT_STAMP")"
if [ -f "$CACHE_DIR/.verified" ] && [ "$(cat "$CACHE_DIR/.verified")" = "$VERIFY_STAMP" ] \
   && [ "${ARCHKIT_EMULATED_WARM_VERIFY:-1}" = 0 ] && [ "${ARCHKIT_EMULATED_FULL_VERIFY:-0}" != 1 ]; then
  # The caller (the pytest fixture) imports tvm under qemu right after anyway.
  log "verified before; skipping the warm import check (ARCHKIT_EMULATED_WARM_VERIFY=0)"
  out="aarch64 $TVM_VERSION (verified at cold set-up)"
elif [ -f "$CACHE_DIR/.verified" ] && [ "$(cat "$CACHE_DIR/.verified")" = "$VERIFY_STAMP" ] && [ "${ARCHKIT_EMULATED_FULL_VERIFY:-0}" != 1 ]; then
  log "verifying (runtime-only import) under qemu"
  out="$(TVM_USE_RUNTIME_LIB=1 "$WRAPPER" -c 'import platform, tvm, tvm.rpc.server; print(platform.machine(), tvm.__version__)' 2>&1)" \
    || { printf '%s\n' "$out" | tail -n 20 >&2; die "emulated python failed to import tvm (delete $CACHE_DIR to rebuild)"; }
else
  log "verifying: $QEMU -L $SYSROOT $SYSROOT/usr/bin/python3.11 -c 'import tvm'"
  rm -f "$CACHE_DIR/.verified"
  out="$("$WRAPPER" -c 'import platform, numpy, tvm, tvm.rpc.server; print(platform.machine(), tvm.__version__, "numpy", numpy.__version__)' 2>&1)" \
    || { printf '%s\n' "$out" | tail -n 20 >&2; die "emulated python failed to import tvm"; }
  if [ "$WITH_ORT" != 0 ]; then
    ort_out="$("$WRAPPER" -c 'import onnxruntime; print("onnxruntime", onnxruntime.__version__)' 2>&1)" \
      || { printf '%s\n' "$ort_out" | tail -n 20 >&2; die "emulated python failed to import onnxruntime (ARCHKIT_EMULATED_ONNXRUNTIME=0 skips it)"; }
    log "$(printf '%s' "$ort_out" | tail -n 1) imports under qemu"
  fi
  echo "$VERIFY_STAMP" >"$CACHE_DIR/.verified"
fi
printf '%s\n' "$out" | tail -n 1 | grep -q "^aarch64 $TVM_VERSION" \
  || { printf '%s\n' "$out" >&2; die "unexpected verification output"; }
log "OK: $(printf '%s' "$out" | tail -n 1) (emulated) in $(( $(date +%s) - START ))s"
log "python: $WRAPPER"
echo "ARCHKIT_ARM64_PYTHON=$WRAPPER"
