#!/usr/bin/env bash
# OpenSSH for the SSH-tunnel tests of archkit.device (a throwaway sshd on 127.0.0.1).
#
#   bash scripts/sshd.sh        install Debian's openssh-server and openssh-client if missing,
#                               then print the sshd path: ARCHKIT_SSHD=/usr/sbin/sshd
#
# The tests (tests/device/sshd.py) start their own sshd on a free 127.0.0.1 port with a config,
# a host key and an authorized key in a temporary folder, and stop it afterwards; nothing here
# touches the system's sshd configuration or starts its service.
# Idempotent. Needs root (or sudo) and network for apt-get when something is missing.
set -euo pipefail
pkgs=()
[ -x /usr/sbin/sshd ] || pkgs+=(openssh-server)
command -v ssh >/dev/null 2>&1 || pkgs+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || pkgs+=(openssh-client)
if [ ${#pkgs[@]} -gt 0 ]; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
  command -v apt-get >/dev/null 2>&1 || { echo "sshd.sh: ERROR: ${pkgs[*]} missing and no apt-get" >&2; exit 1; }
  echo "[archkit.device] apt-get install ${pkgs[*]}" >&2
  # policy-rc.d 101: the package must not start (or enable) the system's sshd service.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
    made_policy=1
  fi
  trap '[ "$made_policy" = 1 ] && as_root rm -f "$policy"' EXIT
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    $(printf '%s\n' "${pkgs[@]}" | sort -u) >&2
fi
[ -x /usr/sbin/sshd ] || { echo "sshd.sh: ERROR: /usr/sbin/sshd missing after install" >&2; exit 1; }
echo "ARCHKIT_SSHD=/usr/sbin/sshd"
