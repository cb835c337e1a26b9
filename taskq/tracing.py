"""OpenTelemetry traces (the ``taskq[tracing]`` extra), off until :func:`instrument`.

Call ``taskq.tracing.instrument()`` in the module that defines your ``App`` (the one
producers import and ``taskq worker`` loads), after or before configuring your
tracer provider: both sides then trace. When on:

* ``submit`` and ``map`` called inside a valid current span open a PRODUCER span,
  ``taskq.submit <task>`` / ``taskq.map <task>`` (OTel's messaging conventions: the
  send is a span of its own, measuring the enqueue), and each run's message meta
  carries that span's W3C trace context (``tp``: ``traceparent``, ``ts``:
  ``tracestate`` when there is one). Outside any span nothing is added: no new trace
  per submit, and the payload is byte for byte what it is with tracing off.
* the worker runs each attempt in a CONSUMER span, ``taskq.run <task>``, whose parent
  is the context its meta carries (a root span when it carries none), current while
  the body runs: spans the body opens nest under it, and so do a flow's children,
  submitted inside its span. A flow's body gets one span per execution (a suspended
  flow's resume is another execution of the same attempt, attribute
  ``taskq.resumed``). Attributes: ``taskq.run_id``, ``taskq.attempt``,
  ``taskq.queue``, ``taskq.task``, ``taskq.state`` (what the attempt ended as:
  ``Completed``, ``Failed``, ``AwaitingRetry``, ``Retrying``, ``Cancelled``,
  ``AwaitingChildren``, ...) and the ``messaging.*`` ones; an attempt that raised
  (but for ``taskq.Cancel``) records the exception and has ERROR status, and so does
  one that ended ``Failed`` without raising (a result too large to store).

Off, every hook is one check of the module attribute :data:`tracer`, and this module
imports nothing of OpenTelemetry.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from taskq.errors import Cancel, ConfigurationError
from taskq.partitions import logical_queue
from taskq.protocol import MetaKey, StateName

if TYPE_CHECKING:
    from taskq.delivery import Delivery
    from taskq.task import Task

#: The tracer once :func:`instrument` ran; None while tracing is off.
tracer: Any = None

# OpenTelemetry's modules, bound by instrument() (never imported while tracing is off).
_otel: Any = None

#: What to install when the extra is missing.
INSTALL_HINT = "pip install 'taskq[tracing]'"

_TP, _TS = MetaKey.TRACE_PARENT.value, MetaKey.TRACE_STATE.value
_FAILED = StateName.FAILED.value


class _Otel:
    """The OpenTelemetry names taskq uses, imported once."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.context = context
        self.trace = trace
        self.producer, self.consumer = SpanKind.PRODUCER, SpanKind.CONSUMER
        self.Status, self.error = Status, StatusCode.ERROR
        # W3C Trace Context, whatever global propagator the app set: the meta's format
        # must not depend on a producer's or a worker's configuration.
        self.propagator = TraceContextTextMapPropagator()


def instrument(tracer_provider: Any = None) -> None:
    """Turn tracing on in this process (idempotent).

    Args:
        tracer_provider: The provider to take taskq's tracer from (default: the
            global one, as set by ``opentelemetry.trace.set_tracer_provider``, now or
            later).

    Raises:
        ConfigurationError: opentelemetry-api is not installed; the message says what
            to install.
    """
    global tracer, _otel
    try:
        otel = _Otel()
    except ImportError:
        raise ConfigurationError(f"tracing needs opentelemetry-api: {INSTALL_HINT}") from None
    _otel = otel
    tracer = otel.trace.get_tracer("taskq", tracer_provider=tracer_provider)


def uninstrument() -> None:
    """Turn tracing off in this process."""
    global tracer
    tracer = None


def _active() -> bool:
    return bool(_otel.trace.get_current_span().get_span_context().is_valid)


def producing(task: Task[Any, Any], operation: str) -> AbstractContextManager[Any]:
    """A PRODUCER span around a ``submit`` or ``map`` of ``task``, current while it
    enqueues; a context that does nothing outside a valid current span."""
    if not _active():
        return nullcontext()
    attributes = {
        "messaging.system": "taskq",
        "messaging.operation.type": "send",
        "messaging.operation.name": operation,
        "messaging.destination.name": task.queue,
        "taskq.task": task.name,
    }
    name = f"taskq.{operation} {task.name}"
    return tracer.start_as_current_span(name, kind=_otel.producer, attributes=attributes)  # type: ignore[no-any-return]


def inject(meta: dict[str, Any]) -> None:
    """Add the current span's W3C trace context to a message's ``meta`` (nothing
    outside a valid current span)."""
    if not _active():
        return
    carrier: dict[str, str] = {}
    _otel.propagator.inject(carrier)
    meta[_TP] = carrier["traceparent"]
    if carrier.get("tracestate"):
        meta[_TS] = carrier["tracestate"]


class RunSpan:
    """The CONSUMER span of one attempt (or flow execution), current from its start
    to :meth:`end`, on the thread (or asyncio task) that runs the body.

    Args:
        d: The delivery; its meta names the parent.
    """

    __slots__ = ("_errored", "_span", "_token")

    def __init__(self, d: Delivery) -> None:
        meta = d.message.meta
        carrier: dict[str, str] = {}
        tp, ts = meta.get(_TP), meta.get(_TS)
        if isinstance(tp, str):
            carrier["traceparent"] = tp
            if isinstance(ts, str):
                carrier["tracestate"] = ts
        parent = _otel.propagator.extract(carrier)  # empty: a root span
        queue = logical_queue(d.queue)
        attributes: dict[str, Any] = {
            "messaging.system": "taskq",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": d.run_id,
            "taskq.run_id": d.run_id,
            "taskq.attempt": d.attempt,
            "taskq.queue": queue,
            "taskq.task": d.task.name,
        }
        if d.resumed:
            attributes["taskq.resumed"] = True
        d.outcome = None
        self._span = tracer.start_span(
            f"taskq.run {d.task.name}", context=parent, kind=_otel.consumer, attributes=attributes
        )
        self._token = _otel.context.attach(_otel.trace.set_span_in_context(self._span))
        self._errored = False

    def error(self, exc: BaseException) -> None:
        """The body raised ``exc`` (``taskq.Cancel``: no error)."""
        if isinstance(exc, Cancel):
            return
        self._span.record_exception(exc)
        self._span.set_status(_otel.Status(_otel.error, f"{type(exc).__name__}: {exc}"))
        self._errored = True

    def end(self, d: Delivery) -> None:
        """The attempt's outcome is decided (``d.outcome``): end the span."""
        try:
            if d.outcome is not None:
                self._span.set_attribute("taskq.state", d.outcome)
                if d.outcome == _FAILED and not self._errored:
                    self._span.set_status(_otel.Status(_otel.error, "the run ended Failed"))
        finally:
            _otel.context.detach(self._token)
            self._span.end()
