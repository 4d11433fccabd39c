"""The application object and the tasks declared on it."""

import functools
import os
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Generic,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    Union,
    overload,
)

from . import _native, _payload
from ._handle import TaskHandle
from ._time import Duration, seconds, unix_time
from .errors import InvalidConfig

if TYPE_CHECKING:
    from ._canvas import Signature, WorkflowHandle

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_QUEUE = "default"

#: Clients a forked child inherited from its parent (kept, never closed in
#: the child).
_INHERITED: List[Any] = []

#: Every app, for the fork hooks below.
_APPS: "weakref.WeakSet[App]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child starts as a new process: the native handles' shared
    state is its own, and each app's lock is new (a parent's thread may have
    held it at the fork; that thread did not come along)."""
    _native.after_fork_in_child()
    for app in list(_APPS):
        app._lock = threading.Lock()


# Around a fork the embedded store's database threads commit, close their
# SQLite connections and wait (SQLite's connections must not cross a fork).
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_native.before_fork,
        after_in_parent=_native.after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class TaskOptions:
    """A task's declared options: what ``@app.task(...)`` was given.

    The worker applies ``retries``, ``backoff``, ``timeout``, ``rate``,
    ``burst``, ``concurrency``, ``keep_completed`` and ``keep_dead``;
    ``queue``, ``priority``, ``retries`` and ``timeout`` are also the
    defaults of every enqueue.
    """

    __slots__ = (
        "queue",
        "retries",
        "backoff",
        "timeout",
        "rate",
        "burst",
        "concurrency",
        "keep_completed",
        "keep_dead",
        "priority",
        "bind",
    )

    def __init__(
        self,
        queue: Optional[str] = None,
        retries: Optional[int] = None,
        backoff: Optional[Duration] = None,
        timeout: Optional[Duration] = None,
        rate: Optional[str] = None,
        burst: Optional[int] = None,
        concurrency: Optional[int] = None,
        priority: Optional[int] = None,
        bind: bool = False,
        keep_completed: Optional[Duration] = None,
        keep_dead: Optional[Duration] = None,
    ) -> None:
        self.queue = queue
        self.keep_completed = seconds("keep_completed", keep_completed)
        self.keep_dead = seconds("keep_dead", keep_dead)
        self.retries = _count("retries", retries, 0)
        self.backoff = seconds("backoff", backoff)
        self.timeout = seconds("timeout", timeout)
        if rate is not None:
            if not isinstance(rate, str):
                raise InvalidConfig("rate: %r is not a rate like \"10/s\"" % (rate,))
            _native.check_rate(rate)
        self.rate = rate
        self.burst = _count("burst", burst, 1)
        self.concurrency = _count("concurrency", concurrency, 1)
        self.priority = priority
        self.bind = bool(bind)

    def manifest(self) -> Dict[str, Any]:
        """The options the worker applies, as plain values."""
        return {k: getattr(self, k) for k in self.__slots__ if k != "priority"}


def _count(what: str, value: Optional[int], least: int) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidConfig("%s must be an integer of at least %d (got %r)" % (what, least, value))
    return value


class Task(Generic[R]):
    """A function declared with ``@app.task``. Calling it runs it here, now;
    :meth:`delay` and :meth:`apply_async` enqueue it for a worker."""

    def __init__(self, app: "App", fn: Callable[..., R], name: str, options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        #: The handler name workers know it by.
        self.name = name
        self.options = options
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.fn(*args, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> "Signature":
        """This task's call with these arguments, not sent yet: a step of a
        ``chain``, ``group`` or ``chord``. After another step it receives
        that step's result as its first argument."""
        from ._canvas import Signature

        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> "Signature":
        """:meth:`s` that receives nothing from the steps before it."""
        from ._canvas import Signature

        return Signature(self, args, kwargs, immutable=True)

    def delay(self, *args: Any, **kwargs: Any) -> TaskHandle[R]:
        """Enqueues a call with these arguments and the task's options."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        countdown: Optional[Duration] = None,
        eta: Any = None,
        queue: Optional[str] = None,
        priority: Optional[int] = None,
        unique_key: Optional[str] = None,
        ordering_key: Optional[str] = None,
        retries: Optional[int] = None,
        timeout: Optional[Duration] = None,
        keep: Optional[Duration] = None,
    ) -> TaskHandle[R]:
        """Enqueues a call with options.

        ``countdown``: not before this delay; ``eta``: not before this time (a
        datetime, or Unix seconds; with both, the later). ``queue`` and
        ``priority`` (higher first) override the task's. ``unique_key``: while
        an unfinished task with this key waits in the queue, the existing one
        is returned (``handle.duplicate``). ``ordering_key``: tasks with the
        same key run one at a time, in enqueue order. ``retries`` and
        ``timeout`` override the task's for this call. ``keep``: how long
        its result is kept once it has finished, however it ends (over the
        task's ``keep_completed``/``keep_dead`` and the worker's;
        RabbitMQ refuses it without ``results=``).
        """
        opts = self._enqueue_options(
            countdown, eta, queue, priority, unique_key, ordering_key, retries, timeout, keep
        )
        payload = _payload.encode(args, kwargs or {})
        id, duplicate = self.app._client().enqueue(self.name, payload, opts)
        return TaskHandle(self.app, id, duplicate)

    def map(self, items: Iterable[Any], **options: Any) -> List[TaskHandle[R]]:
        """Enqueues one call per item in one atomic batch: a tuple item is
        the call's positional arguments, any other item its one argument.
        Options as :meth:`apply_async` (``unique_key`` excepted)."""
        if "unique_key" in options:
            raise InvalidConfig("map(): a unique_key cannot be shared by a batch")
        opts = self._enqueue_options(**options)
        payloads = [
            _payload.encode(item if isinstance(item, tuple) else (item,), {}) for item in items
        ]
        if not payloads:
            return []
        done = self.app._client().enqueue_many(self.name, payloads, opts)
        return [TaskHandle(self.app, id, dup) for id, dup in done]

    def starmap(self, items: Iterable[Sequence[Any]], **options: Any) -> List[TaskHandle[R]]:
        """:meth:`map` where every item is a sequence of positional arguments."""
        return self.map((tuple(i) for i in items), **options)

    def _enqueue_options(
        self,
        countdown: Optional[Duration] = None,
        eta: Any = None,
        queue: Optional[str] = None,
        priority: Optional[int] = None,
        unique_key: Optional[str] = None,
        ordering_key: Optional[str] = None,
        retries: Optional[int] = None,
        timeout: Optional[Duration] = None,
        keep: Optional[Duration] = None,
    ) -> Dict[str, Any]:
        o = self.options
        retries = _count("retries", retries, 0) if retries is not None else o.retries
        timeout_s = seconds("timeout", timeout) if timeout is not None else o.timeout
        return {
            "queue": next(q for q in (queue, o.queue, self.app.default_queue) if q is not None),
            "priority": priority if priority is not None else o.priority,
            "delay": seconds("countdown", countdown),
            "run_at": unix_time("eta", eta),
            "max_attempts": None if retries is None else retries + 1,
            "timeout": timeout_s,
            "unique_key": unique_key,
            "ordering_key": ordering_key,
            "keep": seconds("keep", keep),
        }

    def __repr__(self) -> str:
        return "<Task %s>" % self.name


class App:
    """Where tasks are declared and sent.

    ``url`` names the store (``None``: ``CONVEYOR_URL``, else the embedded
    store ``./conveyor.db``): ``embedded://PATH``, ``redis://HOST:PORT/DB``,
    ``postgres://…``, ``amqp://…?results=redis://…``, ``nats://…``. The
    connection opens on first use, once per process (a forked child opens
    its own), and is shared by every thread.
    """

    def __init__(self, url: Optional[str] = None, *, default_queue: str = DEFAULT_QUEUE) -> None:
        self.url = url
        self.default_queue = default_queue
        #: The declared tasks by name.
        self.tasks: Dict[str, Task[Any]] = {}
        self._lock = threading.Lock()
        self._native: Optional[_native.Client] = None
        self._pid = 0
        _APPS.add(self)

    def _client(self) -> _native.Client:
        client, pid = self._native, os.getpid()
        if client is not None and self._pid == pid:
            return client
        with self._lock:
            if self._native is None or self._pid != pid:
                if self._native is not None:
                    # The parent's client is kept, never closed here: its
                    # connections and threads are the parent's.
                    _INHERITED.append(self._native)
                self._native = _native.Client(self.url)
                self._pid = pid
            return self._native

    @overload
    def task(self, fn: Callable[..., R]) -> Task[R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        *,
        name: Optional[str] = None,
        queue: Optional[str] = None,
        retries: Optional[int] = None,
        backoff: Optional[Duration] = None,
        timeout: Optional[Duration] = None,
        rate: Optional[str] = None,
        burst: Optional[int] = None,
        concurrency: Optional[int] = None,
        priority: Optional[int] = None,
        bind: bool = False,
        keep_completed: Optional[Duration] = None,
        keep_dead: Optional[Duration] = None,
    ) -> Callable[[Callable[..., R]], Task[R]]: ...

    def task(
        self,
        fn: Optional[Callable[..., Any]] = None,
        *,
        name: Optional[str] = None,
        queue: Optional[str] = None,
        retries: Optional[int] = None,
        backoff: Optional[Duration] = None,
        timeout: Optional[Duration] = None,
        rate: Optional[str] = None,
        burst: Optional[int] = None,
        concurrency: Optional[int] = None,
        priority: Optional[int] = None,
        bind: bool = False,
        keep_completed: Optional[Duration] = None,
        keep_dead: Optional[Duration] = None,
    ) -> Union[Task[Any], Callable[[Callable[..., Any]], Task[Any]]]:
        """Declares a task: ``@app.task`` or ``@app.task(retries=3, …)``.

        ``name``: the handler name (default: the function's name).
        ``queue``: where its tasks wait (default ``"default"``).
        ``retries``: attempts after the first (default 2: three attempts).
        ``backoff``: the first pause before a retry, doubling per attempt.
        ``timeout``: an attempt's time limit (``"30s"``, seconds or a
        timedelta); the worker kills the attempt's process past it.
        ``rate`` (``"10/s"``), ``burst`` and ``concurrency``: limits held
        across every worker where the store keeps them.
        ``priority``: the default priority (higher first).
        ``bind``: pass a :class:`~conveyor.TaskContext` as first argument.
        ``keep_completed`` and ``keep_dead``: how long its completed (or
        cancelled) and its dead tasks are kept, over the worker's
        ``--keep-completed``/``--keep-dead`` (a call's ``keep=`` wins;
        not on Redis).
        """
        options = TaskOptions(
            queue=queue,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            rate=rate,
            burst=burst,
            concurrency=concurrency,
            priority=priority,
            bind=bind,
            keep_completed=keep_completed,
            keep_dead=keep_dead,
        )

        def declare(f: Callable[..., Any]) -> Task[Any]:
            task_name = name or getattr(f, "__name__", None)
            if not task_name or not isinstance(task_name, str):
                raise InvalidConfig("a task needs a name: pass name=")
            if task_name in self.tasks and self.tasks[task_name].fn is not f:
                raise InvalidConfig(
                    "two tasks are named %r in one app; give one of them name=" % task_name
                )
            t: Task[Any] = Task(self, f, task_name, options)
            self.tasks[task_name] = t
            return t

        if fn is not None:
            return declare(fn)
        return declare

    def send_task(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        **options: Any,
    ) -> TaskHandle[Any]:
        """Enqueues a task by name, declared here or not (for producers
        that do not import the task's code). Options as ``apply_async``."""
        task = self.tasks.get(name) or Task(self, _undeclared, name, TaskOptions())
        return task.apply_async(args, kwargs, **options)

    def workflow(self, id: int) -> "WorkflowHandle":
        """The workflow ``id`` (as ``chain(...).delay().id`` gave it)."""
        from ._canvas import WorkflowHandle

        return WorkflowHandle(self, id)

    def workflows(
        self, state: Optional[str] = None, limit: int = 50, before: Optional[int] = None
    ) -> List[Dict[str, Any]]:
        """The workflows, newest first: at most ``limit``, only those in
        ``state`` (``running``, ``succeeded``, ``failed``, ``cancelled``)
        when given, older than workflow ``before`` when given (the last id
        of a page, for the next). Each a dict: ``id``, ``state``, ``nodes``,
        ``left`` (not settled), ``created_at``, ``ended_at`` (seconds since
        the epoch, ``None`` while it runs)."""
        return self._client().list_workflows(state, limit, before)

    def handle(self, id: int) -> TaskHandle[Any]:
        """A handle on a task enqueued earlier, by id."""
        return TaskHandle(self, int(id))

    AsyncResult = handle

    @property
    def backend_kind(self) -> str:
        """The kind of store: ``embedded``, ``redis``, ``postgres``, …"""
        return self._client().kind

    def __repr__(self) -> str:
        return "<conveyor.App %s>" % (self.url or _native.resolve_url(None))


def _undeclared(*args: Any, **kwargs: Any) -> Any:
    raise InvalidConfig("this task is not declared in this program: it runs on a worker")
