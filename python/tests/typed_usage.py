"""A user's module as a type checker sees it (crates/conveyor-cli/tests/
python.rs runs ``mypy --strict`` on it and on the package): the types a
task's function declares flow to ``delay()``'s handle and ``get()``."""

import datetime
from typing import List

import conveyor

app = conveyor.App("memory://")


@app.task(retries=3, timeout="30s", rate="10/s")
def add(a: int, b: int) -> int:
    return a + b


@app.task
def name_of(user_id: int) -> str:
    return "user-%d" % user_id


def produce() -> int:
    handle: conveyor.TaskHandle[int] = add.delay(2, 40)
    later = add.apply_async(
        (1, 2), countdown=5, eta=datetime.datetime.now(), queue="q", priority=3
    )
    handles: List[conveyor.TaskHandle[int]] = add.map([(1, 2), (3, 4)])
    total: int = handle.get(timeout=10) + later.get() + sum(h.get() for h in handles)
    return total


async def produce_async() -> str:
    text: str = await name_of.delay(7).wait_async(timeout=10)
    return text


def on_failure() -> None:
    try:
        add.delay(1, 2).get(timeout=1)
    except conveyor.TaskFailed as e:
        print(e.state, e.error, e.traceback)
    except conveyor.Timeout as e:
        print(e.id)
