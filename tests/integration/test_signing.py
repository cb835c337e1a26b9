"""HMAC-SHA256 message signing with key rotation, verified before decoding."""

from __future__ import annotations

import pytest

import taskq
from taskq.message import Message, encode_message
from taskq.signing import Signer
from taskq.testing import run_burst

OLD, NEW, OTHER = "old-key-0123456789abcdef", "new-key-0123456789abcdef", "stranger-0123456789abcd"


def make_app(
    redis_url: str, prefix: str, keys: list[str]
) -> tuple[taskq.App, taskq.Task[[int], int]]:
    app = taskq.App(redis_url, prefix=prefix, signing_keys=keys)

    @app.task(name="signed.double")
    def double(x: int) -> int:
        return 2 * x

    return app, double


def test_signed_messages_run_across_a_key_rotation(redis_url: str, taskq_prefix: str) -> None:
    producer, double = make_app(redis_url, taskq_prefix, [OLD])
    futures = [*double.map([1, 2]), double.with_options(retries=1).submit(3)]
    raw = producer.broker.client.xrange(producer.keys.stream("default"))[0][1][b"m"]
    assert raw[:2] == b"\xc1S"  # signed on the wire
    worker_app, _ = make_app(redis_url, taskq_prefix, [NEW, OLD])  # mid-rotation
    run_burst(worker_app)
    assert [f.result(timeout=5) for f in futures] == [2, 4, 6]


def test_unsigned_or_foreign_messages_are_dead_lettered_unread(
    redis_url: str, taskq_prefix: str
) -> None:
    app, double = make_app(redis_url, taskq_prefix, [NEW])
    stranger, other_double = make_app(redis_url, taskq_prefix, [OTHER])
    good = double.submit(5)
    foreign = other_double.submit(6)
    unsigned = encode_message(Message("unsigned-run", double.name, [7], {}))
    app.broker.client.xadd(app.keys.stream("default"), {"m": unsigned})
    tampered = bytearray(
        Signer([NEW]).sign(encode_message(Message("tampered", double.name, [8], {})))
    )
    tampered[-2] ^= 0xFF
    app.broker.client.xadd(app.keys.stream("default"), {"m": bytes(tampered)})
    run_burst(app)
    assert good.result(timeout=5) == 10
    reasons = sorted(f[b"reason"].decode() for _, f in app.broker.inspect.dead_entries("default"))
    assert reasons == [
        "bad payload signature",
        "payload signed with a key that is not active here",
        "unsigned payload (this worker requires signed messages)",
    ]
    assert foreign.state.name == "Pending"  # dead-lettered unread: its run is not known to fail
    del stranger


def test_signing_key_rules() -> None:
    with pytest.raises(taskq.ConfigurationError, match="at most two"):
        Signer([OLD, NEW, OTHER])
    with pytest.raises(taskq.ConfigurationError, match="at least 16 bytes"):
        Signer(["short"])
    signer = Signer([OLD])
    assert Signer([NEW, OLD]).verify(signer.sign(b"body")) == b"body"
    with pytest.raises(taskq.MessageError, match="no signing keys"):
        Signer([]).verify(signer.sign(b"body"))
