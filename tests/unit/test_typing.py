"""Runs mypy on tests/typing/check_types.py: the typed surface holds, and misuse is caught."""

import re
from pathlib import Path

from mypy import api

CHECK = Path(__file__).parents[1] / "typing" / "check_types.py"


def test_public_api_types_check_and_misuse_is_reported() -> None:
    out, err, _ = api.run(["--strict", "--no-incremental", "--show-error-codes", str(CHECK)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    lines = CHECK.read_text().splitlines()
    expected = {i + 1 for i, text in enumerate(lines) if "# E:" in text}
    flagged = {int(m.group(1)) for line in errors if (m := re.search(r":(\d+): error", line))}
    assert flagged == expected, out + err
