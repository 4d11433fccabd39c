#!/usr/bin/env python3
"""The Redis server's instructions per task for each step of conveyor's
Redis backend (enqueue, reserve, finish), counted by callgrind: a figure
this machine's load does not move, where wall-clock and CPU time per task
moved 7-12 us between identical runs of one day.

    scripts/redis-instructions.py LIBRARY [LIBRARY...] [--from PORT] [--port PORT]
    scripts/redis-instructions.py LIBRARY [LIBRARY...] --memory [--from PORT]

Starts a second redis-server on loopback (--port, default 6390) under
`valgrind --tool=callgrind`, copies the function libraries of the server at
--from (default 6379; FUNCTION DUMP / FUNCTION RESTORE: connect a backend
of each version to it once, so it holds their libraries), and for each
LIBRARY named (`conveyor_<hash>`, see `RedisBackend::function_library` or
`FUNCTION LIST`), the sides alternated twice, counts the server's
instructions:

- enqueue, 5 calls of 1,000 tasks, per task; and 200 calls of one task each,
  per call;
- reserve of those 5,000 tasks, 500 per call (--batch), per task;
- finish (plain completions) of them, 500 per call (--batch), per task;
- 5,000 more enqueued, then reserved and finished in turn with two
  reservations out, as a worker does (the lease set stays small), per task
  of reserve and finish together;
- prune of every finished task (the warm-up's too), 1,000 per call, per task;

beside a PING and an FCALL of an empty function, per call. Each library is
called in the argument forms of today's code (tasks as forms: see
lua/common.lua); a library that does not take them answers with an error,
reported as such. With --memory it measures instead, on the server at
--from itself (no callgrind), the bytes each library's keys take per task
(MEMORY USAGE of every key of the namespace, every element counted):
100,000 tasks waiting, then 40,000 enqueued, reserved and completed. Before the measured steps each library runs them once
unmeasured (5,000 tasks enqueued, reserved and finished), so the figures
are those of a namespace past its first tasks: Redis keeps a hash of up to
512 fields (hash-max-listpack-entries) as a list searched field by field. Needs valgrind (apt-get install valgrind) and
redis-server on PATH. The server under callgrind is stopped at the end.
"""

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A plain RESP connection: send many, read replies in order."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _more(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return int(rest) if kind == b":" else rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._more()
            data, self.buf = self.buf[:n], self.buf[n + 2 :]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError("unexpected reply %r" % line)

    def call(self, *args):
        self.send(encode(*args))
        return self.read()


def start(port, workdir):
    for tool in ("valgrind", "callgrind_control", "redis-server"):
        if not shutil.which(tool):
            sys.exit("%s is not on PATH" % tool)
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg.out.%%p" % workdir,
         "--compress-strings=no",
         "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if Conn(port).call("PING") == "PONG":
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    sys.exit("redis-server under callgrind did not answer on port %d" % port)


def instructions(proc, workdir, run, keep=None):
    """Instructions the server ran while `run()` ran (and its replies came);
    its callgrind output is moved to `keep` when given, else removed."""
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                   capture_output=True)
    run()
    before = set(glob.glob(workdir + "/cg.out.*"))
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                   capture_output=True)
    for _ in range(100):
        new = set(glob.glob(workdir + "/cg.out.*")) - before
        if new:
            break
        time.sleep(0.05)
    (path,) = new
    time.sleep(0.2)
    total = None
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
    if keep:
        shutil.move(path, keep)
    else:
        os.remove(path)
    return total


def leases_of(reply):
    """The (id, token) pairs of a reserve reply: 8 items a task with the
    token second (per-task hashes), or 3 with the state record second, the
    token its second word."""
    if reply and not isinstance(reply[1], int):
        return [(reply[i], reply[i + 1].split(b" ")[1]) for i in range(0, len(reply), 3)]
    return [(reply[i], reply[i + 1]) for i in range(0, len(reply), 8)]


def steps(conn, lib, prefix, batch=500):
    """The calls of one round on `lib`, as (name, run, divisor) triples run
    in order (reserve needs the enqueued tasks, finish the leases)."""
    now = int(time.time() * 1000)
    d = lambda i: '1 3 %d  0 {"n":%d}' % (now, i)

    def enqueue_call(n):
        args = ["FCALL", lib + "_enqueue", 0, prefix, now, 1, n, 2 * n + 4,
                "p", "default", "noop", d(0), 0, now]
        for i in range(1, n):
            args += ["=", d(i)]
        return encode(*args)

    def pipeline(msg, calls):
        def run():
            conn.send(msg * calls)
            for _ in range(calls):
                r = conn.read()
                if isinstance(r, RuntimeError):
                    raise r
        return run

    leases = []

    def reserve():
        for _ in range(5000 // batch):
            r = conn.call("FCALL", lib + "_reserve", 0, prefix, now, now + 60000, batch, 100,
                          "w", "default")
            if isinstance(r, RuntimeError):
                raise r
            leases.extend(leases_of(r))

    def finish():
        for i in range(0, len(leases), batch):
            finish_call(leases[i : i + batch])

    def finish_call(some):
        args = ["FCALL", lib + "_finish", 0, prefix, now, len(some), 0]
        for id_, token in some:
            args += [id_, token]
        r = conn.call(*args)
        if isinstance(r, RuntimeError):
            raise r

    def in_turn():
        # As a worker keeps two reservations out: reserve, reserve, then
        # finish the older one before each next reserve, so the lease set
        # never holds more than two calls' tasks.
        out = []
        for _ in range(5000 // batch):
            r = conn.call("FCALL", lib + "_reserve", 0, prefix, now, now + 60000, batch, 100,
                          "w", "default")
            if isinstance(r, RuntimeError):
                raise r
            out.append(leases_of(r))
            if len(out) == 2:
                finish_call(out.pop(0))
        while out:
            finish_call(out.pop(0))

    def prune():
        # Every finished task (the warm-up's and this round's), 1,000 a call.
        while True:
            r = conn.call("FCALL", lib + "_prune", 0, prefix, now + 1, now + 1, 1000)
            if isinstance(r, RuntimeError):
                raise r
            if r < 1000:
                return

    return [
        ("enqueue, batches of 1,000 (per task)", pipeline(enqueue_call(1000), 5), 5000),
        ("reserve, %d a call (per task)" % batch, reserve, 5000),
        ("finish, %d a call (per task)" % batch, finish, 5000),
        ("enqueue, one task a call (per call, 200 pipelined)", pipeline(enqueue_call(1), 200),
         200),
        ("enqueue, batches of 1,000, again (per task)", pipeline(enqueue_call(1000), 5), 5000),
        ("reserve + finish in turn, %d a call, 2 out (per task)" % batch, in_turn, 5000),
        ("prune, 1,000 a call (per task)", prune, 15000),
    ]


def clear(conn, prefix):
    cursor = 0
    while True:
        cursor, keys = conn.call("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)
        if keys:
            conn.call("DEL", *keys)
        cursor = int(cursor)
        if cursor == 0:
            return


def key_bytes(conn, prefix):
    """The bytes the keys under `prefix` take (MEMORY USAGE, every element
    counted), so that garbage of the Lua heap is not."""
    total, cursor = 0, 0
    while True:
        cursor, keys = conn.call("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)
        for k in keys:
            total += conn.call("MEMORY", "USAGE", k, "SAMPLES", 0) or 0
        cursor = int(cursor)
        if cursor == 0:
            return total


def memory(conn, lib):
    """Bytes per task of `lib`'s records: waiting, and completed."""
    now = int(time.time() * 1000)
    d = lambda i: '1 3 %d  0 {"n":%d}' % (now, i)

    def enqueue(prefix, batches):
        for _ in range(batches):
            args = ["FCALL", lib + "_enqueue", 0, prefix, now, 1, 1000, 2 * 1000 + 4,
                    "p", "default", "noop", d(0), 0, now]
            for i in range(1, 1000):
                args += ["=", d(i)]
            r = conn.call(*args)
            if isinstance(r, RuntimeError):
                raise r

    prefix = "memory-%d:" % os.getpid()
    enqueue(prefix, 100)
    waiting = key_bytes(conn, prefix) / 100000.0
    clear(conn, prefix)
    enqueue(prefix, 40)
    while True:
        r = conn.call("FCALL", lib + "_reserve", 0, prefix, now, now + 60000, 500, 100,
                      "worker-1", "default")
        if isinstance(r, RuntimeError):
            raise r
        if not r:
            break
        leases = leases_of(r)
        args = ["FCALL", lib + "_finish", 0, prefix, now, len(leases), 0]
        for id_, token in leases:
            args += [id_, token]
        conn.call(*args)
    completed = key_bytes(conn, prefix) / 40000.0
    clear(conn, prefix)
    return waiting, completed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("libraries", nargs="+")
    ap.add_argument("--from", dest="source", type=int, default=6379)
    ap.add_argument("--port", type=int, default=6390)
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--batch", type=int, default=500,
                    help="tasks per reserve and per finish call (a divisor of 5,000)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep each measured step's callgrind output in DIR "
                         "(for callgrind_annotate), named by round, library and step")
    a = ap.parse_args()
    if a.memory:
        conn = Conn(a.source)
        for lib in a.libraries:
            waiting, completed = memory(conn, lib)
            print("%s: %.0f bytes a waiting task, %.0f a completed one" % (lib, waiting, completed))
        return
    workdir = tempfile.mkdtemp(prefix="redis-instructions-")
    proc = start(a.port, workdir)
    try:
        conn = Conn(a.port)
        dump = Conn(a.source).call("FUNCTION", "DUMP")
        restored = conn.call("FUNCTION", "RESTORE", dump, "REPLACE")
        if isinstance(restored, RuntimeError):
            sys.exit("FUNCTION RESTORE: %s" % restored)
        conn.call("FUNCTION", "LOAD", "REPLACE",
                  "#!lua name=instructions_empty\n"
                  "redis.register_function('instructions_empty', function() return 1 end)")
        def many(*args):
            def run():
                conn.send(encode(*args) * 400)
                for _ in range(400):
                    conn.read()
            return run
        for name, run in (("PING (per call, 400 pipelined)", many("PING")),
                          ("FCALL of an empty function (per call)",
                           many("FCALL", "instructions_empty", 0))):
            print("%-50s %9.0f" % (name, instructions(proc, workdir, run) / 400))
        for rnd in range(2):
            for lib in a.libraries:
                prefix = "instructions-%d:" % os.getpid()
                try:
                    # Unmeasured: a namespace that has run 1,000 tasks, as
                    # any but a new one has. Redis keeps a hash of up to
                    # 512 fields as a list it searches field by field, so
                    # a namespace's first few hundred tasks cost more per
                    # lookup than every later one.
                    for _, run, _ in steps(conn, lib, prefix, a.batch)[:3]:
                        run()
                    for step, (name, run, per) in enumerate(steps(conn, lib, prefix, a.batch)):
                        keep = None
                        if a.keep:
                            os.makedirs(a.keep, exist_ok=True)
                            keep = os.path.join(a.keep, "round%d.%s.step%d.%s" % (
                                rnd + 1, lib, step + 1, name.split(",")[0]))
                        n = instructions(proc, workdir, run, keep)
                        print("%-50s %9.0f  %s (round %d)" % (name, n / per, lib, rnd + 1))
                except RuntimeError as e:
                    print("%s: %s" % (lib, e))
                clear(conn, prefix)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
