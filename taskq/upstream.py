"""``wait_for=``: runs that must end before a submission, without passing their data
(Prefect's ``wait_for`` and ``allow_failure``).

``task.submit(x, wait_for=[a, b])`` waits for futures ``a`` and ``b`` at the call, as a
Future given as an argument is waited for, then enqueues the run. An upstream that
did not complete raises its error there, so the run is never enqueued; wrap it in
:class:`allow_failure` to go on whatever its outcome. In a flow the wait is the
flow's own (it may suspend, and replays keep their order).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from taskq.errors import ConfigurationError
from taskq.futures import Future

T = TypeVar("T")


class allow_failure(Generic[T]):  # Prefect's name
    """In ``wait_for``: wait for ``future`` to end, and go on even if it failed."""

    __slots__ = ("future",)

    def __init__(self, future: Future[T]) -> None:
        if not isinstance(future, Future):
            raise ConfigurationError(f"allow_failure takes a Future, got {future!r}")
        self.future = future

    def __repr__(self) -> str:
        return f"allow_failure({self.future!r})"


def wait_upstream(wait_for: Any) -> None:
    """Block until every future in ``wait_for`` (one, or an iterable) has ended.

    Raises:
        ConfigurationError: An item is neither a Future nor ``allow_failure(future)``.
        TaskFailedError: An upstream not wrapped in ``allow_failure`` failed (its error).
        TaskCancelledError: Such an upstream was cancelled.
    """
    items = [wait_for] if isinstance(wait_for, Future | allow_failure) else list(wait_for)
    for item in items:
        if isinstance(item, allow_failure):
            item.future.result(raise_on_failure=False)
        elif isinstance(item, Future):
            item.result()
        else:
            raise ConfigurationError(
                f"wait_for takes Futures (or taskq.allow_failure(future)), got {item!r}"
            )
