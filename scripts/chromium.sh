#!/usr/bin/env bash
# Install Debian's chromium if it is missing, and print the path of the browser binary.
#
#   scripts/chromium.sh            prints e.g. /usr/bin/chromium (the last line of stdout)
#
# archkit needs a Chrome/Chromium for two things: kaleido 1.x's static image export (PNG) of the
# plotly figures in reports/, and the headless render test of the HTML plots (tests/report/).
# kaleido 1.x no longer bundles a browser; archkit points it at this one through the
# BROWSER_PATH environment variable (read by choreographer, kaleido's browser driver).
#
# Idempotent: when a browser is already there (ARCHKIT_CHROMIUM, chromium, chromium-browser,
# google-chrome) nothing is installed. Installing needs root and apt-get (Debian/Ubuntu).
# Exit status is non-zero with an "ERROR:" line on stderr on any failure.
set -Eeuo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }
die() { printf '[chromium] ERROR: %s\n' "$*" >&2; exit 1; }

find_browser() {
  local candidate
  for candidate in "${ARCHKIT_CHROMIUM:-}" chromium chromium-browser google-chrome; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if browser="$(find_browser)"; then
  printf '%s\n' "$browser"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "no chromium found and apt-get is not available; install Chromium or Chrome and set ARCHKIT_CHROMIUM to its path"
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "installing chromium needs root (or sudo)"
  SUDO=(sudo)
else
  SUDO=()
fi

log "installing Debian's chromium (apt-get; a few minutes)"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2 || die "apt-get update failed"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-liberation >&2 \
  || die "apt-get install chromium failed"
browser="$(find_browser)" || die "chromium was installed but no chromium binary is on PATH"
log "installed: $("$browser" --version 2>/dev/null || echo "$browser")"
printf '%s\n' "$browser"
