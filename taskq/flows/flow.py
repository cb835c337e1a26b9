"""``Flow[P, R]``: the flow API, a task whose body calls other tasks (see :mod:`taskq.flows`)."""

from __future__ import annotations

from typing import ParamSpec, TypeVar

from taskq.flows.run import FlowRun, call_body
from taskq.message import new_run_id
from taskq.task import Task, current_flow

P = ParamSpec("P")
R = TypeVar("R")


class Flow(Task[P, R]):
    """A registered flow: ``Flow[P, R]``. Made by ``@app.flow``.

    ``submit`` runs it on a worker; a direct call runs the body here, in the
    caller's process, with its children on the workers; inside another flow a
    direct call is a subflow (a child run, waited for).
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if current_flow.get() is not None:
            return self.submit(*args, **kwargs).result()
        runner = FlowRun(self.app, self, new_run_id(), self.queue, durable=False)
        token = current_flow.set(runner)
        try:
            return call_body(self, args, kwargs)  # type: ignore[no-any-return]
        finally:
            current_flow.reset(token)
