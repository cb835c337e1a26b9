"""taskq — a distributed task queue on Redis Streams, with Prefect-style ``@task``.

Quick tour::

    import taskq

    app = taskq.App()                 # Redis from TASKQ_REDIS_URL

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    future = add.submit(1, 2)         # runs on a `taskq worker` process
    assert future.result(timeout=10) == 3
"""

from taskq.app import App, load_app
from taskq.cache import (
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CachePolicy,
    CompoundCachePolicy,
    CompoundPolicy,
    Inputs,
    TaskRunContext,
    task_input_hash,
)
from taskq.cancel import cancel_requested
from taskq.context import RunContext, context
from taskq.errors import (
    BrokerError,
    Cancel,
    ChildFailedError,
    ConfigurationError,
    ErrorInfo,
    MessageError,
    MissingContextError,
    NonDeterministicFlowError,
    RedisFullError,
    RedisUnavailableError,
    ResultInTaskError,
    ResultNotFoundError,
    ResultNotPersistedError,
    ResultTimeoutError,
    Retry,
    TaskCancelledError,
    TaskFailedError,
    TaskqError,
    TaskTimeoutError,
    UnknownTaskError,
)
from taskq.flows.flow import Flow
from taskq.futures import DoneAndNotDone, Future, as_completed, wait
from taskq.mapping import unmapped
from taskq.protocol import CancelReply
from taskq.retry import exponential_backoff
from taskq.runlogs import get_run_logger
from taskq.states import Cancelled, Completed, Failed, State, StateType, TaskRun
from taskq.task import AsyncTask, Task
from taskq.upstream import allow_failure
from taskq.worker import Worker

__all__ = [
    "App",
    "AsyncTask",
    "BrokerError",
    "CachePolicy",
    "Cancel",
    "CancelReply",
    "Cancelled",
    "ChildFailedError",
    "Completed",
    "CompoundCachePolicy",
    "CompoundPolicy",
    "ConfigurationError",
    "DoneAndNotDone",
    "ErrorInfo",
    "FLOW_PARAMETERS",
    "Failed",
    "Flow",
    "Future",
    "INPUTS",
    "Inputs",
    "MessageError",
    "MissingContextError",
    "NO_CACHE",
    "NonDeterministicFlowError",
    "RUN_ID",
    "RedisFullError",
    "RedisUnavailableError",
    "ResultInTaskError",
    "ResultNotFoundError",
    "ResultNotPersistedError",
    "ResultTimeoutError",
    "Retry",
    "RunContext",
    "State",
    "StateType",
    "TASK_SOURCE",
    "Task",
    "TaskCancelledError",
    "TaskFailedError",
    "TaskRun",
    "TaskRunContext",
    "TaskTimeoutError",
    "TaskqError",
    "UnknownTaskError",
    "Worker",
    "allow_failure",
    "as_completed",
    "cancel_requested",
    "context",
    "exponential_backoff",
    "get_run_logger",
    "load_app",
    "task_input_hash",
    "unmapped",
    "wait",
]
