#!/usr/bin/env bash
# The server programs the tests start of their own (a private server they
# kill and restart, or configure): redis-server, PostgreSQL's initdb and
# pg_ctl, nats-server, RabbitMQ, and `script` (Debian packages redis-server,
# postgresql, nats-server, rabbitmq-server, bsdutils).
#
#   scripts/test-servers.sh install   # install the missing ones (apt-get; sudo when not root)
#   scripts/test-servers.sh check     # list what is missing, fail if anything is
#
# Where one is missing, `cargo test` lists its tests as ignored, with the
# reason; under CI=true they run and fail instead (.ci/run installs them
# first). Where they are looked for: crates/conveyor-testkit/src/programs.rs.
set -euo pipefail

# package:program:folders to look in besides PATH
wanted=(
  "redis-server:redis-server:/usr/local/bin /usr/bin /usr/sbin"
  "redis-tools:redis-cli:/usr/local/bin /usr/bin /usr/sbin"
  "postgresql:initdb:/usr/local/bin /usr/lib/postgresql/*/bin"
  "postgresql:pg_ctl:/usr/local/bin /usr/lib/postgresql/*/bin"
  "postgresql:pg_basebackup:/usr/local/bin /usr/lib/postgresql/*/bin"
  "postgresql:psql:/usr/local/bin /usr/lib/postgresql/*/bin"
  "nats-server:nats-server:/usr/local/bin /usr/bin /usr/sbin"
  "rabbitmq-server:/usr/lib/rabbitmq/bin/rabbitmq-server:"
  "bsdutils:script:/usr/local/bin /usr/bin /usr/sbin"
)

found() {
  local program=$1 dirs=$2 dir
  if [[ $program == /* ]]; then
    [[ -x $program ]]
    return
  fi
  command -v "$program" >/dev/null && return 0
  for dir in $dirs; do
    [[ -x $dir/$program ]] && return 0
  done
  return 1
}

missing_packages() {
  local entry package program dirs
  for entry in "${wanted[@]}"; do
    IFS=: read -r package program dirs <<<"$entry"
    found "$program" "$dirs" || echo "$package"
  done | sort -u
}

case "${1:-}" in
  install)
    mapfile -t missing < <(missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
      echo "the test servers' programs are installed"
      exit 0
    fi
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
      command -v sudo >/dev/null || { echo "installing ${missing[*]} needs root (or sudo)" >&2; exit 1; }
      sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    left=$(missing_packages)
    [[ -z $left ]] || { echo "still missing after apt-get install: $left" >&2; exit 1; }
    echo "installed: ${missing[*]}"
    ;;
  check)
    left=$(missing_packages)
    [[ -z $left ]] || { echo "missing (Debian packages): $left" >&2; exit 1; }
    echo "the test servers' programs are installed"
    ;;
  *)
    echo "usage: $0 install|check" >&2
    exit 2
    ;;
esac
