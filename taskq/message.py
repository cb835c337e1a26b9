"""The wire format of a task invocation and of a run's outcome: msgpack, no pickle.

A stream entry has one field, ``m``, holding::

    [1, run_id, task_name, args, kwargs, meta]

Decoding checks the size limit before msgpack sees a byte, bounds every
container length by that size, and rejects structures nested deeper than
``max_depth`` or carrying more than ``max_args`` arguments. msgpack's own decoder
is iterative with a fixed stack, so a hostile depth cannot recurse Python.
"""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import msgpack

from taskq.errors import ErrorInfo, MessageError

VERSION = 1
PAYLOAD_FIELD = b"m"


class _IdSource:
    """Run ids from a buffer of OS randomness, refilled 1,024 ids at a time.

    Base64 of 12 bytes is exactly 16 characters, so one encode of the buffer
    yields 1,024 ids. The buffer is dropped in a forked child, so two processes
    never hand out the same ids.
    """

    BATCH = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = ""
        self._pos = 0
        os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._lock = threading.Lock()
        self._ids, self._pos = "", 0

    def take(self) -> str:
        with self._lock:
            if self._pos >= len(self._ids):
                raw = os.urandom(12 * self.BATCH)
                self._ids, self._pos = base64.urlsafe_b64encode(raw).decode("ascii"), 0
            i = self._pos
            self._pos = i + 16
            rid = self._ids[i : i + 16]
        # A leading '-' would read as an option on a command line (`taskq run ID`).
        return "Z" + rid[1:] if rid[0] == "-" else rid


_ids = _IdSource()


def new_run_id() -> str:
    """A fresh run id: 96 random bits, 16 URL-safe characters.

    It never contains ``.`` (children are ``<flow id>.<n>``) and never starts with
    ``-`` (it would read as an option on a command line).
    """
    return _ids.take()


@dataclass(frozen=True)
class Limits:
    """Bounds checked on every decode."""

    max_bytes: int = 1 << 20
    max_depth: int = 32
    max_args: int = 256


@dataclass
class Message:
    """One task invocation."""

    run_id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def _default(obj: Any) -> Any:
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__!s} (taskq sends msgpack data only)")


def pack(obj: Any) -> bytes:
    """Serialize ``obj`` with msgpack; tuples and sets become lists.

    Raises:
        MessageError: ``obj`` holds a value msgpack cannot carry.
    """
    try:
        return msgpack.packb(obj, default=_default, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise MessageError(str(exc)) from exc


def unpack(data: bytes, limits: Limits | None = None) -> Any:
    """Deserialize ``data`` within ``limits``.

    Raises:
        MessageError: Too large, malformed, truncated or too deep.
    """
    lim = limits or Limits()
    if len(data) > lim.max_bytes:
        raise MessageError(f"payload of {len(data)} bytes exceeds the {lim.max_bytes} byte limit")
    n = len(data)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n,
            max_ext_len=n,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise MessageError(f"undecodable payload: {type(exc).__name__}: {exc}") from exc
    _check_depth(obj, lim.max_depth)
    return obj


_PLAIN = (str, int, float, bytes, bool, type(None))


def _check_depth(obj: Any, max_depth: int) -> None:
    """Reject nesting deeper than ``max_depth`` and msgpack extension values (ExtType,
    Timestamp): arguments are plain data only."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            if depth > max_depth:
                raise MessageError(f"payload nested deeper than {max_depth} levels")
            children = item.values() if isinstance(item, dict) else item
            for c in children:
                if isinstance(c, list | dict):
                    stack.append((c, depth + 1))
                elif not isinstance(c, _PLAIN):
                    raise MessageError(
                        f"payload holds a msgpack extension value ({type(c).__name__})"
                    )
        elif not isinstance(item, _PLAIN):
            raise MessageError(f"payload holds a msgpack extension value ({type(item).__name__})")


def encode_message(msg: Message) -> bytes:
    """The stream payload of ``msg``."""
    return pack([VERSION, msg.run_id, msg.task, msg.args, msg.kwargs, msg.meta or None])


def encode_call(
    run_id: str, task: str, args: list[Any], kwargs: dict[str, Any], meta: dict[str, Any] | None
) -> bytes:
    """The stream payload of one call, without building a :class:`Message` (bulk path)."""
    return pack([VERSION, run_id, task, args, kwargs, meta or None])


def decode_message(data: bytes, limits: Limits | None = None) -> Message:
    """Parse a stream payload.

    Raises:
        MessageError: The payload is malformed or breaks a limit; the message says which.
    """
    lim = limits or Limits()
    obj = unpack(data, lim)
    if not (isinstance(obj, list) and len(obj) == 6 and obj[0] == VERSION):
        raise MessageError("not a taskq v1 message (expected a 6-element array)")
    _, run_id, task, args, kwargs, meta = obj
    if not isinstance(run_id, str) or not run_id or not isinstance(task, str) or not task:
        raise MessageError("message has no valid run id or task name")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise MessageError("message args must be an array and kwargs a map")
    if len(args) + len(kwargs) > lim.max_args:
        raise MessageError(f"message has more than {lim.max_args} arguments")
    if meta is not None and not isinstance(meta, dict):
        raise MessageError("message meta must be a map")
    return Message(run_id, task, args, kwargs, meta or {})


# Outcomes: the one element of a run's result list.


def encode_outcome(
    state: str,
    attempt: int,
    value: Any = None,
    error: ErrorInfo | None = None,
    call: tuple[str, bytes] | None = None,
) -> bytes:
    """The payload stored for a finished run.

    ``call`` (a flow child's): ``(task name, digest of its arguments)``, stored as
    field ``c`` so that a replayed flow can check it makes the same call.
    """
    body: dict[str, Any] = {"s": state, "a": attempt}
    if error is not None:
        body["e"] = [error.type, error.message, error.traceback]
    else:
        body["v"] = value
    if call is not None:
        body["c"] = call
    return pack(body)


@dataclass(frozen=True)
class Outcome:
    """A finished run's state name, attempt count, value or error; for a flow child,
    the call it was (``(task name, argument digest)``, None if not recorded)."""

    state: str
    attempt: int
    value: Any = None
    error: ErrorInfo | None = None
    call: tuple[str, bytes] | None = None


def decode_outcome(data: bytes) -> Outcome:
    """Parse what :func:`encode_outcome` wrote."""
    body = unpack(data, Limits(max_bytes=1 << 31, max_depth=1 << 10, max_args=1 << 31))
    if not isinstance(body, dict) or "s" not in body:
        raise MessageError("malformed outcome record")
    err = body.get("e")
    error = ErrorInfo(str(err[0]), str(err[1]), str(err[2])) if err else None
    c = body.get("c")
    call = (c[0], c[1]) if isinstance(c, list) and len(c) == 2 else None
    return Outcome(str(body["s"]), int(body.get("a", 0)), body.get("v"), error, call)
