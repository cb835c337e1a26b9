"""Checked by mypy (tests/unit/test_typing.py), never executed."""

from typing import assert_type

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

add.submit("x", 2)  # E: wrong argument type
add.submit(1)  # E: missing argument
app.task(retriez=3)  # E: unknown option
