#!/usr/bin/env bash
# What Prometheus metrics cost a worker: runs builds of the `processed`
# example (conveyor-bench's examples/processed.rs) with metrics off and on,
# round by round (each build off, then on, then the next build), each run on
# a fresh embedded file, and prints per build the medians of throughput and
# of the process's CPU time per task, and the median of each round's on/off
# ratio — the cost, read against the spread of the rounds.
#
#   scripts/metrics-cost.sh [ROUNDS] [SLOTS] [TASKS] PROCESSED_BIN ...
#
# Build the example with
#   cargo build --release -p conveyor-bench --example processed
# (target/release/examples/processed); copy it aside to compare builds, e.g.
# one made in a worktree of an older commit. Timings are printed, never judged.
set -euo pipefail

rounds=${1:-7}
slots=${2:-500}
tasks=${3:-200000}
shift $(($# < 3 ? $# : 3))
[[ $# -gt 0 ]] || set -- target/release/examples/processed

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for round in $(seq "$rounds"); do
  for bin in "$@"; do
    for metrics in off metrics; do
      rm -f "$dir"/run.db*
      line=$("$bin" "$dir/run.db" "$slots" "$tasks" "$metrics")
      echo "== round $round, $bin, $metrics: $line" >&2
      echo "$round	$bin	$metrics	$line" >>"$dir/lines"
    done
  done
done

python3 - "$dir/lines" <<'PY'
import re, statistics as st, sys

runs = {}
for line in open(sys.argv[1]):
    rnd, binary, metrics, text = line.rstrip("\n").split("\t")
    m = re.search(r"([0-9]+) tasks/s, ([0-9.]+) µs CPU/task", text)
    runs.setdefault(binary, {}).setdefault(metrics, []).append((float(m[1]), float(m[2])))

print(f"{'build':40} {'off tasks/s':>12} {'on tasks/s':>12} {'on/off':>7} "
      f"{'off µs CPU':>11} {'on µs CPU':>10} {'on/off':>7}")
for binary, r in runs.items():
    off, on = r["off"], r["metrics"]
    rate = st.median(a[0] / b[0] for a, b in zip(on, off))
    cpu = st.median(a[1] / b[1] for a, b in zip(on, off))
    print(f"{binary[-40:]:40} {st.median(x[0] for x in off):12.0f} "
          f"{st.median(x[0] for x in on):12.0f} {rate:7.3f} "
          f"{st.median(x[1] for x in off):11.2f} {st.median(x[1] for x in on):10.2f} {cpu:7.3f}")
PY
