from datetime import timedelta

import pytest

import taskq
from taskq.errors import ConfigurationError


def test_unknown_option_is_refused_naming_it_and_the_closest() -> None:
    app = taskq.App("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match=r"unknown task option 'result_tll'.*'result_ttl'"):
        app.task(result_tll=5)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"result_ttl": -1}, "result_ttl must be > 0"),
        ({"result_ttl": "soon"}, "number of seconds"),
        ({"queue": "has{brace}"}, "invalid queue name"),
        ({"tags": "one-string"}, "collection of strings"),
        ({"on_failure": [1]}, "list of callables"),
        ({"name": ""}, "non-empty"),
    ],
)
def test_bad_option_values_are_refused_at_decoration(
    options: dict[str, object], message: str
) -> None:
    app = taskq.App("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match=message):
        app.task(**options)(lambda: None)  # type: ignore[call-overload]


def test_options_are_normalized_and_with_options_copies() -> None:
    app = taskq.App("redis://127.0.0.1:1/0")

    @app.task(queue="emails", result_ttl=timedelta(minutes=2), tags=["a", "b"])
    def send(to: str) -> str:
        return to

    assert send.options.result_ttl == 120.0
    assert send.queue == "emails"
    assert send.options.tags == frozenset({"a", "b"})
    other = send.with_options(result_ttl=5)
    assert other.options.result_ttl == 5.0
    assert send.options.result_ttl == 120.0
    assert app.get_task(send.name) is send
    assert other.options.overrides(send.options) == {"result_ttl": 5.0}


def test_direct_call_runs_in_process() -> None:
    app = taskq.App("redis://127.0.0.1:1/0")

    @app.task
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42
    assert double.name == f"{__name__}.test_direct_call_runs_in_process.<locals>.double"


def test_two_functions_cannot_share_a_name() -> None:
    app = taskq.App("redis://127.0.0.1:1/0")
    app.task(name="same")(lambda: 1)
    with pytest.raises(ConfigurationError, match="already named 'same'"):
        app.task(name="same")(lambda: 2)
