import msgpack
import pytest

from taskq.errors import ErrorInfo, MessageError
from taskq.message import (
    Limits,
    Message,
    decode_message,
    decode_outcome,
    encode_call,
    encode_message,
    encode_outcome,
    new_run_id,
    pack,
    peek_run_id,
)


def test_round_trip_keeps_every_field() -> None:
    msg = Message(
        "r1", "mod.task", [1, "a", [2.5, None]], {"k": {"x": b"\x00"}}, {"result_ttl": 5.0}
    )
    assert decode_message(encode_message(msg)) == msg


def test_tuples_and_sets_become_lists() -> None:
    msg = Message("r1", "t", [(1, 2), {3}], {})
    assert decode_message(encode_message(msg)).args == [[1, 2], [3]]


def test_unserializable_argument_is_refused_with_its_type() -> None:
    with pytest.raises(MessageError, match="object"):
        pack([object()])


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1garbage", "undecodable"),
        (encode_message(Message("r", "t", [1], {}))[:-3], "undecodable"),
        (msgpack.packb({"not": "a list"}), "not a taskq v1 message"),
        (msgpack.packb([1, "", "t", [], {}, None]), "no valid run id"),
        (msgpack.packb([1, "r", "t", "args", {}, None]), "args must be an array"),
        (msgpack.packb([2, "r", "t", [], {}, None]), "not a taskq v1 message"),
    ],
)
def test_malformed_payloads_name_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        decode_message(payload)


def test_size_is_checked_before_decoding() -> None:
    big = encode_message(Message("r", "t", ["x" * 2000], {}))
    with pytest.raises(MessageError, match="exceeds the 1000 byte limit"):
        decode_message(big, Limits(max_bytes=1000))


def test_depth_and_argument_count_limits() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(40):
        node.append([])
        node = node[0]  # type: ignore[assignment]
    with pytest.raises(MessageError, match="nested deeper than 32"):
        decode_message(encode_message(Message("r", "t", deep, {})))
    with pytest.raises(MessageError, match="more than 3 arguments"):
        decode_message(encode_message(Message("r", "t", [1, 2, 3, 4], {})), Limits(max_args=3))


def test_hostile_depth_beyond_msgpack_stack_is_refused_not_crashing() -> None:
    payload = b"\x91" * 5000 + b"\xc0"  # 5000 nested one-element arrays
    with pytest.raises(MessageError):
        decode_message(payload)


def test_outcomes_carry_values_and_errors_as_data() -> None:
    ok = decode_outcome(encode_outcome("Completed", 2, {"a": [1]}))
    assert (ok.state, ok.attempt, ok.value, ok.error) == ("Completed", 2, {"a": [1]}, None)
    err = ErrorInfo("ValueError", "bad", "Traceback ...")
    failed = decode_outcome(encode_outcome("Failed", 1, error=err))
    assert failed.error == err and failed.value is None


def test_run_ids_are_unique_and_dot_free() -> None:
    ids = {new_run_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 16 and "." not in i and "," not in i for i in ids)
    assert not any(i.startswith("-") for i in ids)


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("args", "kwargs", "limits", "reason"),
    [
        ([{1: "a"}], {}, Limits(), "map key 1 is not a string"),
        ([[{"x": {(1, 2): 3}}]], {}, Limits(), r"map key \(1, 2\) is not a string"),
        ([_nested(40)], {}, Limits(), "nested deeper than 32"),
        ([1, 2, 3], {"k": 4}, Limits(max_args=3), "more than 3 arguments"),
        (["x" * 2000], {}, Limits(max_bytes=1000), "exceeds the 1000 byte limit"),
        ([msgpack.ExtType(5, b"x")], {}, Limits(), "extension value"),
        ([{"t": msgpack.Timestamp(1, 0)}], {}, Limits(), "extension value"),
    ],
)
def test_encoding_refuses_what_decoding_would_refuse(
    args: list[object], kwargs: dict[str, object], limits: Limits, reason: str
) -> None:
    msg = Message("r", "t", args, kwargs)
    with pytest.raises(MessageError, match=reason):
        encode_message(msg, limits)
    with pytest.raises(MessageError, match=reason):
        encode_call("r", "t", args, kwargs, None, limits)
    # What the producer refuses, the worker refuses too (the same check).
    with pytest.raises(MessageError):
        decode_message(msgpack.packb([1, "r", "t", args, kwargs, None], use_bin_type=True), limits)


@pytest.mark.parametrize(
    ("args", "kwargs", "meta", "limits", "reason"),
    [
        ([1, "a"], {"k": 2}, None, Limits(max_depth=1), "nested deeper than 1"),
        ([1], {"k": msgpack.ExtType(5, b"x")}, None, Limits(), "extension value"),
        ([1], {}, {"m": msgpack.Timestamp(1, 0)}, Limits(), "extension value"),
        ([1], {}, "meta", Limits(), "meta must be a map"),
        ([1], "kwargs", None, Limits(), "kwargs a map"),
    ],
)
def test_scalar_messages_decode_without_the_walk_but_not_around_its_checks(
    args: object, kwargs: object, meta: object, limits: Limits, reason: str
) -> None:
    """A message of scalars skips the tree walk on decoding; what the walk refuses in
    such a message (depth under a tiny limit, extension values) is still refused."""
    payload = msgpack.packb([1, "r", "t", args, kwargs, meta], use_bin_type=True)
    with pytest.raises(MessageError, match=reason):
        decode_message(payload, limits)
    flat = decode_message(msgpack.packb([1, "r", "t", [1, b"x", None], {"k": 1.5}, {"m": "v"}]))
    assert (flat.args, flat.kwargs, flat.meta) == ([1, b"x", None], {"k": 1.5}, {"m": "v"})


def test_encoding_accepts_what_decoding_accepts_at_the_limits() -> None:
    args: list[object] = [_nested(30), (1, 2), {3}, bytearray(b"ab"), {"k": b"v", b"b": 1}]
    payload = encode_message(Message("r", "t", args, {}), Limits(max_args=5))
    assert decode_message(payload, Limits(max_args=5)).args == [
        _nested(30),
        [1, 2],
        [3],
        b"ab",
        {"k": b"v", b"b": 1},
    ]


def test_the_run_id_is_read_from_the_head_of_a_payload() -> None:
    for rid in ("abc", "x" * 40, "flow.1.2", "é" * 200):
        assert peek_run_id(encode_message(Message(rid, "t", [1], {}))) == rid
    for bad in (b"", b"\x96", b"\x96\x01\xa5ab", b"\x95\x01\xa1r", b"\xc1garbage", b"\x96\x01\x07"):
        assert peek_run_id(bad) is None
