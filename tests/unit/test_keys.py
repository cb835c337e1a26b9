import pytest

from taskq.errors import ConfigurationError
from taskq.keys import Keyspace


def test_every_key_shares_prefix_and_queue_hash_tag() -> None:
    k = Keyspace("pfx")
    names = [
        k.stream("q"),
        k.delayed("q"),
        k.dead("q"),
        k.events("q"),
        k.run("q", "r"),
        k.result("q", "r"),
    ]
    assert all(n.startswith("pfx:{q}:") for n in names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "a b", "x" * 129])
def test_bad_prefix_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        Keyspace(bad)


def test_no_module_but_keys_builds_a_key_name() -> None:
    from pathlib import Path

    root = Path(__file__).parents[2] / "taskq"
    offenders = [
        p.name
        for p in root.rglob("*.py")
        if p.name != "keys.py" and ("}:stream" in p.read_text() or '":{' in p.read_text())
    ]
    assert offenders == []
