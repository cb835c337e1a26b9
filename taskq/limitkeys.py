"""The key a limit (``rate_limit_key``, ``concurrency_key``) gives a delivery."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskq.delivery import Delivery

log = logging.getLogger("taskq.limits")


def limit_key(d: Delivery, key_fn: Callable[..., Any] | None, option: str) -> str:
    """``d``'s key under a limit: its task's name, and ``key_fn``'s value for the run's
    arguments when there is a key function. One that raises (logged, naming ``option``) or
    returns None leaves the run under the task's own key."""
    name = d.task.name
    if key_fn is None:
        return name
    try:
        key = key_fn(*d.message.args, **d.message.kwargs)
    except Exception:
        log.exception("%s of run %s raised; using the task's own key", option, d.run_id)
        return name
    return name if key is None else f"{name}:{key}"
