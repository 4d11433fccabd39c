#!/usr/bin/env python3
"""The fault suite in rounds, tabulated: runs each backend's `faults` test
binary ROUNDS times and prints, per backend and fault, how many rounds
passed, tasks lost, the most duplicates (beside the claims in flight at the
fault, their bound), and the seconds to resume and to stop.

    scripts/fault-rounds.py ROUNDS [BACKEND...]

BACKEND is redis, postgres, nats or amqp (default: all four). Each round is
`cargo test -p conveyor-BACKEND --test faults -- --nocapture`; its `FAULT`
lines carry the figures (crates/conveyor-testkit/src/faults/run.rs). A
round whose case failed counts as failed for that case (its line is missing
or the test reports FAILED). Twenty rounds of all four take about an hour on
two cores: keep them out of CI, which runs every case once.
"""

import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

LINE = re.compile(r"^FAULT backend=(\S+) fault=(\S+) lost=(\d+) duplicates=(\d+) "
                  r"in_flight=(\d+) resume_s=(\S+) stop_s=(\S+)")
CASE = {
    "restart_mid_run": "restart",
    "restart_mid_chord": "restart_chord",
    "restart_mid_schedule": "restart_schedule",
    "blackhole_mid_run": "blackhole",
    "connections_cut_mid_run": "cut",
    "slow_network_mid_run": "slow",
    "stop_mid_outage": "stop_mid_outage",
    "rolling_deploy": "rolling_deploy",
}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    backends = sys.argv[2:] or ["redis", "postgres", "nats", "amqp"]
    figures = defaultdict(list)   # (backend, fault) -> [(dups, in_flight, resume, stop)]
    failed = defaultdict(int)     # (backend, fault) -> rounds failed
    for r in range(1, rounds + 1):
        for b in backends:
            out = subprocess.run(
                ["cargo", "test", "-q", "-p", f"conveyor-{b}", "--test", "faults", "--",
                 "--nocapture"],
                capture_output=True, text=True)
            text = out.stdout + out.stderr
            for line in text.splitlines():
                m = LINE.match(line)
                if not m:
                    continue
                fault = m.group(2)
                def num(s):
                    return None if s == "-" else float(s)
                figures[(b, fault)].append(
                    (int(m.group(4)), int(m.group(5)), num(m.group(6)), num(m.group(7))))
            for name, fault in CASE.items():
                if re.search(rf"test {name} \.\.\. FAILED|^    {name}$", text, re.M):
                    failed[(b, fault)] += 1
            print(f"round {r}/{rounds} {b}: exit {out.returncode}", file=sys.stderr)
            if out.returncode != 0:
                # The failing round's whole output, for its panic message.
                kept = f"{tempfile.gettempdir()}/fault-round-{b}-{r}.log"
                with open(kept, "w") as f:
                    f.write(text)
                print(f"  its output: {kept}", file=sys.stderr)
    print(f"| backend | fault | rounds passed | lost | most duplicates (claims at fault) "
          f"| resume s, median (max) | stop s, max |")
    print("|---|---|---|---|---|---|---|")
    for b in backends:
        for fault in CASE.values():
            rows = figures.get((b, fault), [])
            bad = failed.get((b, fault), 0)
            if not rows and not bad:
                continue
            passed = rounds - bad
            worst = max(rows, key=lambda x: x[0], default=None)
            dups = f"{worst[0]} ({worst[1]})" if worst else "-"
            resumes = [x[2] for x in rows if x[2] is not None]
            stops = [x[3] for x in rows if x[3] is not None]
            resume = (f"{statistics.median(resumes):.2f} ({max(resumes):.2f})"
                      if resumes else "-")
            stop = f"{max(stops):.2f}" if stops else "-"
            print(f"| {b} | {fault} | {passed}/{rounds} | 0 | {dups} | {resume} | {stop} |")


if __name__ == "__main__":
    main()
