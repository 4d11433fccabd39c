"""A task in the store, as ``delay()`` returns it: Celery's ``AsyncResult``."""

import asyncio
import json
from typing import TYPE_CHECKING, Any, Dict, Generic, Optional, TypeVar

from .errors import TaskFailed

if TYPE_CHECKING:
    from ._app import App

R = TypeVar("R")

FINISHED = frozenset(("completed", "dead", "cancelled"))


def _result(record: Dict[str, Any]) -> Any:
    """The decoded result of a finished record, or the failure it raises."""
    if record["state"] == "completed":
        raw = record["result"]
        return None if raw is None else json.loads(raw)
    error = record["error"] or record["state"]
    raise TaskFailed(
        "task %s ended %s: %s" % (record["id"], record["state"], error),
        record["id"],
        record["state"],
        error,
    )


class TaskHandle(Generic[R]):
    """A task enqueued by ``delay()``, ``apply_async()`` or ``map()``, or
    looked up by id with :meth:`App.handle`.

    States: ``scheduled`` (waiting for its start time), ``available``,
    ``running``, ``retrying`` (waiting for its next attempt), ``completed``,
    ``dead`` (failed its last attempt), ``cancelled``.
    """

    __slots__ = ("id", "duplicate", "_app")

    def __init__(self, app: "App", id: int, duplicate: bool = False) -> None:
        #: The task's id.
        self.id = id
        #: True when enqueueing found an unfinished task with the same unique
        #: key: this handle is that task's.
        self.duplicate = duplicate
        self._app = app

    def info(self) -> Optional[Dict[str, Any]]:
        """The task's record (state, attempts, error, times…), or ``None``
        once pruned."""
        return self._app._client().get(self.id)

    def state(self) -> str:
        """The task's state now, without waiting."""
        record = self.info()
        if record is None:
            from .errors import TaskNotFound

            raise TaskNotFound("task %s not found" % self.id, self.id)
        return str(record["state"])

    def ready(self) -> bool:
        """True once the task has finished (completed, dead or cancelled)."""
        return self.state() in FINISHED

    def get(self, timeout: Optional[float] = None) -> R:
        """Waits for the task to finish and returns its result.

        Raises :class:`~conveyor.TaskFailed` (with the remote traceback) when
        it was dead-lettered or cancelled, :class:`~conveyor.Timeout` after
        ``timeout`` seconds (the task goes on). The GIL is released while
        waiting, and Ctrl-C interrupts it.
        """
        result: R = _result(self._app._client().wait(self.id, timeout))
        return result

    async def wait_async(self, timeout: Optional[float] = None) -> R:
        """:meth:`get` for asyncio: awaits the result without blocking the
        event loop or holding a thread."""
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[Dict[str, Any]]" = loop.create_future()

        def settle(record: Optional[Dict[str, Any]], error: Optional[BaseException]) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(record)  # type: ignore[arg-type]

        def done(record: Optional[Dict[str, Any]], error: Optional[BaseException]) -> None:
            try:
                loop.call_soon_threadsafe(settle, record, error)
            except RuntimeError:
                pass  # the loop has closed: nobody waits any more

        waiter = self._app._client().wait_then(self.id, done, timeout)
        try:
            record = await future
        except asyncio.CancelledError:
            waiter.cancel()
            raise
        result: R = _result(record)
        return result

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.wait_async().__await__()

    def cancel(self) -> str:
        """Cancels the task, waiting or running; returns its state after.

        ``"cancelled"``, or the state of a task that had already finished
        (``"completed"``, ``"dead"``). A running task's worker stops it
        within about a second (its process is killed) and nothing it returns
        afterwards is kept: Celery's ``revoke(terminate=True)``.
        """
        return self._app._client().cancel(self.id)

    def __repr__(self) -> str:
        return "<TaskHandle %s>" % self.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.id == self.id and other._app is self._app

    def __hash__(self) -> int:
        return hash(self.id)
