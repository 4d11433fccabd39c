"""Workflows with Celery's canvas, on every backend that stores workflows:
chains pass each result on, groups gather, a chord's body runs once with
every header result, failures skip what waits and raise, cancel stops the
rest."""

import pytest

import conveyor
import pytasks
from conftest import supports
from conveyor import chain, chord, group


def test_a_chain_passes_each_result_to_the_next(app):
    h = supports(lambda: chain(pytasks.add.s(1, 2), pytasks.add.s(10), pytasks.mul.s(2)).delay())
    assert h.get(timeout=60) == 26
    info = h.info()
    assert info["state"] == "succeeded"
    assert [n["state"] for n in info["nodes"]] == ["succeeded"] * 3
    assert (pytasks.add.s(1, 1) | pytasks.add.s(1)).delay().get(timeout=60) == 3


def test_a_group_gathers_results_in_order(app):
    h = supports(lambda: group(pytasks.add.s(i, i) for i in range(8)).delay())
    assert h.get(timeout=60) == [2 * i for i in range(8)]


def test_a_chord_body_runs_once_with_every_header_result(app):
    header = [pytasks.add.s(i, 1) for i in range(20)]
    h = supports(lambda: chord(header, pytasks.total.s()).delay())
    assert h.get(timeout=60) == sum(i + 1 for i in range(20))
    body = [n for n in h.info()["nodes"] if n["name"].startswith("total")]
    assert len(body) == 1 and body[0]["state"] == "succeeded"
    # Celery's form: chord(header)(body) sends it at once.
    again = chord([pytasks.add.s(1, 1), pytasks.add.s(2, 2)])(pytasks.total.s())
    assert again.get(timeout=60) == 6


def test_immutable_steps_and_options(app):
    h = supports(
        lambda: chain(pytasks.add.s(1, 2), pytasks.add.si(5, 5).set(priority=3)).delay()
    )
    assert h.get(timeout=60) == 10
    with pytest.raises(conveyor.InvalidConfig):
        pytasks.add.s(1, 2).set(colour="red")


def test_a_failed_step_skips_the_rest_and_get_raises(app):
    h = supports(lambda: chain(pytasks.divide.s(1, 0), pytasks.add.s(1)).delay())
    with pytest.raises(conveyor.TaskFailed) as e:
        h.get(timeout=60)
    assert "ZeroDivisionError" in str(e.value)
    states = {n["name"]: n["state"] for n in h.info()["nodes"]}
    assert sorted(states.values()) == ["failed", "skipped"]
    assert h.state() == "failed"


def test_a_workflow_is_cancelled_and_looked_up_by_id(app):
    # On a queue no worker serves: nothing runs before the cancel.
    idle = [pytasks.add.s(i, i).set(queue="nobody-serves-this") for i in range(2)]
    h = supports(lambda: group(idle).delay())
    assert app.workflow(h.id).state() == "running"
    assert h.cancel() == 2
    listed = app.workflows(state="cancelled", limit=5)
    assert h.id in [w["id"] for w in listed]
    mine = next(w for w in listed if w["id"] == h.id)
    assert (mine["state"], mine["nodes"], mine["left"]) == ("cancelled", 2, 0)
    assert mine["ended_at"] is not None
    assert all(w["id"] < h.id for w in app.workflows(before=h.id))
    with pytest.raises(conveyor.InvalidConfig):
        app.workflows(state="done")
    assert h.state() == "cancelled"
    with pytest.raises(conveyor.TaskFailed):
        app.workflow(h.id).get(timeout=10)
    assert h.cancel() == 0
    # Retried: both nodes wait in the queue again; a second retry finds it
    # running.
    assert h.retry() == 2
    assert h.state() == "running"
    with pytest.raises(conveyor.ConveyorError, match="still running"):
        h.retry()
    assert h.cancel() == 2


def test_bad_canvases_are_refused(app):
    with pytest.raises(conveyor.InvalidConfig):
        group().delay()
    with pytest.raises(conveyor.InvalidConfig):
        chord([pytasks.add.s(1, 1)]).delay()
    with pytest.raises(conveyor.InvalidConfig):
        chain(pytasks.add.s(object(), 1)).delay()


def test_a_step_fans_out_and_the_next_gets_every_result(app):
    h = supports(lambda: chain(pytasks.fan_out.s(5), pytasks.total.s()).delay())
    assert h.get(timeout=60) == sum(2 * i for i in range(5))
    nodes = h.info()["nodes"]
    assert [n["name"] for n in nodes[2:]] == ["fan_out-1/add-%d" % i for i in range(1, 6)]
    assert nodes[0]["expanded"] == {
        "output": "list",
        "last": ["fan_out-1/add-%d" % i for i in range(1, 6)],
    }
    assert all(n["state"] == "succeeded" for n in nodes)
    # A workflow whose last step expands returns what its expansion does:
    # a chain's last result, a group's list (empty too).
    assert chain(pytasks.fan_out_chain.s(4)).delay().get(timeout=60) == 50
    assert chain(pytasks.fan_out.s(3)).delay().get(timeout=60) == [0, 2, 4]
    assert chain(pytasks.fan_out.s(0), pytasks.total.s()).delay().get(timeout=60) == 0
