"""The Python client benchmark: conveyor's package beside Celery, on the same
Redis, measured by the same code.

    python client_bench.py SIDE URL PREFIX MEASURE N THREADS OUT

SIDE is ``conveyor`` or ``celery``; MEASURE one of:

- ``enqueue``: N ``delay()`` calls split over THREADS threads, no worker;
  the rate of calls.
- ``roundtrip``: N ``delay().get()`` one after another, with a worker
  running (WORKER below); p50 and p99 of the round trip.
- ``e2e``: N no-op ``delay()`` calls with results stored, then every
  ``get()``; the rate from the first call to the last result.
- ``e2e_map`` (conveyor only): the same, the N calls enqueued by one
  ``map()`` (batches of 1,000), the package's batch enqueue.
- ``chord``: a chord of N ``one`` tasks with ``total`` as its body,
  submitted and waited for (``chord(header)(body).get()``), with a worker
  running; the header tasks per second, from the submit to the body's
  result (after one chord of 10 to warm up).
- ``producer``: N ``delay()`` calls, then the state of each task, with no
  worker: the producer's own two round trips per task, the most the
  ``e2e`` loop could reach with a worker that cost nothing.

Writes one JSON object to OUT. The tasks are the module ``bench_tasks``
(written beside this script by the benchmark), so both workers import the
same functions.
"""

import json
import os
import sys
import threading
import time


def percentile(values, q):
    values = sorted(values)
    if not values:
        return None
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[k]


def enqueue(noop, n, threads):
    per = n // threads
    barrier = threading.Barrier(threads + 1)
    errors = []

    def produce():
        barrier.wait()
        try:
            for _ in range(per):
                noop.delay()
        except Exception as e:  # reported, not raised in a thread
            errors.append(repr(e))

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    took = time.perf_counter() - t0
    if errors:
        return {"error": errors[0]}
    return {"per_s": per * threads / took}


def roundtrip(noop, n):
    for _ in range(20):  # warm: connections, the worker's children
        noop.delay().get(timeout=60)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        noop.delay().get(timeout=60)
        samples.append(time.perf_counter() - t0)
    return {
        "p50_ms": percentile(samples, 0.50) * 1e3,
        "p99_ms": percentile(samples, 0.99) * 1e3,
    }


def e2e(noop, n):
    noop.delay().get(timeout=60)
    t0 = time.perf_counter()
    handles = [noop.delay() for _ in range(n)]
    for h in handles:
        h.get(timeout=300)
    return {"per_s": n / (time.perf_counter() - t0)}


def e2e_map(noop, n):
    noop.delay().get(timeout=60)
    t0 = time.perf_counter()
    handles = []
    for start in range(0, n, 1000):
        handles.extend(noop.map([()] * min(1000, n - start)))
    for h in handles:
        h.get(timeout=300)
    return {"per_s": n / (time.perf_counter() - t0)}


def chord_run(tasks, n, side):
    if side == "conveyor":
        from conveyor import chord
    else:
        from celery import chord

    def run(k):
        got = chord([tasks.one.s() for _ in range(k)])(tasks.total.s()).get(timeout=600)
        if got != k:
            raise RuntimeError("the chord's body answered %r, not %d" % (got, k))

    run(10)
    # One chord of 1,000 no-op headers takes a tenth of a second here: the
    # median of three, each side alike.
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run(n)
        times.append(time.perf_counter() - t0)
    return {"per_s": n / sorted(times)[1]}


def producer(noop, n, side):
    # Celery's state is a property that reads the result backend; conveyor's
    # a method that reads the task.
    if side == "conveyor":
        read = lambda h: h.state()  # noqa: E731
    else:
        read = lambda h: h.state  # noqa: E731
    read(noop.delay())
    t0 = time.perf_counter()
    handles = [noop.delay() for _ in range(n)]
    for h in handles:
        read(h)
    return {"per_s": n / (time.perf_counter() - t0)}


def main():
    side, url, prefix, measure, n, threads, out = sys.argv[1:8]
    n, threads = int(n), int(threads)
    os.environ["BENCH_SIDE"] = side
    os.environ["BENCH_URL"] = url
    os.environ["BENCH_PREFIX"] = prefix
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_tasks

    noop = bench_tasks.noop
    try:
        if measure == "enqueue":
            result = enqueue(noop, n, threads)
        elif measure == "roundtrip":
            result = roundtrip(noop, n)
        elif measure == "producer":
            result = producer(noop, n, side)
        elif measure == "chord":
            result = chord_run(bench_tasks, n, side)
        elif measure == "e2e_map":
            result = e2e_map(noop, n)
        else:
            result = e2e(noop, n)
    except Exception as e:
        result = {"error": repr(e)}
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
