"""The exceptions conveyor raises, each carrying the Rust error's kind.

Everything derives from :class:`ConveyorError`; catch that to catch them all.
"""

from typing import Optional

__all__ = [
    "ConveyorError",
    "BackendError",
    "BackendUnavailable",
    "InvalidConfig",
    "Unsupported",
    "TaskNotFound",
    "TaskFailed",
    "Timeout",
]


class ConveyorError(Exception):
    """Any error from conveyor. ``kind`` names the Rust error's kind."""

    kind = "error"

    def __init__(self, message: str, *args: object) -> None:
        super().__init__(message, *args)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BackendError(ConveyorError):
    """The store refused or could not do what was asked. ``kind`` is one of
    ``data``, ``too_large``, ``config``, ``other`` (and for the subclass
    :class:`BackendUnavailable`: ``unavailable``, ``timeout``, ``busy``)."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message, kind)
        self.kind = kind


class BackendUnavailable(BackendError, ConnectionError):
    """The store could not be reached, timed out or was busy: worth retrying."""


class InvalidConfig(ConveyorError, ValueError):
    """A URL, an option or an argument is not valid."""

    kind = "invalid_config"


class Unsupported(ConveyorError):
    """The backend cannot do this (for example, listing tasks on RabbitMQ)."""

    kind = "unsupported"


class TaskNotFound(ConveyorError, LookupError):
    """No task with this id: never enqueued, or pruned after its retention."""

    kind = "not_found"

    def __init__(self, message: str, id: Optional[int] = None) -> None:
        super().__init__(message, id)
        self.id = id


class Timeout(ConveyorError, TimeoutError):
    """The task did not finish within the time given to ``get()``. The task
    itself goes on; call ``get()`` again to keep waiting."""

    kind = "timeout"

    def __init__(self, message: str, id: Optional[int] = None) -> None:
        super().__init__(message, id)
        self.id = id


class TaskFailed(ConveyorError):
    """The task ended without a result: dead-lettered after its last attempt
    (``state == "dead"``) or cancelled (``state == "cancelled"``).

    ``error`` is the last attempt's error as the worker stored it; for a
    Python task, that is the exception line followed by its traceback
    (``traceback`` holds only the traceback part, or ``None``)."""

    kind = "task_failed"

    def __init__(self, message: str, id: int, state: str, error: str) -> None:
        super().__init__(message, id, state, error)
        self.id = id
        self.state = state
        self.error = error
        marker = "Traceback (most recent call last):"
        at = error.find(marker)
        self.traceback: Optional[str] = error[at:] if at >= 0 else None

    def __str__(self) -> str:
        return "task %s ended %s: %s" % (self.id, self.state, self.error)
