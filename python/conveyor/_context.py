"""What a running task knows about itself, and how it asks for a retry."""

import time
from typing import Optional

__all__ = ["TaskContext", "Retry", "Fail", "Discard"]


class Retry(Exception):
    """Fail this attempt and run the task again, after ``after`` seconds if
    given (otherwise after the task's backoff), while attempts remain."""

    def __init__(self, message: str = "retry requested", after: Optional[float] = None) -> None:
        super().__init__(message)
        self.after = after


class Fail(Exception):
    """Fail for good: no retry; the task is dead-lettered."""


class Discard(Exception):
    """Drop the task: no retry and no dead letter."""


class TaskContext:
    """The running task, passed as the first argument of a task declared with
    ``bind=True``::

        @app.task(bind=True, retries=5)
        def fetch(task, url):
            if task.attempt < 3 and busy():
                task.retry(after=2.0)
    """

    __slots__ = ("id", "name", "attempt", "deadline")

    def __init__(self, id: int, name: str, attempt: int, deadline: Optional[float]) -> None:
        #: The task's id.
        self.id = id
        #: The task's name (its handler).
        self.name = name
        #: This attempt's number, from 1.
        self.attempt = attempt
        #: When this attempt times out (Unix seconds), or ``None``.
        self.deadline = deadline

    def remaining(self) -> Optional[float]:
        """Seconds before this attempt times out (``None`` without a timeout)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.time())

    def retry(self, message: str = "retry requested", after: Optional[float] = None) -> "None":
        """Ends this attempt and retries the task (raises :class:`Retry`)."""
        raise Retry(message, after=after)

    def fail(self, message: str = "failed") -> "None":
        """Ends the task for good: dead-lettered, no retry (raises :class:`Fail`)."""
        raise Fail(message)

    def discard(self, message: str = "discarded") -> "None":
        """Drops the task: no retry, no dead letter (raises :class:`Discard`)."""
        raise Discard(message)

    def __repr__(self) -> str:
        return "TaskContext(id=%r, name=%r, attempt=%r)" % (self.id, self.name, self.attempt)
