import types

import taskq


def test_all_is_sorted_and_equals_the_public_names() -> None:
    public = sorted(
        n
        for n, v in vars(taskq).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    )
    assert taskq.__all__ == sorted(taskq.__all__)
    assert taskq.__all__ == public


def test_control_flow_signals_escape_except_exception() -> None:
    assert not issubclass(taskq.Retry, Exception)
    assert not issubclass(taskq.Cancel, Exception)
    assert issubclass(taskq.TaskFailedError, taskq.TaskqError)
