"""The package is typed: mypy --strict runs in CI (.ci/run); here, every `type: ignore` left
in the package says why, in a comment after it on the same line."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "flowkit"
IGNORE = re.compile(r"#\s*type:\s*ignore(\[[^\]]*\])?(?P<rest>.*)$")


def test_every_type_ignore_gives_its_reason() -> None:
    bare = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = IGNORE.search(line)
            if m and not m.group("rest").strip().startswith("#"):
                bare.append(f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()[:100]}")
    assert not bare, "say why after each `type: ignore`:\n" + "\n".join(bare)
