"""Checked by mypy (tests/unit/test_typing.py), never executed."""

from typing import Any, assert_type

import taskq

app = taskq.App()


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(result_ttl=60)
def name_of(user_id: int) -> str:
    return str(user_id)


@app.task
async def fetch(url: str) -> bytes:
    return url.encode()


typed: taskq.Task[[int, int], int] = add
assert_type(add.submit(1, 2), taskq.Future[int])
assert_type(add.delay(1, 2), taskq.Future[int])
assert_type(add.submit(1, 2).result(timeout=5), int)
assert_type(add(1, 2), int)
assert_type(name_of.submit(3), taskq.Future[str])
assert_type(add.map([1, 2], [3, 4]), list[taskq.Future[int]])
typed = add.with_options(result_ttl=5)
assert_type(fetch.submit("u").result(), bytes)
assert_type(taskq.wait([add.submit(1, 2)]).done, set[taskq.Future[int]])
assert_type(add.future("run-id"), taskq.Future[int])
assert_type(fetch.future("run-id").result(), bytes)
assert_type(app.future("run-id"), taskq.Future[Any])
assert_type(app.future("run-id", queue="emails").run_id, str)

add.submit("x", 2)  # E: wrong argument type
add.submit(1)  # E: missing argument
app.task(retriez=3)  # E: unknown option
app.future(42)  # E: a run id is a str
