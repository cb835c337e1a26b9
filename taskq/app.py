"""``App``: the registry of tasks and the connection settings they share.

An App holds no global state: two Apps (say, one per test) never see each
other's tasks or keys.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any, ParamSpec, Protocol, TypeVar, Unpack, overload
from urllib.parse import urlsplit

from taskq import options as opts
from taskq.broker import Broker, topology
from taskq.broker.connection import redact_url
from taskq.config import Settings
from taskq.errors import ConfigurationError, UnknownTaskError
from taskq.flows.deadline import DEADLINE_TASK, deadline_task
from taskq.flows.flow import Flow
from taskq.futures import Future, check_run_id
from taskq.keys import Keyspace, check_name
from taskq.options import FlowOptionsDict, TaskOptionsDict
from taskq.partitions import Spread, is_partition_name, logical_queue
from taskq.protocol import CancelReply
from taskq.task import AsyncTask, Task

P = ParamSpec("P")
R = TypeVar("R")


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` with options returns."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class FlowDecorator(Protocol):
    """What ``@app.flow(...)`` with options returns."""

    def __call__(self, fn: Callable[P, R], /) -> Flow[P, R]: ...


class App:
    """A taskq application: tasks, settings, and the Redis they use.

    Args:
        redis_url: Redis to use; default ``TASKQ_REDIS_URL`` or ``redis://localhost:6379/0``.
        prefix: Key prefix; default ``TASKQ_PREFIX`` or ``taskq``.
        default_queue: Queue of tasks that name none.
        **settings: Any other :class:`~taskq.config.Settings` field, e.g.
            ``partitions={"hot": 8}`` (see :mod:`taskq.partitions`).

    Raises:
        ConfigurationError: A setting is invalid.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str | None = None,
        default_queue: str | None = None,
        **settings: Any,
    ) -> None:
        try:
            self.settings = Settings.from_env(
                redis_url=redis_url, prefix=prefix, default_queue=default_queue, **settings
            )
        except TypeError as exc:
            raise ConfigurationError(f"unknown App setting: {exc}") from None
        check_redis_url(self.settings.redis_url)
        self.keys = Keyspace(self.settings.prefix)
        self.spread = Spread(self.settings.partitions)
        self.registry: dict[str, Task[Any, Any]] = {}
        self._deadline: Task[Any, Any] | None = None
        self._broker: Broker | None = None

    def __repr__(self) -> str:
        return f"<App prefix={self.settings.prefix!r} tasks={len(self.registry)}>"

    @property
    def broker(self) -> Broker:
        """This process's Redis access (made on first use)."""
        if self._broker is None:
            self._broker = Broker(self.settings, self.keys)
        return self._broker

    def configure(self, **settings: Any) -> None:
        """Change settings after construction (``None`` values are ignored).

        Used by ``taskq worker --redis-url``; existing connections are dropped.
        """
        given = {k: v for k, v in settings.items() if v is not None}
        if not given:
            return
        if "redis_url" in given:
            check_redis_url(given["redis_url"])
        try:
            self.settings = replace(self.settings, **given)
        except TypeError as exc:
            raise ConfigurationError(f"unknown App setting: {exc}") from None
        self.keys = Keyspace(self.settings.prefix)
        self.spread = Spread(self.settings.partitions)
        self.close()
        self._broker = None

    def close(self) -> None:
        """Close this App's Redis connections."""
        if self._broker is not None:
            self._broker.close()

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: None = None, /, **options: Unpack[TaskOptionsDict]) -> TaskDecorator: ...

    def task(
        self, fn: Callable[..., Any] | None = None, /, **options: Unpack[TaskOptionsDict]
    ) -> Task[Any, Any] | TaskDecorator:
        """Register a function as a task: ``@app.task`` or ``@app.task(option=...)``.

        Raises:
            ConfigurationError: An option is unknown or invalid, or the name is taken.
        """
        opts.check_known(dict(options), decorator=True)

        def register(f: Callable[..., Any], depth: int = 3) -> Task[Any, Any]:
            default = _default_name(f, "name" in options, depth)
            built = opts.build(default, opts.with_defaults(dict(options), self.settings))
            cls = AsyncTask if inspect.iscoroutinefunction(f) else Task
            task: Task[Any, Any] = cls(self, f, built)
            self._register(task)
            return task

        if fn is not None:
            return register(fn, 4)
        return register  # type: ignore[return-value]

    @overload
    def flow(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Flow[P, R]: ...

    @overload
    def flow(self, fn: Callable[P, R], /) -> Flow[P, R]: ...

    @overload
    def flow(self, fn: None = None, /, **options: Unpack[FlowOptionsDict]) -> FlowDecorator: ...

    def flow(
        self, fn: Callable[..., Any] | None = None, /, **options: Unpack[FlowOptionsDict]
    ) -> Flow[Any, Any] | FlowDecorator:
        """Register a function as a flow: ``@app.flow`` or ``@app.flow(option=...)``.

        A flow takes every task option plus ``inline_wait_seconds`` (how long its
        body blocks for children before it suspends; default 0.5). An ``async def``
        flow body runs on a private event loop; a flow's result is its return value.

        Raises:
            ConfigurationError: An option is unknown or invalid, or the name is taken.
        """
        opts.check_known(dict(options), decorator=True, flow=True)

        def register(f: Callable[..., Any], depth: int = 3) -> Flow[Any, Any]:
            default = _default_name(f, "name" in options, depth)
            built = opts.build(default, dict(options), flow=True)
            flow: Flow[Any, Any] = Flow(self, f, built)
            self._register(flow)
            return flow

        if fn is not None:
            return register(fn, 4)
        return register

    def _register(self, task: Task[Any, Any]) -> None:
        name = task.name
        if name in self.registry and self.registry[name].fn is not task.fn:
            raise ConfigurationError(f"a different task is already named {name!r}")
        self.registry[name] = task

    def get_task(self, name: str) -> Task[Any, Any]:
        """The task registered as ``name``.

        Raises:
            UnknownTaskError: No such task in this app.
        """
        try:
            return self.registry[name]
        except KeyError:
            if name == DEADLINE_TASK:  # built in: every worker runs flows' deadline runs
                if self._deadline is None:
                    self._deadline = deadline_task(self)
                return self._deadline
            raise UnknownTaskError(f"no task named {name!r} is registered") from None

    def cancel(self, run_id: str, queue: str | None = None, reason: str = "") -> CancelReply:
        """Cancel a run by id (see :mod:`taskq.cancel`): one that has not started ends
        ``Cancelled`` and never starts; a running one is asked to stop; a flow's
        unfinished children are cancelled too.

        Args:
            run_id: The run.
            queue: Its queue (default: found as :meth:`future` finds it).
            reason: Why, recorded with the run (default ``"cancelled"``).

        Returns:
            ``CancelReply.CANCELLED``, ``REQUESTED`` (running), ``ENDED`` (it had
            ended: nothing changed) or ``UNKNOWN`` (no such run, or its record expired).

        Raises:
            ConfigurationError: ``run_id`` is not a valid run id.
        """
        from taskq.cancel import cancel_run

        check_run_id(run_id)
        return cancel_run(self.broker, self.locate(run_id, queue), run_id, reason)

    def future(self, run_id: str, queue: str | None = None) -> Future[Any]:
        """The future of a run submitted earlier, by any process, from its id
        (Celery's ``AsyncResult(id)``); typed: ``task.future(run_id)``.

        Args:
            run_id: The run's id (``Future.run_id``).
            queue: The run's queue (a partitioned queue's partition is found: see
                :meth:`find_run`). None: the default queue if the run's record is
                there, else the queue whose record it is (found by SCAN), else the
                default queue.

        Returns:
            A Future of that run; its ``task_name`` is empty (the run's record does
            not hold it: use ``task.future`` for that). For a run id that is unknown
            (never submitted, or expired after ``result_ttl``) its ``state`` is
            ``Unknown`` and ``result(timeout=...)`` raises ResultTimeoutError.

        Raises:
            ConfigurationError: ``run_id`` or ``queue`` is not a valid name.
        """
        check_run_id(run_id)
        if queue is not None:
            check_queue(queue)
        return Future(self.broker, self.locate(run_id, queue, scan=queue is None), run_id, "")

    def locate(self, run_id: str, queue: str | None = None, *, scan: bool = True) -> str:
        """The physical queue holding ``run_id``'s record, or where it would be.

        Of ``queue`` (default: the default queue) split N ways, the partitions' run
        records are asked in one round trip (``EXISTS``; none for an unpartitioned queue
        named explicitly). When none has it and ``scan``, the queue whose record it is
        is found by SCAN (of the logical ``queue`` only, if one was named).

        Returns:
            That queue; for a run found nowhere, the first of ``queue``'s names.
        """
        names = self.settings.queue_names(queue or self.settings.default_queue)
        if len(names) > 1 or queue is None:
            found = self.broker.producer.holder(names, run_id)
            if found is not None:
                return found
        if scan:
            found = self.broker.producer.find_run(run_id, queue)
            if found is not None:
                return found
        return names[0]

    def physical_queues(self, queues: Sequence[str] | None = None) -> list[str]:
        """The physical queues a worker of ``queues`` consumes: each logical queue's
        partitions, in order (default: every queue of the app, :meth:`queues`).

        A name that is already a partition's is kept as it is.
        """
        out: list[str] = []
        for q in queues or self.queues():
            for name in self.settings.queue_names(q):
                if name not in out:
                    out.append(name)
        return out

    def queues(self) -> list[str]:
        """Every queue a registered task uses (the default queue first)."""
        found = [self.settings.default_queue]
        for t in self.registry.values():
            if t.queue not in found:
                found.append(t.queue)
        return found


def check_queue(queue: str) -> str:
    """Return ``queue`` if it is a valid queue name or a partition's name, else raise.

    Raises:
        ConfigurationError: Neither.
    """
    if isinstance(queue, str) and is_partition_name(queue):
        check_name("queue name", logical_queue(queue))
        return queue
    return check_name("queue name", queue)


def _default_name(f: Callable[..., Any], named: bool, depth: int) -> str:
    """``module.qualname``. A function of ``__main__`` takes its module's import name when
    it was run as ``python -m pkg.mod``; otherwise, unless the task is ``named``, a warning
    says that workers cannot find ``__main__.f`` (``depth``: the decorator's caller)."""
    module = f.__module__
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name and spec.name != "__main__":
            module = spec.name
        elif not named:
            warnings.warn(
                f"task {f.__qualname__!r} is defined in __main__: it registers as "
                f"'__main__.{f.__qualname__}', which a worker importing your module by name "
                "cannot find; move it to a module (or run this one with python -m) or give "
                "it name=...",
                UserWarning,
                stacklevel=depth,
            )
    return f"{module}.{f.__qualname__}"


_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> str:
    """Return ``url`` if it is a Redis URL taskq can use, before anything connects.

    Accepted: ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs, and the Cluster
    and Sentinel forms ``redis+cluster://`` and ``redis+sentinel://``
    (:mod:`taskq.broker.topology`).

    Raises:
        ConfigurationError: The URL is malformed or of another scheme (the message
            shows it with its password redacted).
    """
    shown = redact_url(str(url))

    def bad(why: str) -> ConfigurationError:
        return ConfigurationError(f"invalid Redis URL {shown!r}: {why}")

    if isinstance(url, str) and topology.scheme_of(url).startswith(("redis+", "rediss+")):
        if topology.scheme_of(url) not in (*topology.SCHEMES, "rediss+cluster", "rediss+sentinel"):
            raise bad(
                f"{topology.scheme_of(url)}:// URLs are not supported; use redis+cluster:// "
                "or redis+sentinel://"
            )
        topology.parse(url, shown)
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except (ValueError, TypeError, AttributeError) as exc:
        raise bad(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        what = f"scheme {scheme!r} is not supported; use" if scheme else "not a URL; use"
        raise bad(f"{what} redis://host[:port][/db], rediss://... (TLS) or unix:///path")
    if scheme == "unix" and not parts.path:
        raise bad("a unix:// URL needs the socket's path, e.g. unix:///run/redis.sock")
    db = parts.path.lstrip("/")
    if scheme != "unix" and db and not db.isdigit():
        raise bad(f"the database must be a number, not {db!r}")
    del port  # parsed only to be checked
    return url


def load_object(spec: str, default: str) -> tuple[Any, str, str]:
    """Import ``MODULE:ATTR`` (``MODULE`` alone: ``MODULE:<default>``; ``ATTR`` may be
    dotted) and return the object with the module's name and the attribute's.

    Only for a name the operator gives the CLI (never one read from a message).

    Raises:
        ConfigurationError: The module cannot be imported or has no such attribute.
    """
    module_name, _, attr = spec.partition(":")
    attr = attr or default
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from None
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            hint = "" if spec.count(":") else f" (name the App with {module_name}:ATTR)"
            raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}{hint}")
        found = getattr(found, part)
    return found, module_name, attr


def load_app(spec: str) -> App:
    """Import ``MODULE:ATTR`` (or ``MODULE``, which must define ``app``) and return the App.

    Raises:
        ConfigurationError: The module cannot be imported or holds no App there.
    """
    app, module_name, attr = load_object(spec, "app")
    if not isinstance(app, App):
        raise ConfigurationError(
            f"{module_name}:{attr} is not a taskq.App (got {type(app).__name__})"
        )
    return app
