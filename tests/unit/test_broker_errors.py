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
    with pytest.raises(taskq.RedisUnavailableError, match=expected), broker.connection.translate():
        raise reply_error(text)


def test_other_replies_are_broker_errors() -> None:
    broker = Broker(Settings(), Keyspace("t"))
    with pytest.raises(taskq.BrokerError, match="WRONGTYPE"), broker.connection.translate():
        raise reply_error(b"WRONGTYPE Operation against a key holding the wrong kind of value")


def test_an_oom_reply_is_redis_full_error_naming_the_url_and_what_to_do() -> None:
    import redis

    broker = Broker(Settings(redis_url="redis://u:secret@127.0.0.1:1/0"), Keyspace("t"))
    oom = b"OOM command not allowed when used memory > 'maxmemory'."
    # hiredis keeps the code in the text (taskq.broker.wire); redis-py strips it into the type.
    for exc in (reply_error(oom), redis.OutOfMemoryError(oom.decode()[4:])):
        with pytest.raises(taskq.RedisFullError) as info, broker.connection.translate():
            raise exc
        assert isinstance(info.value, taskq.BrokerError)
        message = str(info.value)
        assert "redis://u:***@127.0.0.1:1/0 is full" in message and "secret" not in message
        assert "reached maxmemory" in message and "result_ttl" in message
