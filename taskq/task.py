"""``Task[P, R]``: a decorated function that can run in-process or on the workers.

``submit`` / ``delay`` enqueue one run; ``map`` enqueues many in one pipelined
bulk call; a direct call runs the function here, in this process.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, Unpack

from taskq import tracing
from taskq.errors import Cancel, ConfigurationError, MessageError, ResultNotFoundError, Retry
from taskq.futures import Future, check_run_id, resolve_futures
from taskq.mapping import spread as spread_calls
from taskq.message import (
    Message,
    decode_outcome,
    encode_call,
    encode_calls,
    encode_message,
    new_run_id,
)
from taskq.options import TaskOptions, TaskOptionsDict, check_delay
from taskq.protocol import MetaKey
from taskq.retry import retry_decision, retry_decision_async
from taskq.runlogs import current_run, enter_local
from taskq.states import TaskRun, local_state, returned_value
from taskq.upstream import wait_upstream

if TYPE_CHECKING:
    from taskq.broker import Broker
    from taskq.config import Settings
    from taskq.partitions import Spread

P = ParamSpec("P")
R = TypeVar("R")


class Host(Protocol):
    """What a task (and a flow run) needs of the app that made it.

    :class:`taskq.App` is one. Tasks name this rather than ``App`` so that the app,
    which builds tasks and flows, stays above them: no import runs back up to it.
    """

    @property
    def broker(self) -> Broker:
        """The broker the tasks' runs go through."""
        ...

    @property
    def settings(self) -> Settings:
        """The settings (default queue, limits, timings)."""
        ...

    @property
    def registry(self) -> Mapping[str, Task[Any, Any]]:
        """The registered tasks, by name."""
        ...

    @property
    def spread(self) -> Spread:
        """Picks the partition of each new run of a partitioned queue."""
        ...


class ChildRunner(Protocol):
    """What a running flow offers the tasks its body calls (``taskq.flows.run.FlowRun``).

    Defined here, beside its one user, so that tasks need not import the flows,
    which are built on tasks.
    """

    def submit_child(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], due: str
    ) -> Future[Any]:
        """Enqueue one child run of ``task``; its future."""
        ...

    def map_children(
        self,
        task: Task[Any, Any],
        rows: Sequence[Sequence[Any]],
        kwargs: dict[str, Any] | Sequence[dict[str, Any]],
        due: str,
    ) -> list[Future[Any]]:
        """Enqueue one child run per row (keyword arguments shared, or one dict per row);
        their futures, in order."""
        ...


#: The flow running in this thread or asyncio task, if any: a task called or
#: submitted under it becomes a child of that flow.
current_flow: ContextVar[ChildRunner | None] = ContextVar("taskq_current_flow", default=None)


class Task(Generic[P, R]):
    """A registered task. Made by ``@app.task``; do not construct directly.

    Attributes:
        fn: The wrapped function.
        name: The registered name (``module.qualname`` unless ``name=`` was given).
        options: The validated options.
    """

    def __init__(self, app: Host, fn: Callable[P, Any], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(fn)
        try:
            self._params = frozenset(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            self._params = frozenset()
        if options.schedule is not None:
            try:
                inspect.signature(fn).bind()
            except TypeError:
                raise ConfigurationError(
                    f"scheduled task {options.name!r} must be callable without arguments "
                    "(each tick runs it with none)"
                ) from None
        self.__doc__ = fn.__doc__
        #: Prefect's ``description``: the option, else the function's docstring.
        self.description = (
            options.description if options.description is not None else inspect.getdoc(fn)
        )
        #: Prefect's ``version`` (None unless set).
        self.version = options.version
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} queue={self.queue!r}>"

    @property
    def queue(self) -> str:
        """The (logical) queue this task's runs go to; of a partitioned queue, each run
        goes to one of its partitions (``Future.queue`` names it)."""
        return self.options.queue or self.app.settings.default_queue

    def with_options(self, **options: Unpack[TaskOptionsDict]) -> Task[P, R]:
        """A copy of this task with some options changed (the registry is untouched).

        Raises:
            ConfigurationError: An option is unknown or invalid.
        """
        if "name" in options:
            raise ConfigurationError("with_options cannot rename a task; register a new one")
        clone = type(self)(self.app, self.fn, self.options.merged(dict(options)))
        return clone

    def make_message(
        self, args: Sequence[Any], kwargs: dict[str, Any], run_id: str | None = None
    ) -> Message:
        """The message of one run of this task (options changed by ``with_options`` ride along)."""
        base = self.app.registry.get(self.name)
        meta = self.options.overrides(base.options) if base is not None and base is not self else {}
        if self.options.task_run_name is not None:
            meta[MetaKey.NAME.value] = self.run_name(args, kwargs)
        prints = self.options.log_prints  # with_options(log_prints=...) rides along too
        if prints is not None and base is not None and prints != base.options.log_prints:
            meta[MetaKey.LOG_PRINTS.value] = prints
        if tracing.tracer is not None:
            tracing.inject(meta)
        return Message(run_id or new_run_id(), self.name, list(args), kwargs, meta)

    def run_name(self, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        """``task_run_name`` for one call: a template filled from the arguments by name
        (``"fetch-{url}"``, as in Prefect) or a callable's return value."""
        spec = self.options.task_run_name
        if callable(spec):
            return str(spec())
        if spec is None:
            return ""
        try:
            bound = inspect.signature(self.fn).bind(*args, **kwargs)
            bound.apply_defaults()
            return spec.format(**bound.arguments)
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise ConfigurationError(f"task_run_name {spec!r} cannot be filled: {exc}") from None

    def _due(self, kwargs: dict[str, Any]) -> str:
        """Pop ``delay`` / ``scheduled_at`` from ``kwargs`` (unless the function takes
        such a parameter) and return the enqueue script's due spec; pop ``wait_for``
        (same rule) and wait for those runs (see :mod:`taskq.upstream`)."""
        if "wait_for" in kwargs and "wait_for" not in self._params:
            wait_upstream(kwargs.pop("wait_for"))
        delay, at = self.options.delay, self.options.scheduled_at
        if "delay" in kwargs and "delay" not in self._params:
            delay = check_delay(kwargs.pop("delay"))
        if "scheduled_at" in kwargs and "scheduled_at" not in self._params:
            at = kwargs.pop("scheduled_at")
            if not isinstance(at, datetime):
                raise ConfigurationError(f"scheduled_at must be a datetime, got {at!r}")
        if at is not None:
            return f"a{int(at.timestamp() * 1000)}"
        if delay:
            return f"d{round(delay * 1000)}"
        return ""

    def _return_state(self, kwargs: dict[str, Any]) -> bool:
        """Pop Prefect's ``return_state`` from a call's ``kwargs`` (unless the function
        takes a parameter of that name): whether the call returns the final State."""
        if "return_state" in kwargs and "return_state" not in self._params:
            return bool(kwargs.pop("return_state"))
        return False

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Enqueue one run on the task's queue and return its future.

        ``delay=`` (seconds or timedelta) or ``scheduled_at=`` (a datetime) may be
        given here too, and ``wait_for=`` (futures to wait for first, see
        :mod:`taskq.upstream`), unless the function has a parameter of that name; the
        typed way is ``task.with_options(delay=...).submit(...)``. The run is
        Scheduled until due, then Pending. On a partitioned queue the run goes to the
        next partition in this process's round robin, or, with
        ``with_options(partition_key=...)``, to that key's partition.

        ``with_options(idempotency_key="order-42")`` enqueues at most one run per key
        (per queue) within ``dedup_ttl`` seconds (default: the settings' ``result_ttl``):
        a later submit with the key enqueues nothing and returns the first run's future.
        The check and the enqueue are one script, so two producers racing get one run.

        ``return_state=True`` (Prefect's) waits for the run and returns its final
        :class:`~taskq.states.State` instead of the future (``state.result()`` gives
        the value); untyped, like ``wait_for``: ``submit(...).wait()`` is the typed
        spelling.

        Raises:
            MessageError: An argument cannot be serialized with msgpack, or the
                payload breaks a limit the workers check (see :mod:`taskq.message`).
            RedisUnavailableError: Redis did not answer.
        """
        if tracing.tracer is not None:
            with tracing.producing(self, "submit"):
                return self._submit(args, kwargs)
        return self._submit(args, kwargs)

    def _submit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[R]:
        kw = dict(kwargs)
        if self._return_state(kw):
            future = self.submit(*args, **kw)
            future.wait()
            return future.state  # type: ignore[return-value]
        due = self._due(kw)
        args, kw = resolve_futures(args), resolve_futures(kw)
        runner = current_flow.get()
        key = self.options.idempotency_key
        if runner is not None:
            if key is not None:
                raise ConfigurationError(
                    "idempotency_key is for runs submitted from outside a flow: a flow's "
                    "children are idempotent already (their run ids are deterministic)"
                )
            return runner.submit_child(self, args, kw, due)
        msg = self.make_message(args, kw)
        run = (msg.run_id, encode_message(msg, self.app.broker.limits), due)
        broker, priority = self.app.broker, self.options.priority
        if key is None:
            queue = self.app.spread.pick(self.queue, self.options.partition_key)
            broker.producer.enqueue(queue, [run], priority, self.name)
            return Future(broker, queue, msg.run_id, self.name)
        # One run per key: the key picks the partition, so every submit of it meets there.
        queue = self.app.spread.pick(self.queue, self.options.partition_key or key)
        ttl = self.options.dedup_ttl or self.app.settings.result_ttl
        holder = broker.producer.enqueue_once(queue, key, run, ttl, priority, self.name)
        return Future(broker, queue, holder, self.name)

    delay = submit  # Prefect's name for a background run

    def future(self, run_id: str) -> Future[R]:
        """The future of a run of this task submitted earlier, from its id (on the
        task's queue; of a partitioned queue, the partition holding the run's record,
        asked in one round trip); see :meth:`taskq.App.future`.

        Raises:
            ConfigurationError: ``run_id`` is not a valid run id.
        """
        check_run_id(run_id)
        queue, broker = self.queue, self.app.broker
        if self.app.spread.partitioned(queue):
            names = self.app.spread.names(queue)
            queue = broker.producer.holder(names, run_id) or names[0]
        return Future(broker, queue, run_id, self.name)

    def stored_result(self, name: str) -> R:
        """The value a run of this task stored under ``name`` (its filled
        ``result_storage_key``, see :mod:`taskq.results`), read from the task's queue
        (of a partitioned queue, the name's home partition).

        Raises:
            ResultNotFoundError: Nothing is stored under ``name`` (never, or expired).
        """
        queue = self.queue
        if self.app.spread.partitioned(queue):
            queue = self.app.spread.pick(queue, name)
        raw = self.app.broker.stored.get(queue, name)
        if raw is None:
            raise ResultNotFoundError(f"no result is stored under {name!r} on queue {queue!r}")
        return decode_outcome(raw).value  # type: ignore[no-any-return]

    def map(self, *args: Any, **kwargs: Any) -> list[Future[R]]:
        """Enqueue one run per element, in one bulk call; futures come back in input order.

        As in Prefect: every iterable argument, positional or keyword (not a string or
        bytes), is mapped, run *i* getting its *i*-th element, and all of them must have
        the same length; any other argument, or one wrapped in :class:`taskq.unmapped`,
        goes whole to every run (see :mod:`taskq.mapping`). On a partitioned queue the
        runs are dealt over the partitions in turn (all to one with a
        ``partition_key``), one bulk call per partition, all pipelined.
        """
        if tracing.tracer is not None:
            with tracing.producing(self, "map"):
                return self._map(args, kwargs)
        return self._map(args, kwargs)

    def _map(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Future[R]]:
        if self.options.idempotency_key is not None:
            raise ConfigurationError(
                "idempotency_key names one run: use submit (or give each map item's run "
                "its own key with one submit each)"
            )
        kw = dict(kwargs)
        due = self._due(kw)
        rows, kws = spread_calls(args, kw, resolve_futures)
        runner = current_flow.get()
        if runner is not None:
            return runner.map_children(self, rows, kws, due)
        # Every payload is built before anything is sent: a bad item enqueues nothing.
        name, limits = self.name, self.app.broker.limits
        runs: list[tuple[str, bytes, str]] = []
        if self.options.task_run_name is not None or isinstance(kws, list):
            # Each run's own meta (its name) or keyword arguments: one payload at a time.
            for i, row in enumerate(rows):
                rid = new_run_id()
                kw_i = kws[i] if isinstance(kws, list) else kws
                meta = self.make_message(row, kw_i).meta
                try:
                    runs.append((rid, encode_call(rid, name, row, kw_i, meta, limits), due))
                except MessageError as exc:
                    raise MessageError(f"map item {i}: {exc}") from exc
        else:  # one meta for all: the shared part is checked once (encode_calls)
            ids = [new_run_id() for _ in rows]
            pairs = zip(ids, rows, strict=True)
            payloads = encode_calls(name, pairs, kws, self.make_message((), {}).meta, limits)
            try:
                for rid, payload in zip(ids, payloads, strict=False):
                    runs.append((rid, payload, due))
            except MessageError as exc:
                raise MessageError(f"map item {len(runs)}: {exc}") from exc
        broker, queue, spread = self.app.broker, self.queue, self.app.spread
        if not spread.partitioned(queue):
            broker.producer.enqueue_stream(queue, runs, self.options.priority, name)
            return [Future(broker, queue, rid, name) for rid, _, _ in runs]
        where = spread.deal(queue, len(runs), self.options.partition_key)
        parts: dict[str, list[tuple[str, bytes, str]]] = {}
        for q, run in zip(where, runs, strict=True):
            parts.setdefault(q, []).append(run)
        broker.producer.enqueue_parts(parts.items(), self.options.priority, name)
        return [Future(broker, q, run[0], name) for q, run in zip(where, runs, strict=True)]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here, in this process, with the task's retry policy.

        As in Prefect, a failed attempt is retried after its delay (slept here),
        up to ``retries`` times; the last error is raised as it was. Inside a
        running flow, the call instead submits a child run and waits for it.
        ``return_state=True`` returns the final :class:`~taskq.states.State` instead
        (nothing raised; ``state.result()`` gives the value or raises the error).
        """
        want_state = self._return_state(kwargs)
        if current_flow.get() is not None:
            future = self.submit(*args, **kwargs)
            if want_state:
                future.wait()
                return future.state  # type: ignore[return-value]
            return future.result()
        local = enter_local(self.name, self.queue)  # get_run_logger(): Python logging only
        try:
            attempt = 1
            while True:
                try:
                    value = returned_value(self.fn(*args, **kwargs))
                    return local_state(attempt, value) if want_state else value  # type: ignore[return-value]
                except (Exception, Retry, Cancel) as exc:
                    delay = (
                        None if isinstance(exc, Cancel) else self._local_retry_delay(attempt, exc)
                    )
                    if delay is None:
                        if want_state:
                            return local_state(attempt, error=exc)  # type: ignore[return-value]
                        raise
                time.sleep(delay)
                attempt += 1
        finally:
            current_run.reset(local)

    def _local_retry_delay(self, attempt: int, exc: BaseException) -> float | None:
        """The delay before the next in-process attempt, or None to give up."""
        run = TaskRun("local", self.queue, self.name, attempt)
        return retry_decision(self, self.options.retry, run, exc)


class AsyncTask(Task[P, R]):
    """A task whose function is ``async def``; a direct call returns a coroutine."""

    def __call__(  # type: ignore[override]
        self, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        want_state = self._return_state(kwargs)
        if current_flow.get() is not None:
            future = self.submit(*args, **kwargs)
            if want_state:
                future.wait()
                return _ready(future.state)  # type: ignore[arg-type]
            return _ready(future.result())
        return self._call_with_retries(want_state, *args, **kwargs)

    async def _call_with_retries(self, want_state: bool, *args: Any, **kwargs: Any) -> R:
        local = enter_local(self.name, self.queue)  # get_run_logger(): Python logging only
        try:
            attempt = 1
            while True:
                try:
                    value = returned_value(await self.fn(*args, **kwargs))
                    return local_state(attempt, value) if want_state else value  # type: ignore[return-value]
                except (Exception, Retry, Cancel) as exc:
                    delay = None
                    if not isinstance(exc, Cancel):
                        run = TaskRun("local", self.queue, self.name, attempt)
                        delay = await retry_decision_async(self, self.options.retry, run, exc)
                    if delay is None:
                        if want_state:
                            return local_state(attempt, error=exc)  # type: ignore[return-value]
                        raise
                await asyncio.sleep(delay)
                attempt += 1
        finally:
            current_run.reset(local)


async def _ready(value: R) -> R:
    return value
