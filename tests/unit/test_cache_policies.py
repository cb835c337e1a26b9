"""Cache policies: how keys are computed and combined (no Redis: nothing here connects)."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import taskq
from taskq.cache import (
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CachePolicy,
    CompoundCachePolicy,
    Inputs,
    NoCache,
    TaskRunContext,
    build_cache,
    flow_parameters_digest,
    run_key,
    task_input_hash,
    uses_flow_parameters,
)
from taskq.codehash import code_digest
from taskq.flows.run import FlowRun
from taskq.protocol import MetaKey

ROOT = Path(__file__).resolve().parents[2]
APP = taskq.App("redis://127.0.0.1:1/0")


def square(x: int) -> int:
    return x * x


def renamed_square(x: int) -> int:
    return x * x


def cube(x: int) -> int:
    return x * x * x


def _ctx(fn: Any = square, run_id: str = "r1", flow: str | None = None) -> TaskRunContext:
    task = APP.task(name=f"{fn.__name__}-{id(fn)}")(fn)
    return TaskRunContext(task, run_id, "default", flow)


def key(
    policy: Any, ctx: TaskRunContext | None = None, fp: str | None = None, **inputs: Any
) -> Any:
    return run_key(policy, ctx or _ctx(), inputs, fp)


# -- NO_CACHE and sums --------------------------------------------------------------------


def test_no_cache_is_the_identity_of_addition() -> None:
    for policy in (INPUTS, TASK_SOURCE, RUN_ID, FLOW_PARAMETERS, INPUTS + TASK_SOURCE):
        assert NO_CACHE + policy == policy
        assert policy + NO_CACHE == policy
    assert NO_CACHE + NO_CACHE == NO_CACHE
    assert NO_CACHE.compute_key(task_ctx=_ctx(), inputs={"x": 1}, flow_parameters="ab") is None
    assert not build_cache({"cache_policy": NO_CACHE}).enabled
    assert build_cache({"cache_policy": NO_CACHE + INPUTS}).enabled


def test_a_sum_lists_its_parts_flattened_with_inputs_merged() -> None:
    both = INPUTS + TASK_SOURCE
    assert isinstance(both, CompoundCachePolicy)
    assert both.policies == (TASK_SOURCE, INPUTS)
    three = (INPUTS - "a") + (RUN_ID + (INPUTS - "b"))
    assert isinstance(three, CompoundCachePolicy)
    assert three.policies == (RUN_ID, Inputs(exclude=["a", "b"]))
    built = CompoundCachePolicy(policies=[TASK_SOURCE, NO_CACHE, INPUTS])
    assert built == both
    assert taskq.CompoundPolicy is CompoundCachePolicy


def test_a_sum_keys_on_every_part_and_ignores_order() -> None:
    ctx = _ctx()
    assert key(INPUTS + RUN_ID, ctx, x=1) == key(RUN_ID + INPUTS, ctx, x=1)
    assert key(INPUTS + RUN_ID, ctx, x=1) != key(INPUTS + RUN_ID, ctx, x=2)
    assert key(INPUTS + RUN_ID, ctx, x=1) != key(INPUTS + RUN_ID, _ctx(run_id="r2"), x=1)
    assert key(INPUTS + RUN_ID, ctx, x=1) != key(INPUTS, ctx, x=1)
    # A part without a key (no flow parameters) is left out; none at all: no key.
    assert key(FLOW_PARAMETERS + FLOW_PARAMETERS, ctx, x=1) is None
    inputs_only = CompoundCachePolicy(policies=[INPUTS])
    assert key(INPUTS + FLOW_PARAMETERS, ctx, x=1) == key(inputs_only, ctx, x=1)
    assert key(INPUTS + FLOW_PARAMETERS, ctx, "ab", x=1) != key(inputs_only, ctx, x=1)


# -- Inputs -------------------------------------------------------------------------------


def test_inputs_exclude_and_subtraction() -> None:
    assert Inputs(exclude=["client"]) == INPUTS - "client"
    assert Inputs(exclude=("a", "b")) == INPUTS - "a" - "b"
    policy = INPUTS - "client"
    assert key(policy, x=1, client="one") == key(policy, x=1, client="two")
    assert key(policy, x=1, client="one") != key(policy, x=2, client="one")
    assert key(INPUTS, x=1, client="one") != key(INPUTS, x=1, client="two")
    lock = threading.Lock()  # msgpack cannot carry it: excluded, it is never hashed
    assert key(policy, x=1, client=lock) == key(policy, x=1, client="one")
    with pytest.raises(ValueError, match="cannot be hashed"):
        key(INPUTS, x=1, client=lock)
    with pytest.raises(taskq.ConfigurationError, match="list of names"):
        Inputs(exclude="client")


def test_subtraction_of_a_sum_and_of_other_policies() -> None:
    both = (INPUTS + TASK_SOURCE) - "client"
    assert isinstance(both, CompoundCachePolicy)
    assert both.policies == (TASK_SOURCE, Inputs(exclude=["client"]))
    assert key(both, x=1, client="a") == key(both, x=1, client="b")
    assert TASK_SOURCE - "client" is TASK_SOURCE
    assert (RUN_ID + TASK_SOURCE) - "x" == RUN_ID + TASK_SOURCE
    with pytest.raises(TypeError):
        INPUTS - 3  # type: ignore[operator]


def test_exclusion_applies_to_bound_parameter_names() -> None:
    from taskq.cache import bind_arguments

    def fetch(url: str, client: str = "default") -> str:
        return url

    policy = INPUTS - "client"
    a = bind_arguments(fetch, ["u", "c1"], {})
    b = bind_arguments(fetch, ["u"], {"client": "c2"})
    assert a == {"url": "u", "client": "c1"}
    ctx = _ctx(fetch)
    assert run_key(policy, ctx, a, None) == run_key(policy, ctx, b, None)


# -- RUN_ID and FLOW_PARAMETERS -------------------------------------------------------------


def test_run_id_keys_on_the_flow_run_else_the_run() -> None:
    assert key(RUN_ID, _ctx(run_id="a")) == key(RUN_ID, _ctx(run_id="a"))
    assert key(RUN_ID, _ctx(run_id="a")) != key(RUN_ID, _ctx(run_id="b"))
    # Children of one flow run share it (as Prefect's RUN_ID: the prevailing flow run).
    assert key(RUN_ID, _ctx(run_id="f.1", flow="f")) == key(RUN_ID, _ctx(run_id="f.2", flow="f"))
    assert key(RUN_ID, _ctx(run_id="f.1", flow="f")) != key(RUN_ID, _ctx(run_id="g.1", flow="g"))


def test_flow_parameters_key_on_the_digest_and_none_without_one() -> None:
    assert key(FLOW_PARAMETERS, fp=None) is None
    assert key(FLOW_PARAMETERS, fp="ab") == key(FLOW_PARAMETERS, fp="ab")
    assert key(FLOW_PARAMETERS, fp="ab") != key(FLOW_PARAMETERS, fp="cd")


def test_flow_parameters_digest() -> None:
    def flow(day: str, n: int = 3) -> None:
        return None

    def no_params() -> None:
        return None

    one = flow_parameters_digest(flow, ["mon"], {}, "run-1")
    assert one is not None and len(one) == 16
    assert flow_parameters_digest(flow, [], {"day": "mon", "n": 3}, "run-2") == one
    assert flow_parameters_digest(flow, ["tue"], {}, "run-1") != one
    assert flow_parameters_digest(no_params, [], {}, "run-1") is None
    lock = threading.Lock()
    a = flow_parameters_digest(flow, [lock], {}, "run-1")
    assert a is not None and a != flow_parameters_digest(flow, [lock], {}, "run-2")


def test_children_carry_the_flow_parameters_digest_only_when_their_policy_reads_them() -> None:
    app = taskq.App("redis://127.0.0.1:1/0")

    @app.task(cache_policy=FLOW_PARAMETERS + INPUTS)
    def per_flow(x: int) -> int:
        return x

    @app.task(cache_policy=INPUTS + RUN_ID)
    def per_input(x: int) -> int:
        return x

    @app.task
    def plain(x: int) -> int:
        return x

    @app.flow
    def pipeline(day: str) -> None:
        return None

    @app.flow
    def bare() -> None:
        return None

    fp = MetaKey.FLOW_PARAMETERS.value
    run = FlowRun(app, pipeline, "f1", "default", durable=True, params=(["mon"], {}))
    expected = flow_parameters_digest(pipeline.fn, ["mon"], {}, "f1")
    assert run._message(per_flow, "f1.1", [1], {}).meta[fp] == expected
    assert fp not in run._message(per_input, "f1.2", [1], {}).meta
    assert fp not in run._message(plain, "f1.3", [1], {}).meta
    run = FlowRun(app, bare, "f2", "default", durable=True, params=([], {}))
    assert fp not in run._message(per_flow, "f2.1", [1], {}).meta


# -- isolation levels ---------------------------------------------------------------------


def test_conflicting_isolation_levels_are_refused() -> None:
    ser = INPUTS.configure(isolation_level="SERIALIZABLE")
    rc = TASK_SOURCE.configure(isolation_level="READ_COMMITTED")
    with pytest.raises(taskq.ConfigurationError, match="different isolation levels"):
        ser + rc
    with pytest.raises(taskq.ConfigurationError, match="different isolation levels"):
        (ser + RUN_ID) + rc
    assert (ser + TASK_SOURCE).isolation_level == "SERIALIZABLE"
    assert (TASK_SOURCE + ser).isolation_level == "SERIALIZABLE"
    assert (ser + INPUTS.configure(isolation_level="SERIALIZABLE")).isolation_level == (
        "SERIALIZABLE"
    )
    assert (INPUTS + TASK_SOURCE).isolation_level is None
    assert (ser + RUN_ID).configure(isolation_level="READ_COMMITTED").isolation_level == (
        "READ_COMMITTED"
    )
    assert build_cache({"cache_policy": ser + TASK_SOURCE}).serializable
    assert not build_cache({"cache_policy": INPUTS + TASK_SOURCE}).serializable
    with pytest.raises(taskq.ConfigurationError, match="isolation_level"):
        Inputs(isolation_level="SNAPSHOT")


# -- custom policies ----------------------------------------------------------------------


class Even(CachePolicy):
    """Keys on whether x is even; None (no caching) for negative x."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        x = inputs["x"]
        return None if x < 0 else f"even-{x % 2 == 0}"

    def uses_flow_parameters(self) -> bool:
        return False


@dataclass
class Prefixed(CachePolicy):
    """Written as Prefect's docs write one: a dataclass with a field of its own."""

    prefix: str

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        return f"{self.prefix}-{inputs['x']}"


class Ducky:
    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: Any, **kw: Any
    ) -> str | None:
        return f"duck-{flow_parameters}"


def test_custom_policies() -> None:
    assert key(Even(), x=2) == key(Even(), x=4) == "even-True"  # a custom key is used as is
    assert key(Even(), x=-1) is None
    assert key(Ducky(), fp="ab") == "duck-ab"
    assert key(Prefixed(prefix="v1"), x=3) == "v1-3"
    assert (Prefixed(prefix="v1") + INPUTS).isolation_level is None
    for policy in (Even(), Ducky()):
        assert build_cache({"cache_policy": policy}).enabled
    # A custom policy is assumed to read the flow's parameters unless it says otherwise.
    assert uses_flow_parameters(Ducky()) and not uses_flow_parameters(Even())
    assert build_cache({"cache_policy": Ducky()}).flow_parameters
    assert not build_cache({"cache_policy": Even() + INPUTS}).flow_parameters
    assert build_cache({"cache_policy": INPUTS + FLOW_PARAMETERS}).flow_parameters
    assert not build_cache({"cache_policy": INPUTS + RUN_ID}).flow_parameters
    assert not build_cache({"cache_key_fn": task_input_hash}).flow_parameters
    summed = Even() + INPUTS
    assert key(summed, x=2) != key(summed, x=4)
    with pytest.raises(taskq.ConfigurationError, match="cache_policy must be"):
        build_cache({"cache_policy": object()})
    with pytest.raises(NotImplementedError):
        CachePolicy().compute_key(_ctx(), {}, None)
    assert isinstance(NO_CACHE, NoCache)


# -- keys on code -------------------------------------------------------------------------


def test_task_source_keys_on_the_code_not_the_name() -> None:
    assert code_digest(square) == code_digest(renamed_square)
    assert code_digest(square) != code_digest(cube)
    assert key(TASK_SOURCE, _ctx(square)) == key(TASK_SOURCE, _ctx(renamed_square))
    assert key(TASK_SOURCE, _ctx(square)) != key(TASK_SOURCE, _ctx(cube))
    both = INPUTS + TASK_SOURCE
    assert key(both, _ctx(square), x=2) == key(both, _ctx(renamed_square), x=2)
    # Without the code in the key, the task's name keeps tasks apart.
    assert key(INPUTS, _ctx(square), x=2) != key(INPUTS, _ctx(renamed_square), x=2)


def test_task_input_hash_keys_on_the_code_and_arguments() -> None:
    a, b, c = _ctx(square), _ctx(renamed_square), _ctx(cube)
    assert task_input_hash(a, {"x": 2}) == task_input_hash(b, {"x": 2})
    assert task_input_hash(a, {"x": 2}) != task_input_hash(a, {"x": 3})
    assert task_input_hash(a, {"x": 2}) != task_input_hash(c, {"x": 2})
    assert task_input_hash(a, {"x": threading.Lock()}) is None


def test_code_digest_covers_what_the_code_does() -> None:
    def calls_len(x: list[int]) -> int:
        return len(x)

    def calls_sum(x: list[int]) -> int:
        return sum(x)  # same bytecode as calls_len; another global name

    def plus_one(x: int) -> int:
        return x + 1

    def plus_two(x: int) -> int:
        return x + 2

    def outer_a(x: int) -> int:
        return (lambda y: y + 1)(x)

    def outer_b(x: int) -> int:
        return (lambda y: y + 2)(x)

    def default_1(x: int = 1) -> int:
        return x

    def default_2(x: int = 2) -> int:
        return x

    assert code_digest(calls_len) != code_digest(calls_sum)
    assert code_digest(plus_one) != code_digest(plus_two)
    assert code_digest(outer_a) != code_digest(outer_b)
    assert code_digest(default_1) != code_digest(default_2)


def test_code_digest_of_closures() -> None:
    def make(n: int) -> Any:
        def scaled(x: int) -> int:
            return x * n

        return scaled

    assert code_digest(make(2)) == code_digest(make(2))
    assert code_digest(make(2)) != code_digest(make(3))
    seen: list[int] = []

    def records(x: int) -> int:
        seen.append(x)
        return x

    before = code_digest(records)
    seen.append(1)  # a mutable captured value does not move the key
    assert code_digest(records) == before


def test_code_digest_does_not_depend_on_the_hash_seed() -> None:
    program = (
        "from taskq.codehash import code_digest\n"
        "def member(x):\n"
        "    return x in {'alpha', 'beta', 'gamma', 'delta', 'epsilon'}\n"
        "print(code_digest(member))\n"
    )
    got = {
        subprocess.run(
            [sys.executable, "-c", program],
            env={"PYTHONHASHSEED": str(seed)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(got) == 1 and len(got.pop().strip()) == 64
