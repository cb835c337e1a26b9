"""taskq.protocol agrees with the code that writes and reads the wire today."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgpack
import pytest

import taskq
from taskq import keys, message, options, protocol, states
from taskq.engine import parent_of
from taskq.message import Message
from taskq.protocol import FINAL, Meta, Parent, StateName


def test_final_names_are_the_terminal_types() -> None:
    terminal = {n for n, t in states.NAME_TO_TYPE.items() if t in states.TERMINAL_TYPES}
    assert terminal == FINAL == states.FINAL_NAMES


def test_every_stored_state_has_a_type() -> None:
    stored = set(StateName) - {StateName.UNKNOWN}
    assert stored == set(states.NAME_TO_TYPE)
    assert states.State("Unknown").type is states.StateType.PENDING


def test_state_names_are_plain_strings_on_the_wire() -> None:
    assert msgpack.packb({StateName.FAILED: 1}) == msgpack.packb({"Failed": 1})
    assert states.NAME_TO_TYPE["AwaitingRetry"] is states.StateType.SCHEDULED


def test_constants_shared_with_other_modules_agree() -> None:
    assert protocol.PRIORITIES == keys.PRIORITIES
    assert protocol.RETRY_OVERRIDES == options.RETRY_OPTIONS
    assert protocol.EntryField.PAYLOAD.encode() == message.PAYLOAD_FIELD
    assert protocol.EntryField.RUN.encode() == message.RUN_FIELD
    body = msgpack.unpackb(message.encode_outcome("Failed", 2, error=taskq.ErrorInfo("E", "m")))
    assert set(body) <= set(protocol.OutcomeField)
    assert protocol.started_field(3) == "t3" and protocol.error_field(3) == "x3"


def _fetch() -> taskq.Task[[str], str]:
    app = taskq.App("redis://127.0.0.1:1/0")

    @app.task(task_run_name="fetch-{url}", retries=2)
    def fetch(url: str) -> str:
        return url

    return fetch


def _metas() -> list[dict[str, Any]]:
    """Meta maps as the producers write them today."""
    fetch = _fetch()
    changed = fetch.with_options(
        result_ttl=60,
        timeout_seconds=2.5,
        refresh_cache=True,
        retries=5,
        retry_delay_seconds=timedelta(seconds=3),
        retry_jitter_factor=0.5,
        retry_deadline_seconds=90,
    )
    plain = fetch.make_message(["a"], {}).meta
    full = changed.make_message(["b"], {}).meta
    # As FlowRun._message adds a durable flow's fields to its child's message.
    child = {**full, "parent": ["q", "flow-id", 7], "c": b"\x01\x02"}
    return [{}, plain, full, child, {"parent": ["q", "f", 0]}]


@pytest.mark.parametrize("raw", _metas())
def test_meta_round_trips_todays_maps_to_the_same_bytes(raw: dict[str, Any]) -> None:
    meta = Meta.from_dict(raw)
    assert meta.extra == {}
    assert list(meta.to_dict().items()) == list(raw.items())
    assert msgpack.packb(meta.to_dict()) == msgpack.packb(raw)


def test_meta_typed_fields() -> None:
    meta = Meta.from_dict(_metas()[3])
    assert meta.parent == Parent("q", "flow-id", 7)
    assert meta.call == b"\x01\x02"
    assert meta.name == "fetch-b"
    assert (meta.result_ttl, meta.timeout_seconds, meta.refresh_cache) == (60, 2.5, True)
    assert meta.retry == {
        "retries": 5,
        "retry_delay_seconds": 3.0,
        "retry_jitter_factor": 0.5,
        "retry_deadline_seconds": 90,
    }


@pytest.mark.parametrize(
    "raw",
    [
        {"timeout_seconds": -1, "result_ttl": "x", "refresh_cache": 1},
        {"parent": ["q"], "c": "not bytes", "name": 5},
        {"parent": ["q", "f", 10]},
        {"future": [1, 2]},
    ],
)
def test_meta_keeps_what_a_reader_would_ignore_as_it_came(raw: dict[str, Any]) -> None:
    meta = Meta.from_dict(raw)
    assert meta.extra == raw
    assert meta.to_dict() == raw


@pytest.mark.parametrize(
    "value",
    [
        ["q", "f"],
        ["q", "f", 3],
        ["q", "f", 9],
        ["q", "f", 10],
        ["q", "f", -1],
        ["q", "f", True],
        ["q", "f", 1.0],
        ["q", 1, 0],
        ["q"],
        ("q", "f", 0),
        None,
        "q",
    ],
)
def test_parent_parse_agrees_with_the_engine(value: Any) -> None:
    parsed = Parent.parse(value)
    today = parent_of(Message("r", "t", [], {}, {"parent": value}))
    assert (None if parsed is None else (parsed.queue, parsed.flow_id, parsed.level)) == today
