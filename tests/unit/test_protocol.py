"""taskq.protocol agrees with the code that writes and reads the wire today."""

from __future__ import annotations

import enum
import itertools
import re
from datetime import timedelta
from importlib import resources
from typing import Any

import msgpack
import pytest

import taskq
from taskq import keys, message, options, protocol, scripts, states
from taskq.broker import delay as broker_delay
from taskq.flows.resume import parent_of
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
    assert broker_delay.delay_mark(3) == protocol.PRIORITY_MARK + b"3"
    lua_mark = f"'\\{protocol.PRIORITY_MARK[0]}P'"  # Lua writes the byte as \193
    assert lua_mark in _raw("promote.lua")


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
    child = {**full, "parent": ["q", "flow-id", 7], "c": b"\x01\x02", "fp": b"\x03" * 16}
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
    assert meta.flow_parameters == b"\x03" * 16
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


# -- the Lua side ---------------------------------------------------------------------

SCRIPT_FILES = sorted(p.name for p in resources.files("taskq.scripts").iterdir())
LUA = [f for f in SCRIPT_FILES if f.endswith(".lua")]
SCRIPTS = [f.removesuffix(".lua") for f in LUA if not f.startswith("lib_")]

#: Each script's reply-code enum; the codes its header documents must be its members.
REPLIES: dict[str, type[enum.IntEnum]] = {
    "start": protocol.StartKind,
    "finish": protocol.FinishReply,
    "retry": protocol.RetryReply,
    "retry_now": protocol.RetryReply,
    "cancel": protocol.CancelReply,
    "suspend": protocol.SuspendReply,
    "park": protocol.ParkReply,
    "enqueue": protocol.EnqueueReply,
    "notify": protocol.NotifyReply,
    "reset": protocol.ResetReply,
    "requeue": protocol.RequeueReply,
}


def _raw(file: str) -> str:
    return resources.files("taskq.scripts").joinpath(file).read_text()


def _code(source: str) -> str:
    """The source without its comments (a Lua comment starts at ``--``; the scripts
    have no ``--`` inside a string)."""
    return "\n".join(line.split("--", 1)[0] for line in source.split("\n"))


def _header(file: str) -> str:
    lines = _raw(file).split("\n")
    if lines[0].startswith("#!"):
        lines = lines[1:]
    head = []
    for line in lines:
        if not line.startswith("--") or line.startswith("--!include"):
            break
        head.append(line)
    return "\n".join(head)


def _calls(source: str, command: str) -> list[list[str]]:
    """The arguments (as source text) of every ``redis.call('<command>', ...)``."""
    out = []
    for m in re.finditer(rf"redis\.call\('{command}',", source):
        depth, i, args, start = 1, m.end(), [], m.end()
        while depth:
            ch = source[i]
            if ch in "({":
                depth += 1
            elif ch in ")}":
                depth -= 1
            if (ch == "," and depth == 1) or depth == 0:
                args.append(source[start:i].strip())
                start = i + 1
            i += 1
        out.append(args)
    return out


def _literal(arg: str) -> str | None:
    m = re.fullmatch(r"'([^']*)'", arg)
    return m.group(1) if m else None


def test_loading_keeps_the_flags_line_first_and_inserts_every_include() -> None:
    for name in SCRIPTS:
        source = scripts.load(name).source.decode()
        first = _raw(f"{name}.lua").split("\n", 1)[0]
        assert source.split("\n", 1)[0] == first, name
        assert not re.search(r"^--!include", source, re.M), name
        for lib in re.findall(r"^--!include (\S+)$", _raw(f"{name}.lua"), re.M):
            assert source.count(f"-- {lib.removesuffix('.lua')}:") == 1, (name, lib)


def test_lua_state_sets_are_the_protocol_sets() -> None:
    tables = re.findall(r"^local (\w+) = \{([^}]*)\}$", _raw("lib_states.lua"), re.M)
    assert tables
    for name, body in tables:
        members = set(re.findall(r"(\w+) = true", body))
        assert members == set(getattr(protocol, name)), name


def test_shared_pieces_are_written_once() -> None:
    # The clock, the terminal set and the fence live in their libraries only.
    for file in LUA:
        code = _code(_raw(file))
        if file != "lib_time.lua":
            assert "'TIME'" not in code, file
        if file != "lib_states.lua":
            assert not re.search(r"\b(Completed|Cancelled) = true", code), file
        if file != "lib_fence.lua":
            assert "'fenced'" not in code, file
            # A fence check typed out again names Retrying (start.lua and retry_now.lua
            # only store it).
            assert "'Retrying'" not in code or file in ("start.lua", "retry_now.lua"), file


def test_every_state_a_script_names_is_a_protocol_state() -> None:
    known = set(StateName) | set(protocol.ErrorType) | {protocol.PROGRESS_EVENT}
    for file in LUA:
        code = _code(_raw(file))
        assert set(re.findall(r"'([A-Z][a-z][A-Za-z]*)'", code)) <= known, file
        for command in ("HSET", "HSETNX", "XADD"):
            # an event's 's' may also be the Progress report, which names no state
            allowed = set(StateName) | ({protocol.PROGRESS_EVENT} if command == "XADD" else set())
            for args in _calls(code, command):
                values = [v for f, v in itertools.pairwise(args) if f == "'s'"]
                for value in values:
                    assert set(re.findall(r"'(\w+)'", value)) <= allowed, (file, args)
        assert set(re.findall(r"\bs = '(\w+)'", code)) <= set(StateName), file


def test_every_record_field_a_script_touches_is_a_protocol_field() -> None:
    fields = set(protocol.RecordField)
    prefixes = {protocol.STARTED_PREFIX, protocol.ERROR_PREFIX}
    seen = set()
    for file in LUA:
        code = _code(_raw(file))
        named: list[str] = []
        for command in ("HSET", "HSETNX"):
            named += [a for args in _calls(code, command) for a in args[1::2]]
        for command in ("HMGET", "HDEL"):
            named += [a for args in _calls(code, command) for a in args[1:]]
        for command in ("HGET", "HINCRBY", "HEXISTS"):
            named += [args[1] for args in _calls(code, command)]
        for arg in named:
            if (prefix := re.fullmatch(r"'(\w+)' \.\. \w+", arg)) is not None:
                assert prefix.group(1) in prefixes, (file, arg)
            elif (lit := _literal(arg)) is not None:
                assert lit in fields, (file, arg)
                seen.add(lit)
    assert seen == fields  # and every protocol field is one a script uses


def test_every_event_and_entry_field_a_script_writes_is_a_protocol_field() -> None:
    by_key: dict[str, set[str]] = {
        "events": set(protocol.EventField),
        "stream": set(protocol.EntryField),
        "dead": set(protocol.DeadField),
    }
    for file in LUA:
        code = _code(_raw(file))
        # dead.lua builds its XADD as a table (to append the entry's own fields).
        adds = _calls(code.replace("{'XADD',", "redis.call('XADD',"), "XADD")
        for args in adds:
            if args[0] not in by_key or "'*'" not in args:
                continue
            pairs = args[args.index("'*'") + 1 :]
            names = {_literal(a) or a for a in pairs[0::2] if not a.startswith("unpack(")}
            assert names <= by_key[args[0]], (file, args)


def test_every_reply_code_a_header_documents_is_in_its_enum() -> None:
    for name, replies in REPLIES.items():
        header = _header(f"{name}.lua")
        listed = re.findall(r"^--\s+(\d)\s\s+\S", header, re.M)
        if not listed:
            prose = header[header.index("Returns") :]
            listed = re.findall(r"(?<![\w\[.-])(\d)(?![\w\]]|\.\d)", prose)
        assert {int(c) for c in listed} == {r.value for r in replies}, name
