#!/usr/bin/env bash
# The Kafka-compatible broker the tests and examples use: tansu 0.6.0 with its
# SQLite storage engine, on loopback only.
#
#   scripts/kafka-broker.sh install          # build tansu once (cached in ~/.cargo/bin)
#   TANSU_PROFILE=release scripts/kafka-broker.sh install
#                                            # an optimized build, for benchmarks
#   scripts/kafka-broker.sh start [PORT]     # start it in the background (default 9092)
#   scripts/kafka-broker.sh stop  [PORT]
#   scripts/kafka-broker.sh path             # print the binary's path
#
# The tests start their own broker on a free port
# (crates/conveyor-testkit/src/kafka_broker.rs); `start` is for examples, the
# CLI and benchmarks.
# The tests' broker is an unoptimized build: about 5 minutes on 2 cores
# instead of 16 for an optimized one, and the Kafka tests take 0.6 s longer
# on it (16.0 s against 15.4 s). Benchmarks measure the broker too: build
# them one with TANSU_PROFILE=release (the profile built is recorded beside
# the binary; an optimized one serves the tests as well). Later runs find
# it cached.
set -euo pipefail

VERSION=0.6.0
BIN_DIR="${CARGO_HOME:-$HOME/.cargo}/bin"

tansu_bin() {
  if [[ -n "${CONVEYOR_TANSU:-}" ]]; then
    echo "$CONVEYOR_TANSU"
  elif [[ -x "$BIN_DIR/tansu" ]]; then
    echo "$BIN_DIR/tansu"
  else
    command -v tansu || true
  fi
}

# The profile asked for: debug (the default) or release.
wanted_profile() {
  case "${TANSU_PROFILE:-debug}" in
    release) echo release ;;
    *) echo debug ;;
  esac
}

# The profile of the tansu installed here: what the last install recorded
# (one from before the record was kept is an optimized build).
installed_profile() {
  cat "$BIN_DIR/.conveyor-tansu-profile" 2>/dev/null || echo release
}

# Whether the installed tansu serves: the version pinned, and optimized if
# an optimized one is asked for.
installed_serves() {
  local have
  have=$(installed_version || true)
  [[ "$have" == "$VERSION" ]] || return 1
  [[ "$(wanted_profile)" == debug || "$(installed_profile)" == release ]]
}

installed_version() {
  # cargo records what it installed; a tansu found elsewhere is taken as is.
  local bin
  bin=$(tansu_bin)
  [[ -n "$bin" && -x "$bin" ]] || return 1
  if cargo install --list 2>/dev/null | grep -q "^tansu v"; then
    cargo install --list | sed -n 's/^tansu v\([0-9.]*\):$/\1/p'
  else
    echo "$VERSION"
  fi
}

cmd_install() {
  if installed_serves; then
    echo "tansu $VERSION ($(installed_profile)): $(tansu_bin)"
    return 0
  fi
  # Several test binaries (or a person) may ask at once: one builds, the
  # others wait on the lock and then find the binary.
  mkdir -p "$BIN_DIR"
  exec 9>"$BIN_DIR/.conveyor-tansu-install.lock"
  if ! flock -n 9; then
    echo "waiting for another install of tansu to finish..."
    flock 9
  fi
  if installed_serves; then
    echo "tansu $VERSION ($(installed_profile)): $(tansu_bin)"
    return 0
  fi
  local profile flags=()
  profile=$(wanted_profile)
  [[ "$profile" == debug ]] && flags=(--debug)
  echo "building tansu $VERSION, $profile (about $([[ $profile == debug ]] && echo 5 || echo 16) minutes on 2 cores; cached afterwards)..."
  local started=$SECONDS
  cargo install tansu --version "$VERSION" --locked --features libsql --force --quiet "${flags[@]}"
  echo "$profile" > "$BIN_DIR/.conveyor-tansu-profile"
  echo "tansu $VERSION built ($profile) in $((SECONDS - started)) s: $(tansu_bin)"
}

cmd_start() {
  local port=${1:-9092}
  local dir=${KAFKA_BROKER_DIR:-${TMPDIR:-/tmp}/conveyor-kafka-$port}
  local bin
  bin=$(tansu_bin)
  if [[ -z "$bin" ]]; then
    echo "tansu is not installed: run $0 install" >&2
    return 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "something already listens on 127.0.0.1:$port"
    return 0
  fi
  mkdir -p "$dir"
  # tansu reads the URL's path as relative: run it inside its directory.
  (cd "$dir" && exec nohup "$bin" broker \
    --storage-engine "sqlite://tansu.db" \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    >"$dir/broker.log" 2>&1) &
  echo $! >"$dir/broker.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "tansu listening on 127.0.0.1:$port (data and log in $dir, pid $(cat "$dir/broker.pid"))"
      return 0
    fi
    sleep 0.1
  done
  echo "tansu did not start; see $dir/broker.log" >&2
  return 1
}

cmd_stop() {
  local port=${1:-9092}
  local dir=${KAFKA_BROKER_DIR:-${TMPDIR:-/tmp}/conveyor-kafka-$port}
  if [[ -f "$dir/broker.pid" ]]; then
    kill "$(cat "$dir/broker.pid")" 2>/dev/null || true
    rm -f "$dir/broker.pid"
    echo "stopped the broker on 127.0.0.1:$port"
  else
    echo "no broker started by this script on port $port"
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  path) tansu_bin ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
