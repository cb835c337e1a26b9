"""The encoding of a task invocation and of a run's outcome: msgpack, no pickle.

A stream entry has a field ``m``, holding::

    [1, run_id, task_name, args, kwargs, meta]

and a field ``r`` with the run id, readable without decoding ``m`` (so an entry
whose payload cannot be decoded still fails its run; entries written before
``r`` existed have ``m`` only).

Decoding checks the size limit before msgpack sees a byte, bounds every
container length by that size, and rejects structures nested deeper than
``max_depth`` or carrying more than ``max_args`` arguments. msgpack's own decoder
is iterative with a fixed stack, so a hostile depth cannot recurse Python.
Encoding refuses exactly what decoding would (:func:`check_tree` serves both), so
a run the worker would dead-letter is refused at ``submit`` instead.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from taskq.errors import ErrorInfo, MessageError
from taskq.protocol import EntryField, OutcomeField

VERSION = 1
PAYLOAD_FIELD = EntryField.PAYLOAD.encode()
RUN_FIELD = EntryField.RUN.encode()


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
    obj = _unpackb(data, lim)
    check_tree(obj, lim.max_depth)
    return obj


def _unpackb(data: bytes, lim: Limits) -> Any:
    """msgpack's decoding of ``data`` within ``lim``'s size (the tree not walked yet)."""
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
    return obj


_PLAIN = (str, int, float, bytes, bool, type(None))
#: Leaves as the producer may hold them (msgpack writes bytearray/memoryview as bin).
_LEAVES = (*_PLAIN, bytearray, memoryview)
#: Exact types that end the walk at once (the cheap common case).
_SCALARS = frozenset({str, int, float, bytes, bool, type(None)})
_SEQUENCES = (list, tuple, set, frozenset)


def _leaf_error(item: Any) -> MessageError:
    if isinstance(item, msgpack.ExtType | msgpack.Timestamp):
        return MessageError(f"payload holds a msgpack extension value ({type(item).__name__})")
    return MessageError(f"cannot serialize {type(item).__name__!s} (taskq sends msgpack data only)")


def check_tree(obj: Any, max_depth: int) -> None:
    """Refuse what a worker refuses: nesting deeper than ``max_depth``, map keys that
    are not strings (or bytes), msgpack extension values (ExtType, Timestamp) and
    anything msgpack cannot carry. Shared by encoding and decoding.

    The walk is iterative (a hostile depth cannot recurse Python). Tuples and sets
    count as the arrays they become (an ExtType is a tuple too, but not one of them).

    Raises:
        MessageError: Naming the problem.
    """
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) in _SCALARS:
            continue
        if isinstance(item, dict):
            children: Any = item.values()
            for key in item:
                if type(key) is not str and not isinstance(key, str | bytes):
                    raise MessageError(f"map key {key!r} is not a string (maps need string keys)")
        elif isinstance(item, _SEQUENCES) and not isinstance(item, msgpack.ExtType):
            children = item
        elif isinstance(item, _LEAVES):
            continue
        else:
            raise _leaf_error(item)
        if depth > max_depth:
            raise MessageError(f"payload nested deeper than {max_depth} levels")
        for c in children:
            if type(c) not in _SCALARS:
                stack.append((c, depth + 1))


_DEFAULT_LIMITS = Limits()


def _flat(args: Any, kwargs: Any, meta: Any) -> bool:
    """True when a message's args, kwargs and meta hold scalars only, under string keys:
    then nothing but the count and the size can break a limit (the common case,
    tested in a few hundred nanoseconds)."""
    for a in args:
        if type(a) not in _SCALARS:
            return False
    for part in (kwargs, meta or {}):
        if type(part) is not dict:
            return False
        for k, v in part.items():
            if type(k) is not str or type(v) not in _SCALARS:
                return False
    return True


def _checked(obj: list[Any], limits: Limits | None) -> bytes:
    """``obj`` (a message array) packed, if a worker with ``limits`` would accept it."""
    lim = limits or _DEFAULT_LIMITS
    if len(obj[3]) + len(obj[4]) > lim.max_args:
        raise MessageError(f"message has more than {lim.max_args} arguments")
    # The common call (scalar arguments) skips the walk: its depth is 2.
    if not (lim.max_depth >= 2 and _flat(obj[3], obj[4], obj[5])):
        check_tree(obj, lim.max_depth)
    data = pack(obj)
    if len(data) > lim.max_bytes:
        raise MessageError(f"payload of {len(data)} bytes exceeds the {lim.max_bytes} byte limit")
    return data


def encode_message(msg: Message, limits: Limits | None = None) -> bytes:
    """The stream payload of ``msg``.

    Raises:
        MessageError: A worker with ``limits`` (default :class:`Limits`) would refuse it.
    """
    return _checked([VERSION, msg.run_id, msg.task, msg.args, msg.kwargs, msg.meta or None], limits)


def encode_call(
    run_id: str,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    meta: dict[str, Any] | None,
    limits: Limits | None = None,
) -> bytes:
    """The stream payload of one call, without building a :class:`Message` (bulk path).

    Raises:
        MessageError: A worker with ``limits`` (default :class:`Limits`) would refuse it.
    """
    return _checked([VERSION, run_id, task, args, kwargs, meta or None], limits)


def encode_calls(
    task: str,
    rows: Iterable[tuple[str, list[Any]]],
    kwargs: dict[str, Any],
    meta: dict[str, Any] | None,
    limits: Limits | None = None,
) -> Iterator[bytes]:
    """The payloads of many calls of one task sharing ``kwargs`` and ``meta`` (``map``):
    ``(run_id, args)`` rows in, payloads out, each as strict as :func:`encode_call`.

    The shared part is checked once; a row of scalar arguments then costs only its
    own loop, its count, its packing and its size.

    Raises:
        MessageError: A worker with ``limits`` would refuse a row's payload (raised
            when that row is reached: the caller knows its index).
    """
    lim = limits or _DEFAULT_LIMITS
    shared_flat = lim.max_depth >= 2 and _flat((), kwargs, meta)
    head = lim.max_args - len(kwargs)
    meta = meta or None
    for run_id, args in rows:
        if shared_flat and len(args) <= head and all(type(a) in _SCALARS for a in args):
            data = pack([VERSION, run_id, task, args, kwargs, meta])
            if len(data) > lim.max_bytes:
                size, most = len(data), lim.max_bytes
                raise MessageError(f"payload of {size} bytes exceeds the {most} byte limit")
        else:
            data = _checked([VERSION, run_id, task, args, kwargs, meta], lim)
        yield data


def peek_run_id(payload: bytes) -> str | None:
    """The run id of a message payload, read from its first bytes without decoding
    the rest (None when they are not a v1 message's head).

    A payload starts ``0x96 0x01`` (an array of 6, version 1), then the run id as a
    msgpack str.
    """
    if payload[:2] != b"\x96\x01" or len(payload) < 3:
        return None
    tag = payload[2]
    if 0xA0 <= tag <= 0xBF:
        start, n = 3, tag - 0xA0
    elif tag == 0xD9 and len(payload) >= 4:
        start, n = 4, payload[3]
    elif tag == 0xDA and len(payload) >= 5:
        start, n = 5, int.from_bytes(payload[3:5], "big")
    else:
        return None
    raw = payload[start : start + n]
    if n == 0 or len(raw) != n:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_message(data: bytes, limits: Limits | None = None) -> Message:
    """Parse a stream payload.

    Raises:
        MessageError: The payload is malformed or breaks a limit; the message says which.
    """
    lim = limits or _DEFAULT_LIMITS
    obj = _unpackb(data, lim)
    # The common message (scalar arguments under string keys) skips the walk, as
    # encoding does: its depth is 2 and it holds nothing msgpack could not carry.
    flat = (
        type(obj) is list
        and len(obj) == 6
        and type(obj[3]) is list
        and lim.max_depth >= 2
        and _flat(obj[3], obj[4], obj[5])
    )
    if not flat:
        check_tree(obj, lim.max_depth)
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


#: What an outcome may hold when read back (results have their own size cap,
#: ``max_result_bytes``, checked by the engine).
OUTCOME_LIMITS = Limits(max_bytes=1 << 31, max_depth=1 << 10, max_args=1 << 31)

# An outcome map's keys as plain str (msgpack packs them as before; no enum lookups).
_STATE, _ATTEMPT = OutcomeField.STATE.value, OutcomeField.ATTEMPT.value
_ERROR, _VALUE, _CALL = OutcomeField.ERROR.value, OutcomeField.VALUE.value, OutcomeField.CALL.value
_UNKEPT = OutcomeField.UNKEPT.value


def encode_outcome(
    state: str,
    attempt: int,
    value: Any = None,
    error: ErrorInfo | None = None,
    call: tuple[str, bytes] | None = None,
    kept: bool = True,
) -> bytes:
    """The payload stored for a finished run.

    ``call`` (a flow child's): ``(task name, digest of its arguments)``, stored as
    field ``c`` so that a replayed flow can check it makes the same call. ``kept``
    False (``persist_result=False``): the value is left out (never checked or
    packed) and field ``n`` says so.

    Raises:
        MessageError: ``value`` holds what a reader would refuse.
    """
    body: dict[str, Any] = {_STATE: state, _ATTEMPT: attempt}
    if error is not None:
        body[_ERROR] = [error.type, error.message, error.traceback]
    elif not kept:
        body[_UNKEPT] = 1
    else:
        if type(value) not in _SCALARS:
            # What decode_outcome would refuse (a non-string map key, ...) is refused
            # here, so a stored result can always be read back.
            check_tree(value, OUTCOME_LIMITS.max_depth)
        body[_VALUE] = value
    if call is not None:
        body[_CALL] = call
    return pack(body)


@dataclass(frozen=True)
class Outcome:
    """A finished run's state name, attempt count, value or error; for a flow child,
    the call it was (``(task name, argument digest)``, None if not recorded); ``kept``
    False when the value was not stored (``persist_result=False``)."""

    state: str
    attempt: int
    value: Any = None
    error: ErrorInfo | None = None
    call: tuple[str, bytes] | None = None
    kept: bool = True


def decode_outcome(data: bytes) -> Outcome:
    """Parse what :func:`encode_outcome` wrote."""
    body = unpack(data, OUTCOME_LIMITS)
    if not isinstance(body, dict) or _STATE not in body:
        raise MessageError("malformed outcome record")
    err = body.get(_ERROR)
    error = ErrorInfo(str(err[0]), str(err[1]), str(err[2])) if err else None
    c = body.get(_CALL)
    call = (c[0], c[1]) if isinstance(c, list) and len(c) == 2 else None
    state, attempt, kept = str(body[_STATE]), int(body.get(_ATTEMPT, 0)), _UNKEPT not in body
    return Outcome(state, attempt, body.get(_VALUE), error, call, kept)
