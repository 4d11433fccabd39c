"""The client alone: options, errors and lookups (the worker runs only for
the session's other tests; nothing here needs it to take the tasks)."""

import faulthandler
import os
import signal
import subprocess
import sys
import time

import pytest

import conveyor
import pytasks
from conftest import supports


def test_options_are_checked_before_anything_is_sent(app):
    with pytest.raises(conveyor.InvalidConfig):
        pytasks.add.apply_async((1, 2), countdown=-1)
    with pytest.raises(conveyor.InvalidConfig):
        pytasks.add.apply_async((1, 2), countdown="soon")
    with pytest.raises(conveyor.InvalidConfig):
        pytasks.add.apply_async((1, 2), eta="tomorrow")
    with pytest.raises(conveyor.InvalidConfig) as raised:
        pytasks.add.delay(object(), 1)
    assert isinstance(raised.value, ValueError)
    with pytest.raises(conveyor.InvalidConfig):
        pytasks.add.delay(float("nan"), 1)
    with pytest.raises(conveyor.InvalidConfig):
        pytasks.add.apply_async((1, 2), queue="")
    with pytest.raises(conveyor.InvalidConfig):
        pytasks.add.map([(1, 2)], unique_key="k")


def test_declaring_checks_the_options():
    app = conveyor.App("memory://")
    with pytest.raises(conveyor.InvalidConfig):
        app.task(rate="fast")(lambda: None)
    with pytest.raises(conveyor.InvalidConfig):
        app.task(timeout="forever")(lambda: None)
    with pytest.raises(conveyor.InvalidConfig):
        app.task(retries=-1)(lambda: None)
    with pytest.raises(conveyor.InvalidConfig):
        app.task(keep_completed="a while")(lambda: None)
    kept = app.task(name="kept", keep_completed="2h", keep_dead="30d")(lambda: None)
    assert kept.options.manifest()["keep_completed"] == 7200.0
    assert kept.options.manifest()["keep_dead"] == 30 * 86400.0

    @app.task
    def f():
        return 1

    with pytest.raises(conveyor.InvalidConfig):

        @app.task(name="f")
        def g():
            return 2

    assert f() == 1  # a task called directly runs here
    assert app.tasks["f"] is f


def test_unknown_ids(app):
    h = app.handle(987_654_321_987)
    with pytest.raises(conveyor.TaskNotFound) as raised:
        h.state()
    assert isinstance(raised.value, LookupError)
    assert h.info() is None
    with pytest.raises(conveyor.TaskNotFound):
        h.get(timeout=1)


def test_cancel_a_waiting_task(app):
    h = pytasks.add.apply_async((1, 1), countdown=60)
    state = supports(h.cancel)
    assert state == "cancelled"
    with pytest.raises(conveyor.TaskFailed) as raised:
        h.get(timeout=10)
    assert raised.value.state == "cancelled"


def test_unique_keys(app):
    key = "unique-%d" % os.getpid()
    first = supports(lambda: pytasks.add.apply_async((1, 1), countdown=60, unique_key=key))
    second = pytasks.add.apply_async((2, 2), countdown=60, unique_key=key)
    assert second.duplicate and not first.duplicate
    assert second.id == first.id
    supports(first.cancel)


def test_an_unreachable_store_is_unavailable():
    app = conveyor.App("redis://127.0.0.1:1/0")
    with pytest.raises(conveyor.BackendUnavailable) as raised:
        app.send_task("nothing")
    assert raised.value.kind in ("unavailable", "timeout")
    assert isinstance(raised.value, ConnectionError)


def test_a_bad_url_is_invalid():
    with pytest.raises(conveyor.ConveyorError):
        conveyor.App("bogus://nowhere").send_task("x")


def test_a_forked_child_reconnects(app):
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    pytasks.add.delay(0, 0)  # connect in the parent first
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if pytasks.add.delay(20, 22).get(timeout=30) == 42 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert pytasks.add.delay(1, 2).get(timeout=30) == 3


def _native_stacks(pid):
    """Prints every thread's native stack of process `pid` (with gdb, when
    the machine has it), for a child found stuck."""
    import shutil

    gdb = shutil.which("gdb")
    if gdb is None:
        return
    out = subprocess.run(
        [gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    print("native stacks of stuck child %d:\n%s" % (pid, out.stdout[-20000:]), file=sys.stderr)


def test_forks_while_other_threads_use_the_store(app):
    """Forks taken while other threads enqueue and wait: each child opens the
    store anew and gets its answer. (On the embedded store a fork taken
    while the database thread was inside SQLite left the child waiting for
    ever on a lock that thread held, or believing the file locked by its own
    process; the package now pauses those threads around every fork.)"""
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    import threading

    stop = threading.Event()
    # On a queue no worker serves: the children's tasks are not queued
    # behind them.
    noise = "fork-noise"

    def enqueue():
        while not stop.wait(0.001):
            pytasks.add.apply_async((1, 1), queue=noise)

    def wait():
        while not stop.is_set():
            try:
                pytasks.add.apply_async((1, 1), queue=noise).get(timeout=0.02)
            except conveyor.Timeout:
                pass

    threads = [threading.Thread(target=f, daemon=True) for f in (enqueue, wait)]
    for t in threads:
        t.start()
    stuck = []
    try:
        for i in range(20):
            pid = os.fork()
            if pid == 0:
                code = 1
                # A child stuck past this prints every thread's Python stack
                # and exits, so a hang shows where it is.
                faulthandler.dump_traceback_later(45, exit=True)
                try:
                    code = 0 if pytasks.add.delay(i, 1).get(timeout=30) == i + 1 else 3
                except BaseException:
                    import traceback

                    traceback.print_exc()
                finally:
                    os._exit(code)
            deadline = time.monotonic() + 60
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    assert os.WEXITSTATUS(status) == 0, "fork %d: the child failed" % i
                    break
                if time.monotonic() > deadline:
                    _native_stacks(pid)
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    stuck.append(i)
                    break
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not stuck, "children stuck after forks %s" % stuck


def test_the_package_describes_itself():
    assert conveyor.__version__
    for documented in (conveyor.App, conveyor.App.task, conveyor.Task.delay,
                       conveyor.Task.apply_async, conveyor.TaskHandle.get,
                       conveyor.TaskHandle.wait_async, conveyor.TaskFailed):
        assert documented.__doc__, documented


def test_ctrl_c_interrupts_a_blocked_get(app):
    """A get() with no timeout on a task that will not finish soon still
    answers Ctrl-C: the GIL is released, and signals are checked meanwhile."""
    # Ctrl-C as a terminal sends it: the program's SIGINT handler is Python's
    # own even when this test runs where SIGINT is ignored (a background job
    # inherits it ignored, and then Python installs no handler).
    code = (
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import pytasks\n"
        "h = pytasks.add.apply_async((1, 1), countdown=3600)\n"
        "print('waiting', flush=True)\n"
        "h.get()\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout.readline().strip() == b"waiting"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("get() did not answer Ctrl-C")
    assert proc.returncode != 0
    assert b"KeyboardInterrupt" in err, err
