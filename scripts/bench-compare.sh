#!/usr/bin/env bash
# Runs two builds of conveyor-bench side by side, suite by suite and round by
# round (A, B, A, B, …), and prints each subject's median per build and the
# ratio B/A, with the spread of each build's rounds as the noise to read the
# ratio against.
#
#   scripts/bench-compare.sh OLD_BENCH NEW_BENCH [ROUNDS] [SUITE ...]
#
# A suite is one conveyor-bench invocation, its words joined by commas:
# `inproc`, `queue`, `queue,--backend,redis://127.0.0.1:6379/0`,
# `kafka,--brokers,127.0.0.1:9092`, … (default: inproc and queue on the
# embedded store). Build an old version with, for example:
#   git worktree add --detach /tmp/old REV
#   CARGO_TARGET_DIR=/tmp/old/target cargo build --release -p conveyor-bench \
#       --manifest-path /tmp/old/Cargo.toml
# Needs python3 for the table. Timings are printed, never judged; a subject
# with no figure in some round (it did not finish its workload) is named,
# with no ratio.
set -euo pipefail

old=${1:?usage: bench-compare.sh OLD_BENCH NEW_BENCH [ROUNDS] [SUITE ...]}
new=${2:?usage: bench-compare.sh OLD_BENCH NEW_BENCH [ROUNDS] [SUITE ...]}
rounds=${3:-2}
shift $(($# < 3 ? $# : 3))
suites=("$@")
[[ ${#suites[@]} -gt 0 ]] || suites=(inproc queue)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for suite in "${suites[@]}"; do
  IFS=, read -r -a words <<<"$suite"
  for round in $(seq "$rounds"); do
    for side in old new; do
      bin=$old
      [[ $side == new ]] && bin=$new
      echo "== $suite, round $round, $side" >&2
      "$bin" "${words[@]}" 2>/dev/null | grep '^{' | sed "s/^/$side\t/" >>"$out/lines" || true
    done
  done
done

python3 - "$out/lines" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    side, js = line.rstrip("\n").split("\t", 1)
    r = json.loads(js)
    key = (r["bench"], r["subject"], r["unit"])
    entry = runs.setdefault(key, {"old": [], "new": [], "none": {"old": 0, "new": 0}})
    # A subject that did not do its whole workload has no figure (its row
    # says why): counted, never averaged in.
    if r.get("value") is None:
        entry["none"][side] += 1
    else:
        entry[side].append(r["value"])
print(f"{'bench':<22} {'subject':<46} {'old':>12} {'new':>12} {'new/old':>8}  spread old / new")
for (bench, subject, unit), v in runs.items():
    if v["none"]["old"] or v["none"]["new"]:
        print(f"{bench:<22} {subject:<46} no figure in {v['none']['old']} old and "
              f"{v['none']['new']} new rounds (see the bench's rows for why)")
        continue
    if not v["old"] or not v["new"]:
        print(f"{bench:<22} {subject:<46} {'-' if not v['old'] else statistics.median(v['old']):>12} "
              f"{'-' if not v['new'] else statistics.median(v['new']):>12}  (only one build has it)")
        continue
    o, n = statistics.median(v["old"]), statistics.median(v["new"])
    spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs) if statistics.median(xs) else 0
    ratio = n / o if o else float("nan")
    print(f"{bench:<22} {subject:<46} {o:>12.2f} {n:>12.2f} {ratio:>8.2f}  "
          f"±{spread(v['old'])*50:.0f}% / ±{spread(v['new'])*50:.0f}%  {unit}")
PY
