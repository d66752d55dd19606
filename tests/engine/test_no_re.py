"""No module of flowkit applies Python's backtracking ``re`` to what users send.

Python's ``re`` backtracks: a pattern like ``([A-Za-z]+)+`` or an unanchored ``\\s*$`` takes
seconds or years on a few thousand characters, and one such answer stops the whole async
server. User input meets patterns only through RE2 (flowkit/flow/patterns.py, linear time)
or through plain string operations (flowkit/engine/inputs.py). This test reads every module
of the package and fails for any that imports ``re`` (or ``regex``, or the ``sre_*``
internals) without an entry below saying why its patterns never see user input, or why they
cannot backtrack on it. A new use of ``re`` needs a reviewed entry here; a stale entry fails too.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import flowkit

PACKAGE = Path(flowkit.__file__).resolve().parent
BACKTRACKING = {"re", "regex", "sre_compile", "sre_parse", "sre_constants", "_sre"}

# module (relative to the package) -> why its `re` use is safe
ALLOWED: dict[str, str] = {
    "flow/lexer.py": "tokenizes expression sources from flow files (author text, at most 2,000 characters, "
                     "at load time); evaluation does not use it",
    "flow/parse_values.py": "checks names, service names and ISO dates written in flow files, never answers",
    "flow/reader.py": "PyYAML's bool resolver pattern, applied to flow-file scalars only",
    "flow/durations.py": "parses durations (`30m`, `2h`) written in flow files",
    "alerts.py": "parses alert rules from the operator's configuration",
    "store/codec.py": "scans serialized JSON for a small exponent with `e-[0-9](?![0-9])`: no repetition at all, "
                      "so at most one step per character",
    "runtime/registry.py": "splits a message into words for trigger matching with one character class "
                           "`[^\\w\\s]`: no nested or adjacent repetition, linear in the text",
    "testing/fake_graph.py": "the local Graph API imitation for tests, routing its own request paths",
    "log.py": "masks secrets in log text, which may quote user input: every repetition is bounded ({0,31}, "
              "{0,256}) or follows a literal ('bearer', 'access_token='), so a message costs O(n)",
    "readiness.py": "matches Redis' own error replies (OOM, READONLY, MISCONF...): server text, never user input",
}

# Where answers and slot values are parsed and checked: never even an allow-listed `re`.
NEVER = ("engine/", "flow/expr/", "flow/template.py", "flow/patterns.py", "flow/bounds.py")


def imports_of(path: Path) -> set[str]:
    """Top-level module names ``path`` imports (``import re``, ``from re import x``,
    ``import re as r``, and ``importlib.import_module("re")`` / ``__import__("re")``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id == "__import__")
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            found.add(node.args[0].value.split(".")[0])
    return found


@functools.cache
def users_of_re() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        hits = imports_of(path) & BACKTRACKING
        if hits:
            out[path.relative_to(PACKAGE).as_posix()] = hits
    return out


def test_no_module_uses_backtracking_regexes_without_a_reason() -> None:
    unexplained = {m: sorted(h) for m, h in users_of_re().items() if m not in ALLOWED}
    assert not unexplained, (
        f"these modules import a backtracking regex module: {unexplained}. Match user input with "
        "flowkit.flow.patterns (RE2) or plain string operations; if the patterns only ever see trusted "
        "text, add the module to ALLOWED with the reason")


def test_the_allow_list_has_no_stale_entries() -> None:
    stale = sorted(set(ALLOWED) - set(users_of_re()))
    assert not stale, f"no longer import re, remove from ALLOWED: {stale}"


def test_the_engine_and_the_expression_evaluator_use_no_re_at_all() -> None:
    assert not [m for m in users_of_re() if m.startswith(NEVER)]
    assert not [m for m in ALLOWED if m.startswith(NEVER)]


def test_the_scan_sees_every_spelling_of_an_import(tmp_path: Path) -> None:
    for i, line in enumerate(["import re", "import os, re as r", "from re import fullmatch", "import regex",
                              "import importlib\nimportlib.import_module('re')", "__import__('sre_compile')"]):
        f = tmp_path / f"m{i}.py"
        f.write_text(line + "\n", encoding="utf-8")
        assert imports_of(f) & BACKTRACKING, line
    ok = tmp_path / "ok.py"
    ok.write_text("import re2\nfrom flowkit.flow import patterns\nstore = 1\nstore.re = 2\n", encoding="utf-8")
    assert not imports_of(ok) & BACKTRACKING
