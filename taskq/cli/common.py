"""Options and helpers the read and dead-letter commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from taskq.config import DEFAULT_PREFIX
from taskq.protocol import PROGRESS_EVENT, StateName

F = TypeVar("F", bound=Callable[..., Any])

#: What ``--state`` accepts (any case): every stored state name, and Progress for events.
STATES = [s.value for s in StateName if s is not StateName.UNKNOWN]


def connection(fn: F) -> F:
    """``--redis-url`` and ``--prefix``."""
    fn = click.option("--prefix", envvar="TASKQ_PREFIX", default=DEFAULT_PREFIX, show_default=True)(
        fn
    )
    return click.option(
        "--redis-url", envvar="TASKQ_REDIS_URL", help="Redis URL [env: TASKQ_REDIS_URL]."
    )(fn)


def as_json(fn: F) -> F:
    """``--json``: print the read model's JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")(fn)


def state_option(events: bool = False) -> Callable[[F], F]:
    """``--state``: one state name, any case (for events also ``Progress``)."""
    names = [*STATES, PROGRESS_EVENT] if events else STATES
    return click.option(
        "--state",
        "-s",
        type=click.Choice(names, case_sensitive=False),
        help="Only this state.",
    )
