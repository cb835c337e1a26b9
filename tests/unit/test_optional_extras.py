"""The optional extras stay optional: ``import taskq`` and its CLI work without them, and
import none of them when they are installed."""

from __future__ import annotations

import subprocess
import sys

MODULES = "import taskq, taskq.cli, taskq.worker, taskq.supervisor, taskq.tracing"

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('prometheus_client', 'opentelemetry'):
            raise ImportError(f'blocked: {name}')
        return None
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_taskq_imports_without_the_extras() -> None:
    assert run(BLOCK + MODULES + "; print('ok')") == "ok"


def test_taskq_imports_neither_prometheus_client_nor_the_trace_propagator() -> None:
    # redis-py itself imports parts of opentelemetry when it is installed; taskq's own
    # tracing module (W3C propagation) loads only when tracing is turned on.
    code = MODULES + (
        "; import sys; print(sorted(m for m in sys.modules if m.startswith("
        "('prometheus_client', 'opentelemetry.trace.propagation.tracecontext'))))"
    )
    assert run(code) == "[]"
