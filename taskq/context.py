"""Which flow, if any, is running in this thread or task: a context variable.

:mod:`taskq.task` consults it so that a task called or submitted inside a flow
becomes a child of that flow. The runner itself lives in :mod:`taskq.flow`.
"""

from __future__ import annotations

from collections.abc import Sequence
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
