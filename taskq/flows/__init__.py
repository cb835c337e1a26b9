"""Flows: tasks whose bodies call other tasks, durable through Redis.

The flow API is :class:`taskq.flows.flow.Flow` (made by ``@app.flow``); one execution
of a body is a :class:`taskq.flows.run.FlowRun`, whose children are
futures (:class:`taskq.flows.run.ChildFuture`) and whose waits may raise
:class:`taskq.flows.run.Suspend`; :mod:`taskq.flows.resume` runs a delivered flow on a
worker (replay, suspend, resume) and tells a flow of children that ended outside their
own finish (duplicates, dead letters). Nothing here is imported by tasks: a task
finds its running flow through ``taskq.task.current_flow``.

A flow run's children get deterministic ids, ``<flow run id>.<sequence>``, so a
replayed body finds the same children: enqueue is idempotent, and a child that
already ended hands back its stored outcome instead of running again.

When the body waits for children that have not ended, it blocks for up to
``inline_wait_seconds`` (only when its worker has a free slot for them), then
*suspends*: :class:`Suspend` unwinds the body, the ``suspend`` script acks the
delivery and records the wait set, and the slot is free. Each child, once ended,
runs the ``notify`` script on the flow's hash tag; the one that empties the wait
set re-enqueues the flow exactly once, and the body replays from the top.

Flow bodies must therefore be deterministic in the calls they make (the same
children in the same order, given the same results); side effects belong in
tasks. This is the rule Temporal and DBOS workflows follow. Each child's message
carries a digest of its call (meta ``c``), which the worker stores in the child's
outcome; a replay that calls something else for a child that has one fails the
flow with :class:`NonDeterministicFlowError` rather than hand it another call's
result.
"""
