"""The tasks the tests' worker serves (``conveyor worker --python pytasks:app``)."""

import asyncio
import os
import signal
import time

import conveyor

app = conveyor.App()  # CONVEYOR_URL, as the tests set it


@app.task
def ping():
    return "pong"


@app.task(retries=0)
def add(a, b):
    return a + b


@app.task(name="math.mul")
def mul(a, b=1):
    return a * b


@app.task(retries=0)
def total(values):
    return sum(values)


@app.task(retries=0)
def divide(a, b):
    return a / b


@app.task(bind=True, retries=4, backoff="10ms")
def flaky(task, succeed_on):
    if task.attempt < succeed_on:
        task.retry("not yet", after=0.05)
    return task.attempt


@app.task(bind=True, retries=4)
def give_up(task):
    task.fail("no way")


@app.task(bind=True)
def drop(task):
    task.discard("not wanted")


@app.task(retries=0)
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(queue="other")
def elsewhere(x):
    return {"queue": "other", "x": x}


@app.task
async def double_later(x):
    await asyncio.sleep(0.01)
    return x * 2


@app.task
def whoami():
    return os.getpid()


@app.task
def whoami_too():
    return os.getpid()


@app.task(retries=0)
def not_json():
    return object()


@app.task(bind=True)
def context(task):
    return {"id": task.id, "name": task.name, "attempt": task.attempt, "remaining": task.remaining()}


@app.task(retries=0, timeout="300ms")
def too_slow():
    time.sleep(30)


@app.task(bind=True, retries=2, backoff="10ms")
def crash_once(task):
    """Its first attempt kills the child running it."""
    if task.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return task.attempt


@app.task(retries=0)
def hold(marker, seconds):
    """Says it started (its process id, in ``marker``), then sleeps."""
    with open(marker + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(marker + ".tmp", marker)
    time.sleep(seconds)
    return "not cancelled"


@app.task(retries=0)
def fan_out(n):
    return conveyor.expand(conveyor.group(add.s(i, i) for i in range(n)))


@app.task(retries=0)
def fan_out_chain(a):
    return conveyor.expand(conveyor.chain(add.s(a, 1), mul.s(10)))
