"""``Flow[P, R]``: the flow API, a task whose body calls other tasks (see :mod:`taskq.flows`)."""

from __future__ import annotations

from typing import ParamSpec, TypeVar

from taskq.errors import Cancel, Retry
from taskq.flows.run import FlowRun, call_body
from taskq.message import new_run_id
from taskq.runlogs import current_run, enter_local
from taskq.states import local_state
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
        """Run the flow (see the class); ``return_state=True`` returns its final
        :class:`~taskq.states.State` instead of its value, as a task's call does."""
        want_state = self._return_state(kwargs)
        if current_flow.get() is not None:
            future = self.submit(*args, **kwargs)
            if want_state:
                future.wait()
                return future.state  # type: ignore[return-value]
            return future.result()
        prints = self.options.log_prints is True
        runner = FlowRun(
            self.app,
            self,
            new_run_id(),
            self.queue,
            durable=False,
            params=(args, kwargs),
            log_prints=prints,
        )
        token = current_flow.set(runner)
        local = enter_local(self.name, self.queue, runner.run_id)
        try:
            value = call_body(self, args, kwargs)
        except (Exception, Retry, Cancel) as exc:
            if want_state:
                return local_state(1, error=exc)  # type: ignore[return-value]
            raise
        finally:
            current_run.reset(local)
            current_flow.reset(token)
        return local_state(1, value) if want_state else value  # type: ignore[return-value]
