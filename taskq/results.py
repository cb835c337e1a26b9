"""Result options with Prefect's names: ``persist_result`` and ``result_storage_key``.

``persist_result=False`` keeps no value: the run's outcome (its state, attempt and
error) is still recorded, so waits and ``future.state`` work as ever, but a completed
run's ``result()`` raises :class:`~taskq.errors.ResultNotPersistedError`. A flow child
keeps its value regardless: its flow reads it through Redis.

``result_storage_key`` is a template filled per run from ``parameters`` (the call's
arguments by name), ``task_run`` (``id``, ``name``, ``task_name``) and ``flow_run``
(``id`` of the flow the run is a child of, or None), as in Prefect:
``"report-{parameters[day]}"``. A completed run's outcome is also stored under the
filled key (for ``result_ttl``, like the run's own result), and
:meth:`taskq.Task.stored_result` reads it back by name. The last run to complete
under a key wins.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from taskq.errors import ConfigurationError

#: The names a ``result_storage_key`` template may use.
TEMPLATE_FIELDS = ("parameters", "task_run", "flow_run")
#: The longest filled key, in characters.
MAX_KEY_CHARS = 1024


@dataclass(frozen=True)
class TaskRunInfo:
    """``task_run`` in a ``result_storage_key`` template."""

    id: str
    name: str
    task_name: str


@dataclass(frozen=True)
class FlowRunInfo:
    """``flow_run`` in a ``result_storage_key`` template."""

    id: str


def check_template(template: str) -> str:
    """A ``result_storage_key`` template whose fields are all known names.

    Raises:
        ConfigurationError: A field names something else, or the template is malformed.
    """
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigurationError(f"result_storage_key {template!r} is malformed: {exc}") from None
    for f in fields:
        root = f.split(".", 1)[0].split("[", 1)[0]
        if root not in TEMPLATE_FIELDS:
            known = ", ".join(TEMPLATE_FIELDS)
            raise ConfigurationError(
                f"result_storage_key {template!r} uses {{{f}}}; a template may use {known}"
            )
    return template


def fill_key(
    template: str,
    parameters: dict[str, Any],
    task_run: TaskRunInfo,
    flow_id: str | None,
) -> str:
    """The key ``template`` names for one run.

    Raises:
        ConfigurationError: The template cannot be filled for these arguments, or the
            key is empty or longer than :data:`MAX_KEY_CHARS`.
    """
    flow_run = FlowRunInfo(flow_id) if flow_id is not None else None
    try:
        key = template.format(parameters=parameters, task_run=task_run, flow_run=flow_run)
    except (KeyError, IndexError, AttributeError, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"result_storage_key {template!r} cannot be filled for this run: {exc!r}"
        ) from None
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise ConfigurationError(
            f"result_storage_key {template!r} gave a key of {len(key)} characters "
            f"(1 to {MAX_KEY_CHARS})"
        )
    return key
