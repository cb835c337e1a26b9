"""Error replies meaning "not now" are RedisUnavailableError; other replies BrokerError."""

import hiredis
import pytest

import taskq
from taskq.broker import Broker
from taskq.config import Settings
from taskq.keys import Keyspace


def reply_error(text: bytes) -> Exception:
    reader = hiredis.Reader()
    reader.feed(b"-" + text + b"\r\n")
    err = reader.gets()
    assert isinstance(err, hiredis.ReplyError)
    return err


@pytest.mark.parametrize(
    "text",
    [b"LOADING Redis is loading the dataset in memory", b"MASTERDOWN Link with MASTER is down"],
)
def test_transient_replies_are_unavailable(text: bytes) -> None:
    broker = Broker(Settings(redis_url="redis://u:secret@127.0.0.1:1/0"), Keyspace("t"))
    expected = r"redis://u:\*\*\*@127.0.0.1:1/0"
    with pytest.raises(taskq.RedisUnavailableError, match=expected), broker.translate():
        raise reply_error(text)


def test_other_replies_are_broker_errors() -> None:
    broker = Broker(Settings(), Keyspace("t"))
    with pytest.raises(taskq.BrokerError, match="WRONGTYPE"), broker.translate():
        raise reply_error(b"WRONGTYPE Operation against a key holding the wrong kind of value")
