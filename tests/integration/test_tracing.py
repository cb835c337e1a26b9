"""OpenTelemetry traces, producer and worker in this process (one tracer provider sees
both sides, exported to the SDK's in-memory exporter): a run's span is a child of the
submit that enqueued it, a flow's children nest under the flow's run span, a failed
attempt has error status, and with tracing off the payload is unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

import taskq
from taskq import tracing
from taskq.errors import TaskFailedError
from taskq.message import Message, decode_message, encode_message
from taskq.testing import BurstWorker


class Spans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("tests")

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        [span] = self.named(name)
        return span


@pytest.fixture
def spans() -> Iterator[Spans]:
    found = Spans()
    tracing.instrument(tracer_provider=found.provider)
    yield found
    tracing.uninstrument()


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def entry_meta(app: taskq.App, queue: str = "default") -> list[dict[str, object]]:
    """The meta of every run waiting in the queue's priority-0 stream."""
    entries = app.broker.execute("XRANGE", app.keys.stream(queue, 0), "-", "+")
    return [decode_message(dict(zip(f[::2], f[1::2], strict=True))[b"m"]).meta for _, f in entries]


def test_a_run_span_is_a_child_of_the_submit_span_under_the_callers_span(
    taskq_app: taskq.App, burst_worker: BurstWorker, spans: Spans
) -> None:
    @taskq_app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    with spans.tracer.start_as_current_span("request"):
        future = add.submit(1, 2)
    assert "tp" in entry_meta(taskq_app)[0]
    burst_worker(taskq_app)
    assert future.result(timeout=5) == 3

    request, submit, run = (
        spans.one("request"),
        spans.one("taskq.submit add"),
        spans.one("taskq.run add"),
    )
    assert submit.kind is SpanKind.PRODUCER and run.kind is SpanKind.CONSUMER
    assert parent_of(submit) == span_id(request)
    assert parent_of(run) == span_id(submit)
    assert trace_id(run) == trace_id(submit) == trace_id(request)
    assert run.attributes is not None
    assert run.attributes["taskq.run_id"] == future.run_id
    assert run.attributes["taskq.attempt"] == 1
    assert run.attributes["taskq.queue"] == "default"
    assert run.attributes["taskq.task"] == "add"
    assert run.attributes["taskq.state"] == "Completed"
    assert run.status.status_code is StatusCode.UNSET


def test_map_runs_share_one_producer_span(
    taskq_app: taskq.App, burst_worker: BurstWorker, spans: Spans
) -> None:
    @taskq_app.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    with spans.tracer.start_as_current_span("batch"):
        futures = double.map(range(3))
    burst_worker(taskq_app)
    assert [f.result(timeout=5) for f in futures] == [0, 2, 4]
    mapped = spans.one("taskq.map double")
    runs = spans.named("taskq.run double")
    assert len(runs) == 3
    assert {parent_of(r) for r in runs} == {span_id(mapped)}
    assert parent_of(mapped) == span_id(spans.one("batch"))


def test_a_flows_children_nest_under_the_flows_run_span(
    taskq_app: taskq.App, burst_worker: BurstWorker, spans: Spans
) -> None:
    @taskq_app.task(name="square")
    def square(x: int) -> int:
        return x * x

    @taskq_app.flow(name="total")
    def total(n: int) -> int:
        return sum(f.result() for f in square.map(range(n))) + square(10)

    with spans.tracer.start_as_current_span("request"):
        future = total.submit(3)
    burst_worker(taskq_app, concurrency=1)  # one slot: the flow suspends, then resumes
    assert future.result(timeout=5) == 0 + 1 + 4 + 100

    request = spans.one("request")
    flow_runs = spans.named("taskq.run total")
    children = spans.named("taskq.run square")
    assert len(children) == 4
    assert len(flow_runs) >= 2, "with one slot the flow suspends and runs again"
    everything = spans.exporter.get_finished_spans()
    assert {trace_id(s) for s in everything} == {trace_id(request)}
    by_id = {span_id(s): s for s in everything}
    flow_ids = {span_id(s) for s in flow_runs}
    for child in children:
        producer = by_id[parent_of(child)]  # type: ignore[index]
        assert producer.kind is SpanKind.PRODUCER
        assert producer.name in ("taskq.map square", "taskq.submit square")
        assert parent_of(producer) in flow_ids
    # Every execution of the flow is a child of the flow's own submit.
    assert {parent_of(s) for s in flow_runs} == {span_id(spans.one("taskq.submit total"))}
    states = [s.attributes["taskq.state"] for s in flow_runs if s.attributes]
    assert states[0] == "AwaitingChildren" and states[-1] == "Completed"


def test_a_failed_attempt_has_error_status_and_an_exception_event(
    taskq_app: taskq.App, burst_worker: BurstWorker, spans: Spans
) -> None:
    @taskq_app.task(name="boom", retries=1)
    def boom() -> None:
        raise RuntimeError("kaput")

    with spans.tracer.start_as_current_span("request"):
        future = boom.submit()
    burst_worker(taskq_app)
    with pytest.raises(TaskFailedError):
        future.result(timeout=5)
    attempts = sorted(spans.named("taskq.run boom"), key=lambda s: s.start_time or 0)
    assert [s.attributes["taskq.attempt"] for s in attempts if s.attributes] == [1, 2]
    assert [s.attributes["taskq.state"] for s in attempts if s.attributes] == [
        "Retrying",
        "Failed",
    ]
    submit = spans.one("taskq.submit boom")
    for span in attempts:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "RuntimeError: kaput"
        assert [e.name for e in span.events] == ["exception"]
        assert parent_of(span) == span_id(submit)


def test_outside_any_span_nothing_is_added_and_the_run_span_is_a_root(
    taskq_app: taskq.App, burst_worker: BurstWorker, spans: Spans
) -> None:
    @taskq_app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    future = add.submit(1, 2)
    assert entry_meta(taskq_app) == [{}]
    burst_worker(taskq_app)
    assert future.result(timeout=5) == 3
    assert spans.named("taskq.submit add") == []
    assert parent_of(spans.one("taskq.run add")) is None


def test_with_tracing_off_the_payload_is_unchanged(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    other = Spans()
    with other.tracer.start_as_current_span("request"):  # a span, but taskq not instrumented
        future = add.submit(1, 2)
    entries = taskq_app.broker.execute("XRANGE", taskq_app.keys.stream("default", 0), "-", "+")
    [(_, flat)] = entries
    payload = dict(zip(flat[::2], flat[1::2], strict=True))[b"m"]
    assert payload == encode_message(Message(future.run_id, "add", [1, 2], {}, {}))
    burst_worker(taskq_app)
    assert future.result(timeout=5) == 3
    assert other.exporter.get_finished_spans()[0].name == "request"
    assert len(other.exporter.get_finished_spans()) == 1


def test_instrument_without_the_extra_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(taskq.ConfigurationError, match=r"pip install 'taskq\[tracing\]'"):
        tracing.instrument()
    assert tracing.tracer is None


def test_an_async_run_gets_its_span_on_the_event_loop(
    taskq_app: taskq.App, burst_worker: BurstWorker, spans: Spans
) -> None:
    @taskq_app.task(name="fetch")
    async def fetch(x: int) -> int:
        with spans.tracer.start_as_current_span("inside"):  # nests under the run's span
            return x

    with spans.tracer.start_as_current_span("request"):
        future = fetch.submit(7)
    burst_worker(taskq_app)
    assert future.result(timeout=5) == 7
    run, inside = spans.one("taskq.run fetch"), spans.one("inside")
    assert parent_of(run) == span_id(spans.one("taskq.submit fetch"))
    assert parent_of(inside) == span_id(run)
    assert run.attributes is not None and run.attributes["taskq.state"] == "Completed"
