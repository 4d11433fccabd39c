#!/usr/bin/env python3
"""Alternating rounds of `examples/processed` from several builds on one
backend, with each build's median and its ratio to the first's: wall-clock
rates move 15-25% between runs on a shared machine, so only builds measured
in turn, round after round, compare.

    scripts/processed-ab.py ROUNDS URL SLOTS TASKS LABEL=BINARY [LABEL=BINARY...]

Build each side once (`cargo build --release -p conveyor-bench --example
processed`, copying target/release/examples/processed aside between
checkouts). A BINARY may start with VAR=VALUE words, set in its
environment. URL is the backend's; `{n}` in it becomes a fresh name per
run, for a backend whose namespace is in the URL (`sqlite:///tmp/{n}.db`,
removed after the run; `postgres://postgres@127.0.0.1:5432/test?schema={n}`,
dropped after the run with psql). On Redis each run takes a key prefix of
its own and clears it.
"""

import os
import re
import statistics
import subprocess
import sys


def run(cmd, url, slots, tasks):
    env = dict(os.environ)
    words = cmd.split()
    while words and "=" in words[0] and not words[0].startswith("/"):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    out = subprocess.run(words + [url, slots, tasks], capture_output=True, text=True, env=env)
    m = re.search(r": (\d+) tasks/s, ([\d.]+) µs CPU/task", out.stdout)
    if not m:
        sys.exit("%s did not report a rate:\n%s%s" % (cmd, out.stdout, out.stderr))
    return int(m.group(1)), float(m.group(2))


def cleanup(url, name):
    if url.startswith("sqlite://"):
        for suffix in ("", "-wal", "-shm"):
            try:
                os.remove(url[len("sqlite://"):] + suffix)
            except OSError:
                pass
    if "schema=" + name in url:
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "test", "-c",
                        "DROP SCHEMA %s CASCADE" % name], capture_output=True)


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    rounds, url, slots, tasks = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    sides = [a.split("=", 1) for a in sys.argv[5:]]
    rates = {label: [] for label, _ in sides}
    n = 0
    for r in range(rounds):
        for label, cmd in sides:
            n += 1
            name = "ab%d_%d" % (os.getpid(), n)
            u = url.replace("{n}", name)
            try:
                rate, cpu = run(cmd, u, slots, tasks)
            finally:
                cleanup(u, name)
            rates[label].append(rate)
            print("round %d %-10s %8d tasks/s %6.2f µs CPU/task" % (r + 1, label, rate, cpu),
                  flush=True)
    first = statistics.median(rates[sides[0][0]])
    for label, _ in sides:
        med = statistics.median(rates[label])
        print("%-10s median %8.0f  %.2fx  %s" % (label, med, med / first,
                                                 " ".join(str(x) for x in rates[label])))


if __name__ == "__main__":
    main()
