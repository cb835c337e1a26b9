"""What is running in this thread or asyncio task: context variables.

``current_flow``: the flow, if any; :mod:`taskq.task` consults it so that a task
called or submitted inside a flow becomes a child of that flow. The runner itself
lives in :mod:`taskq.flow`.

``current_task_run``: the run id of the plain (non-flow) task a worker is running
here; :mod:`taskq.futures` refuses to wait for results under it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from taskq.futures import Future
    from taskq.task import Task


class ChildRunner(Protocol):
    """What a running flow offers the tasks its body calls."""

    def submit_child(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], due: str
    ) -> Future[Any]: ...

    def map_children(
        self,
        task: Task[Any, Any],
        rows: Sequence[Sequence[Any]],
        kwargs: dict[str, Any],
        due: str,
    ) -> list[Future[Any]]: ...


current_flow: ContextVar[ChildRunner | None] = ContextVar("taskq_current_flow", default=None)

#: Set by the worker's engine around a plain task's call (never around a flow body,
#: which suspends instead of blocking): the id of the run executing here.
current_task_run: ContextVar[str | None] = ContextVar("taskq_current_task_run", default=None)


@contextlib.contextmanager
def running_task(run_id: str) -> Iterator[None]:
    """Mark this thread (or asyncio task) as running the plain task run ``run_id``."""
    token = current_task_run.set(run_id)
    try:
        yield
    finally:
        current_task_run.reset(token)
