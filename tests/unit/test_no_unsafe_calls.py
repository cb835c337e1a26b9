"""The library never deserializes or runs code it is sent: a grep of taskq/'s source.

Searched in code only (comments and string literals, docstrings included, are blanked
first, so "no pickle" in a docstring is not a hit): ``pickle``, ``marshal``, ``eval(``,
``exec(``, ``__import__`` and ``import_module``. The one allowed hit is
``importlib.import_module`` inside :func:`taskq.app.load_object`, which imports the
``MODULE:APP`` (or ``taskq enqueue``'s ``MODULE:TASK``) given to the CLI by the
operator (never a name read from a message).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "taskq"

UNSAFE = {
    "pickle": re.compile(r"pickle"),
    "marshal": re.compile(r"marshal"),
    "eval(": re.compile(r"(?<![\w.])eval\s*\("),
    "exec(": re.compile(r"(?<![\w.])exec\s*\("),
    "__import__": re.compile(r"__import__"),
    "import_module": re.compile(r"import_module"),
}
ALLOWED = {("app.py", "load_object", "import_module")}


#: Literal text inside an f-string (Python >= 3.12 splits f-strings into tokens; on 3.11 an
#: f-string is one STRING token and is kept whole, so code in its braces is still searched).
_FSTRING_TEXT = getattr(tokenize, "FSTRING_MIDDLE", None)


def _is_prose(tok: tokenize.TokenInfo) -> bool:
    if tok.type == tokenize.COMMENT or tok.type == _FSTRING_TEXT:
        return True
    if tok.type == tokenize.STRING:
        prefix = re.match(r"[A-Za-z]*", tok.string)
        return prefix is None or "f" not in prefix.group().lower()
    return False


def code_only(source: str) -> list[str]:
    """The source's lines with every comment and string literal replaced by spaces."""
    blanked = [list(line) for line in source.splitlines(keepends=True)]
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if not _is_prose(tok):
            continue
        (r0, c0), (r1, c1) = tok.start, tok.end
        for row in range(r0, r1 + 1):
            line = blanked[row - 1]
            start = c0 if row == r0 else 0
            end = c1 if row == r1 else len(line)
            for col in range(start, end):
                if line[col] != "\n":
                    line[col] = " "
    return ["".join(line) for line in blanked]


def enclosing_function(tree: ast.Module, lineno: int) -> str | None:
    best: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside = node.lineno <= lineno <= (node.end_lineno or node.lineno)
            if inside and (best is None or node.lineno > best.lineno):
                best = node
    return None if best is None else best.name


def scan(path: Path) -> list[tuple[str, str | None, str, int, str]]:
    """``(file, enclosing function, pattern, line number, line)`` for every hit in ``path``."""
    source = path.read_text()
    tree = ast.parse(source)
    hits = []
    for number, line in enumerate(code_only(source), start=1):
        for name, pattern in UNSAFE.items():
            if pattern.search(line):
                func = enclosing_function(tree, number)
                hits.append((path.name, func, name, number, line.strip()))
    return hits


def test_the_scanner_sees_code_and_ignores_prose(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""No pickle here, nor eval(...)."""\n'
        "# exec( in a comment\n"
        "import pickle as p\n"
        "def f(x):\n"
        "    return eval (x) + redis.eval(x) + literal_eval(x)\n"
        "y = f'{__import__(\"os\")}'\n"
    )
    found = {(h[2], h[3]) for h in scan(sample)}
    assert found == {("pickle", 3), ("eval(", 5), ("__import__", 6)}


def test_taskq_source_has_no_pickle_marshal_eval_exec_or_dynamic_import() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10, f"taskq/ not found at {PACKAGE}"
    hits = [hit for path in files for hit in scan(path)]
    allowed = [h for h in hits if (h[0], h[1], h[2]) in ALLOWED]
    forbidden = [h for h in hits if (h[0], h[1], h[2]) not in ALLOWED]
    print(f"\n[X-grep] {len(files)} files scanned; allowed hits: {allowed}")
    assert forbidden == [], "\n".join(
        f"{f}:{n} in {fn}(): {line}" for f, fn, _, n, line in forbidden
    )
    assert [(h[0], h[1]) for h in allowed] == [("app.py", "load_object")], allowed
    assert "importlib.import_module(" in allowed[0][4]


@pytest.mark.parametrize("suffix", [".lua"])
def test_scripts_do_not_load_code(suffix: str) -> None:
    """The Lua scripts run inside Redis: no ``loadstring``/``load``/``dofile`` either."""
    pattern = re.compile(r"(?<![\w.])(loadstring|load|dofile|loadfile)\s*\(")
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob(f"*{suffix}"))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line.split("--", 1)[0])
    ]
    assert hits == []
