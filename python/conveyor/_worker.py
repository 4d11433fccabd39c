"""A worker's Python child: ``python -m conveyor._worker MODULE:APP``.

``conveyor worker --python MODULE:APP`` starts these, up to its process
count, and feeds each one task at a time over the persistent-handler
protocol (one JSON line per task on stdin, one reply per line on stdout;
conveyor's docs/worker.md). The child imports the app once and runs the
``@app.task`` function the request names. A failure's reply carries the
exception and its traceback, which the store keeps with the attempt and
``TaskFailed`` shows. ``print()`` and anything written to file descriptor 1
go to stderr, which the worker logs tagged with the task.
"""

import asyncio
import inspect
import json
import os
import sys
import traceback
from typing import Any, Dict, Optional

from . import _payload
from ._context import Discard, Fail, Retry, TaskContext


def _error_text(e: BaseException) -> str:
    """The exception line, then its traceback (as Python prints it)."""
    head = "".join(traceback.format_exception_only(type(e), e)).strip()
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return "%s\n\n%s" % (head, tb.rstrip())


class _Runner:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def reply(self, request: Dict[str, Any]) -> Dict[str, Any]:
        task_id = request.get("id")
        name = request.get("handler")
        task = self.app.tasks.get(name)
        if task is None:
            return {
                "id": task_id,
                "error": "no task %r in %s (it has: %s)"
                % (name, self.app, ", ".join(sorted(self.app.tasks)) or "none"),
                "permanent": True,
            }
        args, kwargs = _payload.decode(request.get("params"))
        if task.options.bind:
            ms = request.get("deadline_ms")
            ctx = TaskContext(
                request["id"],
                task.name,
                request.get("attempt", 1),
                ms / 1000.0 if ms is not None else None,
            )
            args = [ctx, *args]
        try:
            result = task.fn(*args, **kwargs)
            if inspect.isawaitable(result):
                if self.loop is None:
                    self.loop = asyncio.new_event_loop()
                result = self.loop.run_until_complete(result)
        except Retry as e:
            reply: Dict[str, Any] = {"id": task_id, "error": str(e) or "retry requested"}
            if e.after is not None:
                reply["retry_after"] = float(e.after)
            return reply
        except Fail as e:
            return {"id": task_id, "error": str(e) or "failed", "permanent": True}
        except Discard as e:
            return {"id": task_id, "discard": str(e) or "discarded"}
        except Exception as e:  # the task failed; the child goes on
            text = _error_text(e)
            print(text, file=sys.stderr)
            return {"id": task_id, "error": text}
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as e:
            return {
                "id": task_id,
                "error": "the result of %s is not JSON: %s" % (name, e),
                "permanent": True,
            }
        return {"id": task_id, "result": result}


def serve(app: Any) -> None:
    """Answers tasks from stdin until it closes."""
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer
    runner = _Runner(app)
    while True:
        line = stdin.readline()
        if not line:
            return
        try:
            request = json.loads(line)
        except ValueError as e:
            print("conveyor: not a task: %s" % e, file=sys.stderr)
            continue
        reply = runner.reply(request)
        replies.write(json.dumps(reply, separators=(",", ":")))
        replies.write("\n")
        replies.flush()
        sys.stderr.flush()


def main(argv: "list[str]") -> int:
    from ._loader import app_from_argv

    app = app_from_argv(argv, "_worker")
    if app is None:
        return 2
    serve(app)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
