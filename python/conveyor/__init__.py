"""conveyor: durable task queues with Celery's ergonomics on a Rust engine.

::

    import conveyor
    app = conveyor.App("redis://127.0.0.1:6379/0")   # default: ./conveyor.db

    @app.task(retries=3, timeout="30s")
    def add(a, b):
        return a + b

    add.delay(2, 40).get(timeout=10)   # 42, once a worker runs:
    # conveyor worker --python tasks:app

    conveyor.chain(add.s(1, 2), add.s(3)).delay().get()   # 6

Every backend of conveyor works here (embedded SQLite, Redis, PostgreSQL,
RabbitMQ, NATS JetStream) through the same Rust client as the ``conveyor``
command; enqueueing and waiting release the GIL.
"""

from . import _native
from ._app import App, Task, TaskOptions
from ._canvas import Signature, WorkflowHandle, chain, chord, expand, group
from ._context import Discard, Fail, Retry, TaskContext
from ._handle import TaskHandle
from .errors import (
    BackendError,
    BackendUnavailable,
    ConveyorError,
    InvalidConfig,
    TaskFailed,
    TaskNotFound,
    Timeout,
    Unsupported,
)

__version__: str = _native.__version__

__all__ = [
    "App",
    "Task",
    "TaskOptions",
    "TaskHandle",
    "Signature",
    "WorkflowHandle",
    "chain",
    "group",
    "chord",
    "expand",
    "TaskContext",
    "Retry",
    "Fail",
    "Discard",
    "ConveyorError",
    "BackendError",
    "BackendUnavailable",
    "InvalidConfig",
    "Unsupported",
    "TaskNotFound",
    "TaskFailed",
    "Timeout",
]
