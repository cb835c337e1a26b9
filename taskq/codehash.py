"""What identifies a task's code for caching: :func:`code_digest` of its function.

``TASK_SOURCE`` and ``task_input_hash`` key on it. It covers what the function does and
not what it is called, so a renamed function with the same body keeps its cache
entries, and the key is the same in every worker process (nothing in it is salted per
process or depends on where the function lives in memory or in its file).

Hashed, for the function and, through ``__wrapped__``, each function it wraps:

- its code object, recursively (nested functions, lambdas and comprehensions are code
  objects among its constants): the bytecode (``co_code``), the exception table, the
  constants (a frozenset's members sorted, so string sets do not depend on the
  process's hash seed), the global and attribute names the code uses (``co_names``),
  the parameters' names and kinds, the flags (generator, coroutine, ``*args``);
- its default argument values, msgpack-encoded (a value msgpack cannot carry counts by
  its type's qualified name), and the names of the variables its closure captures with
  their values where those are immutable (None, bool, numbers, str, bytes, tuples of
  them: a task made by a factory per value differs by it); a mutable captured value,
  say a list the task appends to, counts by its name only, or every run would change
  the key;
- the interpreter's cache tag (``cpython-311``): bytecode differs between versions.

Not hashed: the function's name and qualified name, its module and file, line numbers,
local variable names other than parameters, and the code of what it calls (a helper
that changes does not change the key — as Prefect's ``TASK_SOURCE``, which hashes only
the task's own source). A callable that is not a function (an object with
``__call__``) counts by its type's qualified name and that ``__call__``'s code.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

from taskq.message import pack


def digest(*parts: bytes) -> str:
    """SHA-256 (hex) of ``parts``, each length-prefixed so that no two lists collide."""
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def _const(value: Any) -> bytes:
    if isinstance(value, types.CodeType):
        return b"code:" + _code(value).encode()
    if isinstance(value, tuple):
        return b"tuple:" + digest(*(_const(v) for v in value)).encode()
    if isinstance(value, frozenset):
        return b"frozenset:" + digest(*sorted(_const(v) for v in value)).encode()
    return f"{type(value).__name__}:{value!r}".encode()


@functools.lru_cache(maxsize=1024)
def _code(code: types.CodeType) -> str:
    nargs = code.co_argcount + code.co_kwonlyargcount
    nargs += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # *args, **kwargs
    return digest(
        code.co_code,
        getattr(code, "co_exceptiontable", b""),
        *(_const(c) for c in code.co_consts),
        "\0".join(code.co_names).encode(),
        "\0".join(code.co_varnames[:nargs]).encode(),
        "\0".join(code.co_freevars).encode(),
        f"{code.co_argcount},{code.co_posonlyargcount},{code.co_kwonlyargcount}".encode(),
        str(code.co_flags).encode(),
    )


def _values(values: Iterable[Any]) -> bytes:
    out = []
    for v in values:
        try:
            out.append(pack(v))
        except Exception:
            out.append(f"<{type(v).__qualname__}>".encode())
    return digest(*out).encode()


def _frozen(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_frozen(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str | bytes)


def _cells(fn: types.FunctionType) -> list[Any]:
    """The closure's immutable values (a mutable one, a list the task appends to, would
    change the key at every run); others count by their names in ``co_freevars``."""
    out: list[Any] = []
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell (a name not yet bound in the enclosing scope)
            value = None
        out.append(value if _frozen(value) else None)
    return out


def _function(fn: Callable[..., Any]) -> list[bytes]:
    if isinstance(fn, types.FunctionType):
        kw = sorted((fn.__kwdefaults__ or {}).items())
        defaults = [*(fn.__defaults__ or ()), *(k for k, _ in kw), *(v for _, v in kw)]
        return [_code(fn.__code__).encode(), _values(defaults), _values(_cells(fn))]
    if isinstance(fn, types.MethodType):
        return _function(fn.__func__)
    call = inspect.getattr_static(type(fn), "__call__", None)
    parts = [type(fn).__qualname__.encode()]
    if isinstance(call, types.FunctionType):
        parts.append(_code(call.__code__).encode())
    return parts


def code_digest(fn: Callable[..., Any]) -> str:
    """The digest of ``fn``'s code (see the module docstring for what it covers)."""
    parts = [str(sys.implementation.cache_tag).encode()]
    seen: set[int] = set()
    current: Any = fn
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += _function(current)
        current = getattr(current, "__wrapped__", None)
    return digest(*parts)
