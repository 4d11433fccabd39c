#!/usr/bin/env bash
# The schedules failover test in rounds: three `conveyor worker` processes,
# a schedule firing every second, the leader SIGKILLed twice, each round
# CONVEYOR_SOAK_SECS long (default 60, the issue's minute); every fire time
# must be enqueued exactly once. Prints each round's verdict and its
# failover lateness lines.
#
#     scripts/schedule-failover.sh ROUNDS [BACKEND...]
#
# BACKEND is embedded, redis, postgres or nats (default: all four), each
# round in a fresh namespace of the loopback service. The test binary is
# built once, then run directly, so a build elsewhere cannot stall a round.
# Twenty rounds of one backend take about twenty minutes: keep them out of
# CI, which runs one 20-second round on the embedded store.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:?usage: scripts/schedule-failover.sh ROUNDS [BACKEND...]}
shift
backends=("${@:-embedded redis postgres nats}")
read -r -a backends <<< "${backends[*]}"
export CONVEYOR_SOAK_SECS=${CONVEYOR_SOAK_SECS:-60}
bin=$(cargo test -q -p conveyor-cli --test schedule_failover --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "schedule_failover" in m["executable"]:
        print(m["executable"])' | tail -1)
[ -x "$bin" ] || { echo "could not build the schedule_failover test" >&2; exit 1; }
passed=0
failed=0
for r in $(seq 1 "$rounds"); do
  for b in "${backends[@]}"; do
    ns="fo$(date +%s%N | tail -c 9)"
    case "$b" in
      embedded) unset CONVEYOR_FAILOVER_BACKEND ;;
      redis) export CONVEYOR_FAILOVER_BACKEND="redis://127.0.0.1:6379/0?prefix=$ns:" ;;
      postgres) export CONVEYOR_FAILOVER_BACKEND="postgres://postgres@127.0.0.1/test?schema=$ns" ;;
      nats) export CONVEYOR_FAILOVER_BACKEND="nats://127.0.0.1:4222?prefix=$ns" ;;
      *) echo "unknown backend $b" >&2; exit 2 ;;
    esac
    out=$("$bin" --nocapture 2>&1) && ok=1 || ok=0
    late=$(grep -o 'late_ms=[0-9-]*' <<< "$out" | tr '\n' ' ')
    if [ "$ok" = 1 ]; then
      passed=$((passed + 1))
      echo "round $r $b: ok  $late"
    else
      failed=$((failed + 1))
      echo "round $r $b: FAILED"
      grep -E "panicked|assert" <<< "$out" | head -5
    fi
    case "$b" in
      redis) redis-cli -h 127.0.0.1 --scan --pattern "$ns:*" | xargs -r -n 500 redis-cli -h 127.0.0.1 del > /dev/null ;;
      postgres) psql -q -h 127.0.0.1 -U postgres test -c "DROP SCHEMA IF EXISTS \"$ns\" CASCADE" > /dev/null 2>&1 || true ;;
    esac
  done
done
echo "passed $passed, failed $failed"
[ "$failed" = 0 ]
