"""How a call's arguments travel as a task's JSON params, both ways.

``f(2, 40)`` is sent as ``[2, 40]``, ``f(a=2, b=40)`` as ``{"a": 2, "b": 40}``
and a call with both as ``{"args": [2], "kwargs": {"b": 40}}``, so a task
enqueued from the command line or another language reads naturally:
``conveyor submit add '[2, 40]'`` or ``'{"a": 2, "b": 40}'``. Any other JSON
value is one positional argument.
"""

import json
from typing import Any, Dict, List, Mapping, Sequence, Tuple

_ENVELOPE = frozenset(("args", "kwargs"))


def encode(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    """The params of a call, as JSON bytes."""
    if kwargs and not args and not (_ENVELOPE & kwargs.keys()):
        params: Any = dict(kwargs)
    elif kwargs:
        params = {"args": list(args), "kwargs": dict(kwargs)}
    else:
        params = list(args)
    try:
        return json.dumps(params, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        from .errors import InvalidConfig

        raise InvalidConfig("a task's arguments must be JSON values: %s" % e) from None


def decode(params: Any) -> Tuple[List[Any], Dict[str, Any]]:
    """The positional and keyword arguments a task's params stand for."""
    if isinstance(params, list):
        return params, {}
    if isinstance(params, dict):
        keys = params.keys()
        if keys and keys <= _ENVELOPE:
            args = params.get("args", [])
            kwargs = params.get("kwargs", {})
            if isinstance(args, list) and isinstance(kwargs, dict):
                return args, kwargs
        return [], params
    if params is None:
        return [], {}
    return [params], {}
