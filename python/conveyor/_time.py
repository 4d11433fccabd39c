"""Durations and points in time as the options take them."""

import datetime as _dt
import re
from typing import Optional, Union

Duration = Union[str, int, float, _dt.timedelta]
"""Seconds as a number, a :class:`datetime.timedelta`, or text such as
``"30s"``, ``"500ms"``, ``"5m"``, ``"1h30m"``, ``"2d"``."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")


def seconds(what: str, value: Optional[Duration]) -> Optional[float]:
    """``value`` in seconds (``None`` stays ``None``); raises InvalidConfig."""
    from .errors import InvalidConfig

    if value is None:
        return None
    if isinstance(value, _dt.timedelta):
        s = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidConfig("%s: %r is not a duration" % (what, value))
    elif isinstance(value, (int, float)):
        s = float(value)
    elif isinstance(value, str):
        text = value.strip()
        total, at = 0.0, 0
        while at < len(text):
            m = _PART.match(text, at)
            if not m:
                raise InvalidConfig(
                    "%s: %r is not a duration (try \"30s\", \"500ms\", \"5m\", \"1h30m\")"
                    % (what, value)
                )
            total += float(m.group(1)) * _UNITS[m.group(2)]
            at = m.end()
        if not text:
            raise InvalidConfig("%s: the duration is empty" % what)
        s = total
    else:
        raise InvalidConfig("%s: %r is not a duration" % (what, value))
    if not (s >= 0.0) or s == float("inf"):
        raise InvalidConfig("%s must be at least 0 and finite (got %r)" % (what, value))
    return s


def unix_time(what: str, value: Union[_dt.datetime, int, float, None]) -> Optional[float]:
    """A point in time as Unix seconds. A naive datetime is taken as local
    time, as :meth:`datetime.datetime.timestamp` does."""
    from .errors import InvalidConfig

    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise InvalidConfig("%s: %r is not a datetime or Unix seconds" % (what, value))
