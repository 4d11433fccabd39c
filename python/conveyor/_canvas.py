"""Workflows with Celery's canvas: ``add.s(1, 2)``, ``chain``, ``group``,
``chord``, ``|``, then ``.delay()`` and ``.get()``.

::

    from conveyor import chain, group, chord

    chain(add.s(1, 2), mul.s(3)).delay().get()            # mul(add(1, 2), 3)
    group(add.s(i, i) for i in range(10)).delay().get()   # [0, 2, 4, …]
    chord([add.s(i, i) for i in range(10)], tsum.s()).delay().get()

A canvas is stored as one workflow (a graph of tasks) with its first tasks,
in one atomic step: each step is enqueued by the store when the steps it
waits for have ended, exactly once, even if a worker dies or a finish is
heard twice; nothing in a message body says what comes next. A step after
one task receives that task's result as its first argument (``.s()``); a
step after a group, or a chord's body, receives the list of results in the
group's order. ``.si()`` makes a step that receives nothing but its own
arguments. A step fails when one it waits for fails: the steps after it are
skipped, ``get()`` raises :class:`~conveyor.TaskFailed`.
"""

import json
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from . import _payload
from ._time import Duration, seconds
from .errors import InvalidConfig, TaskFailed, Timeout

if TYPE_CHECKING:
    from ._app import App, Task

#: Where ``get()`` reads the workflow again, at first and at most.
_FIRST_POLL = 0.005
_MAX_POLL = 0.1

_OPTIONS = frozenset(
    ("queue", "priority", "retries", "timeout", "countdown", "keep", "ordering_key")
)


def _duration_text(name: str, value: Optional[Duration]) -> Optional[str]:
    s = seconds(name, value)
    return None if s is None else "%dms" % max(0, round(s * 1000))


class Signature:
    """A call of a task not sent yet: ``task.s(*args, **kwargs)``. Options
    (``queue``, ``priority``, ``retries``, ``timeout``, ``countdown``,
    ``keep``, ``ordering_key``) go with :meth:`set`."""

    __slots__ = ("task", "args", "kwargs", "options", "immutable")

    def __init__(
        self,
        task: "Task[Any]",
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        options: Optional[Dict[str, Any]] = None,
        immutable: bool = False,
    ) -> None:
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.options = dict(options or {})
        self.immutable = immutable

    def set(self, **options: Any) -> "Signature":
        """The same call with these options."""
        unknown = set(options) - _OPTIONS
        if unknown:
            raise InvalidConfig(
                "unknown option(s) %s (known: %s)"
                % (", ".join(sorted(unknown)), ", ".join(sorted(_OPTIONS)))
            )
        return Signature(
            self.task, self.args, self.kwargs, {**self.options, **options}, self.immutable
        )

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Sends this one call (with extra arguments appended)."""
        return self.task.apply_async(self.args + args, {**self.kwargs, **kwargs}, **self.options)

    def __or__(self, other: "Canvas") -> "chain":
        return chain(self, other)

    def _declared(self) -> Dict[str, Any]:
        """This call as a task of a declaration."""
        o = self.task.options
        retries = self.options.get("retries", o.retries)
        timeout = self.options.get("timeout")
        declared: Dict[str, Any] = {
            "handler": self.task.name,
            "params": json.loads(_payload.encode(self.args, self.kwargs)),
            "queue": self.options.get("queue") or o.queue or self.task.app.default_queue,
        }
        priority = self.options.get("priority", o.priority)
        if priority is not None:
            declared["priority"] = priority
        if retries is not None:
            declared["attempts"] = int(retries) + 1
        t = _duration_text("timeout", timeout) if timeout is not None else None
        if t is None and o.timeout is not None:
            t = "%dms" % round(o.timeout * 1000)
        if t is not None:
            declared["timeout"] = t
        for key, field in (("countdown", "delay"), ("keep", "keep")):
            text = _duration_text(key, self.options.get(key))
            if text is not None:
                declared[field] = text
        if self.options.get("ordering_key") is not None:
            declared["ordering_key"] = self.options["ordering_key"]
        return declared

    def __repr__(self) -> str:
        return "%s.%s(%s)" % (
            self.task.name,
            "si" if self.immutable else "s",
            ", ".join([repr(a) for a in self.args] + ["%s=%r" % kv for kv in self.kwargs.items()]),
        )


Canvas = Union[Signature, "chain", "group", "chord"]


class _Graph:
    """A canvas compiled into a declaration's nodes."""

    def __init__(self) -> None:
        self.nodes: List[Dict[str, Any]] = []
        self.app: Optional["App"] = None

    def add(self, canvas: Canvas, after: List[str], gathered: bool) -> Tuple[List[str], bool]:
        """Adds ``canvas`` after the nodes ``after`` (whose results come as
        one list when ``gathered``): its last nodes, and whether their
        results are a list."""
        if isinstance(canvas, Signature):
            if self.app is None:
                self.app = canvas.task.app
            elif canvas.task.app is not self.app:
                raise InvalidConfig("a workflow's tasks must belong to one App")
            name = "%s-%d" % (canvas.task.name, len(self.nodes) + 1)
            node = canvas._declared()
            node["name"] = name
            if after:
                node["after"] = list(after)
                if canvas.immutable:
                    node["input"] = "params"
                else:
                    node["input"] = "results" if gathered else "previous"
            self.nodes.append(node)
            return [name], False
        if isinstance(canvas, chain):
            last, list_of = after, gathered
            for step in canvas.steps:
                last, list_of = self.add(step, last, list_of)
            return last, list_of
        if isinstance(canvas, group):
            ends: List[str] = []
            for member in canvas.members:
                got, _ = self.add(member, after, gathered)
                ends.extend(got)
            return ends, True
        if isinstance(canvas, chord):
            if canvas.body is None:
                raise InvalidConfig("a chord needs a body: chord(header, body) or chord(header)(body)")
            ends, _ = self.add(group(*canvas.header), after, gathered)
            return self.add(canvas.body, ends, True)
        raise InvalidConfig("not a canvas: %r (use task.s(...), chain, group or chord)" % (canvas,))


def expand(canvas: Canvas) -> Dict[str, Any]:
    """What a task running in a workflow returns to add ``canvas``'s tasks
    to its own workflow, fanning out over what it just fetched::

        @app.task
        def crawl(site):
            return conveyor.expand(group(fetch.s(url) for url in links(site)))

        chain(crawl.s("example.org"), index.s()).delay().get()

    The added tasks are stored in the same step as this task's end; the
    task's step settles once they have, and the steps after it receive their
    result as a canvas gives it (a group's list, a chain's last result, a
    chord's body's). Each added step is named ``<step>/<name>``. Outside a
    workflow the returned value is an ordinary result."""
    graph = _Graph()
    _ends, gathered = graph.add(canvas, [], False)
    return {"$expand": {"nodes": graph.nodes}, "$output": "list" if gathered else "one"}


def _submit(canvas: Canvas) -> "WorkflowHandle":
    graph = _Graph()
    ends, gathered = graph.add(canvas, [], False)
    if graph.app is None:
        # An empty group: nothing to run, nothing to wait for.
        raise InvalidConfig("an empty workflow has no task to send")
    declaration = json.dumps({"nodes": graph.nodes}, separators=(",", ":")).encode()
    id, _started = graph.app._client().submit_workflow(declaration)
    return WorkflowHandle(graph.app, id, ends, gathered)


class _Sendable:
    def delay(self) -> "WorkflowHandle":
        """Stores the workflow and its first tasks: a handle to wait on."""
        return _submit(self)  # type: ignore[arg-type]

    def apply_async(self) -> "WorkflowHandle":
        """The same as :meth:`delay` (options go on each ``task.s(...)``)."""
        return self.delay()

    def __or__(self, other: Canvas) -> "chain":
        return chain(self, other)  # type: ignore[arg-type]


class chain(_Sendable):
    """Steps one after another; each receives the result before it (a
    group's: the list). ``chain(a.s(1), b.s())`` or ``a.s(1) | b.s()``."""

    def __init__(self, *steps: Union[Canvas, Iterable[Canvas]]) -> None:
        if len(steps) == 1 and not isinstance(steps[0], (Signature, _Sendable)):
            steps = tuple(steps[0])
        self.steps: Tuple[Canvas, ...] = tuple(steps)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return " | ".join(repr(s) for s in self.steps)


class group(_Sendable):
    """Calls side by side; ``get()`` returns their results as a list, in
    order. ``group(a.s(1), a.s(2))`` or ``group(a.s(i) for i in items)``."""

    def __init__(self, *members: Union[Canvas, Iterable[Canvas]]) -> None:
        if len(members) == 1 and not isinstance(members[0], (Signature, _Sendable)):
            members = tuple(members[0])
        self.members: Tuple[Canvas, ...] = tuple(members)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return "group(%s)" % ", ".join(repr(m) for m in self.members)


class chord(_Sendable):
    """A group whose ``body`` runs once every member has succeeded, with
    the list of their results, exactly once (a member retried, a worker
    killed or a finish heard twice included). ``chord(header, body)`` or
    Celery's ``chord(header)(body)``, which sends it at once."""

    def __init__(self, header: Iterable[Canvas], body: Optional[Canvas] = None) -> None:
        self.header: Tuple[Canvas, ...] = tuple(header)
        self.body = body

    def __call__(self, body: Canvas) -> "WorkflowHandle":
        return chord(self.header, body).delay()

    def __repr__(self) -> str:
        return "chord(%r, %r)" % (list(self.header), self.body)


class WorkflowHandle:
    """A submitted workflow: its state, and ``get()`` for its result."""

    __slots__ = ("id", "_app", "_ends", "_gathered")

    def __init__(self, app: "App", id: int, ends: Sequence[str] = (), gathered: bool = False) -> None:
        #: The workflow's id (``conveyor workflow show ID``).
        self.id = id
        self._app = app
        self._ends = list(ends)
        self._gathered = gathered

    def info(self) -> Optional[Dict[str, Any]]:
        """The workflow's record: ``state`` and every node's ``name``,
        ``state``, ``task``, ``after``; ``None`` once pruned."""
        return self._app._client().workflow(self.id)

    def state(self) -> str:
        """``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        info = self.info()
        if info is None:
            from .errors import TaskNotFound

            raise TaskNotFound("no workflow %d (pruned?)" % self.id, self.id)
        state: str = info["state"]
        return state

    def cancel(self) -> int:
        """Cancels every node that has not settled (running ones' tasks
        too); how many."""
        n = self._app._client().cancel_workflow(self.id)
        return 0 if n is None else n

    def retry(self) -> int:
        """Puts the failed part of the ended workflow back to run: its
        failed, cancelled and skipped nodes run again (those that succeeded
        keep their results), and the callbacks follow the new end. Returns
        how many nodes (0 when nothing had failed); raises
        :class:`~conveyor.ConveyorError` while it still runs."""
        n = self._app._client().retry_workflow(self.id)
        if n is None:
            from .errors import TaskNotFound

            raise TaskNotFound("no workflow %d (pruned?)" % self.id, self.id)
        return n

    def get(self, timeout: Optional[float] = None) -> Any:
        """Waits for the workflow's last steps and returns their result (a
        chain's last step's; a group's list; a chord's body's). Raises
        :class:`~conveyor.TaskFailed` for the first node that failed (or was
        cancelled), :class:`~conveyor.Timeout` after ``timeout`` seconds."""
        client = self._app._client()
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _FIRST_POLL
        waited: Set[int] = set()
        while True:
            info = client.workflow(self.id)
            if info is None:
                from .errors import TaskNotFound

                raise TaskNotFound("no workflow %d (pruned?)" % self.id, self.id)
            nodes = {n["name"]: n for n in info["nodes"]}
            for n in info["nodes"]:
                if n["state"] in ("failed", "cancelled") and n["callback"] is None:
                    record = client.get(n["task"]) if n["task"] is not None else None
                    error = (record or {}).get("error") or n["state"]
                    raise TaskFailed(
                        "workflow %d: %s %s: %s" % (self.id, n["name"], n["state"], error),
                        n["task"] or 0,
                        "dead" if n["state"] == "failed" else "cancelled",
                        error,
                    )
            if not self._ends:
                self._ends, self._gathered = _last_nodes(info["nodes"])
            ends = [nodes[e] for e in self._ends]
            if all(e["state"] == "succeeded" for e in ends):
                results = [_output_of(client, nodes, e) for e in ends]
                return results if self._gathered else results[0]
            if info["state"] != "running":
                raise TaskFailed(
                    "workflow %d ended %s" % (self.id, info["state"]), 0, info["state"], info["state"]
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout("workflow %d has not ended" % self.id)
            waiting = [
                e["task"]
                for e in ends
                if e["task"] is not None and e["state"] == "running" and e["task"] not in waited
            ]
            if not waiting:
                # The last steps wait for others: wait on one of those that
                # run (the last enqueued, likely the last to end), which
                # must end before the last steps can start, rather than
                # sleep past the moment it does.
                ancestor = _running_ancestor(nodes, ends, waited)
                waiting = [] if ancestor is None else [ancestor]
            if waiting:
                # Wait on the task itself (once: its node settles just
                # after its task ends).
                waited.add(waiting[0])
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    client.wait(waiting[0], left)
                except Timeout:
                    pass
                pause = _FIRST_POLL
                continue
            time.sleep(pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, _MAX_POLL)

    def __repr__(self) -> str:
        return "<WorkflowHandle %d>" % self.id


def _running_ancestor(
    nodes: Dict[str, Dict[str, Any]], ends: List[Dict[str, Any]], waited: Set[int]
) -> Optional[int]:
    """The task, not waited on yet, of a running node that ``ends`` wait
    for, directly or through others: the one enqueued last."""
    seen: Set[str] = set()
    todo: List[str] = [d for e in ends for d in e["after"]]
    best: Optional[int] = None
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        task = node["task"]
        if node["state"] == "running" and task is not None and task not in waited:
            best = task if best is None else max(best, task)
        todo.extend(node["after"])
    return best


def _last_nodes(nodes: List[Dict[str, Any]]) -> Tuple[List[str], bool]:
    """The nodes no other waits for (callbacks aside), and whether their
    results come as a list: for a handle looked up by id."""
    body = [n for n in nodes if n["callback"] is None]
    waited_for = {d for n in body for d in n["after"]}
    waited_for.update(d for n in body if n.get("expanded") for d in n["expanded"]["last"])
    ends = [n["name"] for n in body if n["name"] not in waited_for]
    return ends, len(ends) != 1


def _output_of(client: Any, nodes: Dict[str, Dict[str, Any]], node: Dict[str, Any]) -> Any:
    """What a succeeded node passes on: its task's result, or for one that
    expanded, its added nodes' (one result, or the list)."""
    expanded = node.get("expanded")
    if not expanded:
        return _result_of(client, node["task"])
    results = [_output_of(client, nodes, nodes[name]) for name in expanded["last"]]
    if expanded["output"] == "list":
        return results
    return results[0] if results else None


def _result_of(client: Any, task: int) -> Any:
    record = client.get(task)
    if record is None or record["result"] is None:
        return None
    return json.loads(record["result"])
