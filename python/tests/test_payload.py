"""How calls become params and back (pure Python)."""

import datetime
import json

import pytest

from conveyor import InvalidConfig, _payload, _time


@pytest.mark.parametrize(
    "args,kwargs,wire",
    [
        ((2, 40), {}, [2, 40]),
        ((), {"a": 2, "b": 40}, {"a": 2, "b": 40}),
        ((2,), {"b": 40}, {"args": [2], "kwargs": {"b": 40}}),
        ((), {"args": 1}, {"args": [], "kwargs": {"args": 1}}),
        (({"args": [1]},), {}, [{"args": [1]}]),
        ((), {}, []),
    ],
)
def test_calls_round_trip(args, kwargs, wire):
    encoded = _payload.encode(args, kwargs)
    assert json.loads(encoded) == wire
    assert _payload.decode(json.loads(encoded)) == (list(args), kwargs)


def test_params_from_elsewhere():
    assert _payload.decode(None) == ([], {})
    assert _payload.decode(5) == ([5], {})
    assert _payload.decode("x") == (["x"], {})
    assert _payload.decode({"args": 1}) == ([], {"args": 1})


def test_durations():
    assert _time.seconds("t", "30s") == 30
    assert _time.seconds("t", "1h30m") == 5400
    assert _time.seconds("t", "500ms") == 0.5
    assert _time.seconds("t", 2) == 2.0
    assert _time.seconds("t", datetime.timedelta(minutes=1)) == 60
    for bad in ("", "5 parsecs", -1, float("nan"), float("inf"), True, [1]):
        with pytest.raises(InvalidConfig):
            _time.seconds("t", bad)
