#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for tests of shared Optuna storage.
#
#   scripts/postgres.sh install            install Debian's postgresql if no initdb is found
#   scripts/postgres.sh start DIR [PORT]   create a cluster in DIR (if needed), start it, and print
#                                          its URL: postgresql://archkit@127.0.0.1:PORT/archkit
#                                          (a free port the first time; DIR keeps it, so a URL
#                                          printed once works after stop and start again)
#   scripts/postgres.sh stop DIR           stop the cluster (DIR is left for the caller to delete)
#   scripts/postgres.sh url DIR            print the URL of a started cluster
#
# Trust authentication, listening on 127.0.0.1 only: for tests, never for data that matters.
# PostgreSQL refuses to run as root; as root the cluster runs as the 'postgres' user (or
# 'nobody'), which gets ownership of DIR; DIR's parents must be searchable by that user.
set -euo pipefail

find_bin() {
  local found
  if command -v pg_ctl >/dev/null 2>&1; then
    # Follow links (Debian links pg_ctl into /usr/local/bin or /usr/bin, but not psql).
    found=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    if [[ -x "$found/initdb" && -x "$found/psql" ]]; then
      echo "$found"
      return 0
    fi
  fi
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n "$found" && -x "$found/pg_ctl" ]]; then
    echo "$found"
    return 0
  fi
  return 1
}

install_pg() {
  if find_bin >/dev/null; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "postgres.sh: PostgreSQL is missing and apt-get is not available; install it" >&2
    exit 2
  fi
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  find_bin >/dev/null || { echo "postgres.sh: installed, but no pg_ctl found" >&2; exit 2; }
}

as_owner() {
  # Run "$@" as the cluster owner (root cannot run PostgreSQL).
  if [[ $(id -u) -ne 0 ]]; then
    "$@"
  else
    local user=postgres
    id "$user" >/dev/null 2>&1 || user=nobody
    runuser -u "$user" -- "$@"
  fi
}

owner_name() {
  if [[ $(id -u) -ne 0 ]]; then id -un; elif id postgres >/dev/null 2>&1; then echo postgres;
  else echo nobody; fi
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

port_is_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
# As PostgreSQL binds: connections just closed (TIME_WAIT) do not make the port busy.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

start() {
  local dir=$1 port=${2:-}
  install_pg
  local bin
  bin=$(find_bin)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ -z "$port" && -f "$dir/port" ]]; then
    # The port this directory had: the URL printed before keeps working.
    port=$(cat "$dir/port")
    if [[ -f "$dir/data/postmaster.pid" ]] \
        && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      url "$dir"  # already running
      return 0
    fi
    if ! port_is_free "$port"; then
      echo "postgres.sh: port $port of $dir is taken by another program; free it or pass PORT" >&2
      exit 1
    fi
  fi
  [[ -z "$port" ]] && port=$(free_port)
  if [[ $(id -u) -eq 0 ]]; then
    chown -R "$(owner_name)" "$dir"
  fi
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    as_owner "$bin/initdb" -D "$dir/data" -U archkit --auth=trust -E UTF8 --no-sync \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  # fsync off: a throwaway test cluster, and CI disks are slow.
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=100" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "$port" >"$dir/port"
  if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U archkit -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'archkit'" | grep -q 1; then
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U archkit archkit
  fi
  url "$dir"
}

stop() {
  local dir=$1 bin
  bin=$(find_bin) || exit 0
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  fi
}

url() {
  local dir=$1
  echo "postgresql://archkit@127.0.0.1:$(cat "$dir/port")/archkit"
}

case "${1:-}" in
  install) install_pg ;;
  start) [[ $# -ge 2 ]] || { echo "usage: $0 start DIR [PORT]" >&2; exit 2; }; start "$2" "${3:-}" ;;
  stop) [[ $# -ge 2 ]] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  url) [[ $# -ge 2 ]] || { echo "usage: $0 url DIR" >&2; exit 2; }; url "$2" ;;
  *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
