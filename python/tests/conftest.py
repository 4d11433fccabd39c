"""A real ``conveyor worker --python pytasks:app`` for the session, on the
store ``CONVEYOR_URL`` names (crates/conveyor-cli/tests/python.rs sets it,
with ``CONVEYOR_BIN``, the command to run)."""

import os
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

#: The worker's children: the seed scenario runs three tasks at once.
PROCESSES = 3


@pytest.fixture(scope="session")
def worker():
    import pytasks

    binary = os.environ.get("CONVEYOR_BIN")
    if not binary:
        pytest.skip("CONVEYOR_BIN names no conveyor command")
    workdir = os.environ.get("CONVEYOR_TEST_WORKDIR") or os.getcwd()
    log_path = os.path.join(workdir, "worker.log")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                "worker",
                "--python",
                "pytasks:app",
                "--interpreter",
                sys.executable,
                "--processes",
                str(PROCESSES),
                "--grace",
                "5s",
            ],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            assert pytasks.ping.delay().get(timeout=60) == "pong"
        except BaseException:
            proc.kill()
            proc.wait()
            with open(log_path, encoding="utf-8", errors="replace") as f:
                sys.stderr.write("worker log:\n" + f.read())
            raise
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.returncode not in (0, -signal.SIGKILL):
            with open(log_path, encoding="utf-8", errors="replace") as f:
                sys.stderr.write("worker log:\n" + f.read())


@pytest.fixture(scope="session")
def app(worker):
    import pytasks

    return pytasks.app


def supports(call):
    """Runs ``call``; skips the test where the backend refuses it."""
    import conveyor

    try:
        return call()
    except conveyor.Unsupported as e:
        pytest.skip("the backend refuses it: %s" % e)
