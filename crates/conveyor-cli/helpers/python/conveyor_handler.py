"""Serve conveyor tasks from a long-lived Python process (standard library only).

A handler declared with ``persistent = true`` in conveyor.toml runs this
program once per child process and feeds it tasks one at a time:

    # tasks.py
    from conveyor_handler import serve, Retry, Fail, Discard

    def add(params, task):
        return params["a"] + params["b"]

    def fetch(params, task):
        if task.attempt < 3 and flaky():
            raise Retry("upstream busy", after=2.0)   # retry in 2 s
        if not params.get("url"):
            raise Fail("no url")                      # dead-letter, no retry
        ...

    serve({"add": add, "fetch": fetch})   # by the task's handler name
    # serve(add)                          # or one function for every task

The protocol (one JSON line per task on stdin, one JSON line per reply on
stdout) is described in conveyor's docs/worker.md; this file is one reading of
it. While a handler runs, ``print()`` and anything written to file descriptor
1 go to stderr, which the worker logs tagged with the task: stdout carries
only replies. Print this file with ``conveyor helper python``.
"""

import json
import os
import sys
import time
import traceback

__all__ = ["serve", "Task", "Retry", "Fail", "Discard"]


class Retry(Exception):
    """Fail this attempt and retry, after ``after`` seconds if given
    (otherwise after the handler's backoff), while attempts remain."""

    def __init__(self, message="retry requested", after=None):
        super().__init__(message)
        self.after = after


class Fail(Exception):
    """Fail for good: no retry, the task is dead-lettered."""


class Discard(Exception):
    """Drop the task: no retry, no dead letter."""


class Task:
    """What a handler knows about the task it runs."""

    __slots__ = ("id", "handler", "attempt", "deadline")

    def __init__(self, request):
        self.id = request.get("id")
        self.handler = request.get("handler")
        self.attempt = request.get("attempt", 1)
        ms = request.get("deadline_ms")
        self.deadline = ms / 1000.0 if ms is not None else None

    def remaining(self):
        """Seconds before the attempt times out (None without a timeout)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.time())

    def __repr__(self):
        return "Task(id=%r, handler=%r, attempt=%r)" % (self.id, self.handler, self.attempt)


def _reply(request, fn):
    task_id = request.get("id")
    try:
        result = fn(request.get("params"), Task(request))
    except Retry as e:
        reply = {"id": task_id, "error": str(e) or "retry requested"}
        if e.after is not None:
            reply["retry_after"] = float(e.after)
        return reply
    except Fail as e:
        return {"id": task_id, "error": str(e) or "failed", "permanent": True}
    except Discard as e:
        return {"id": task_id, "discard": str(e) or "discarded"}
    except Exception as e:  # the task failed; the process goes on
        # The exception line, then its traceback: the store keeps the error
        # with the attempt, so `conveyor show` and the dashboard show both.
        tb = traceback.format_exc()
        sys.stderr.write(tb)
        return {"id": task_id, "error": "%s: %s\n\n%s" % (type(e).__name__, e, tb.rstrip())}
    try:
        json.dumps(result)
    except (TypeError, ValueError) as e:
        return {"id": task_id, "error": "the result is not JSON: %s" % e, "permanent": True}
    return {"id": task_id, "result": result}


def serve(handlers):
    """Answer tasks from stdin until it closes. ``handlers`` is one function
    ``f(params, task)`` or a dict of them by handler name."""
    # Replies go to a private copy of stdout; fd 1 becomes stderr, so prints
    # (from Python or from C extensions) cannot corrupt the protocol.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return
        try:
            request = json.loads(line)
        except ValueError as e:
            print("conveyor_handler: not a task: %s" % e, file=sys.stderr)
            continue
        if callable(handlers):
            fn = handlers
        else:
            fn = handlers.get(request.get("handler"))
        if fn is None:
            reply = {
                "id": request.get("id"),
                "error": "no function for handler %r in this program" % request.get("handler"),
                "permanent": True,
            }
        else:
            reply = _reply(request, fn)
        replies.write(json.dumps(reply, separators=(",", ":")))
        replies.write("\n")
        replies.flush()
        sys.stderr.flush()
