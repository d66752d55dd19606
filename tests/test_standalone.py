"""The repository stands alone: nothing in it sends a reader to a document outside it, and
every pointer to docs/design.md names a section that exists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Folders that are not the repository's content: tools' caches, the venv, generated output.
NOT_OURS = {".git", ".venv", "venv", "out", ".flowkit", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
            ".ipynb_checkpoints", "node_modules", "build", "dist", ".hypothesis"}
# Spelled in pieces so that this file does not match itself.
OUTSIDE = [re.compile(p) for p in (r"\bDES" + r"IGN\b", r"\.\./" + "shared", "/work" + "/")]
DESIGN_DOC = ROOT / "docs" / "design.md"
SECTION_REF = re.compile(r"docs/design\.md[,:]?\s*\(?[\"'`]([A-Z][A-Za-z ,/-]+)[\"'`]")


def repo_files() -> Iterator[Path]:
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in NOT_OURS or part.endswith(".egg-info") for part in rel.parts) or not path.is_file():
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images, Parquet samples: no prose
        yield path


def test_no_file_points_outside_the_repository() -> None:
    found = []
    files = list(repo_files())
    assert len(files) > 100 and DESIGN_DOC in files
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(p.search(line) for p in OUTSIDE):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "point to docs/design.md (in the repository) instead:\n" + "\n".join(found)


def test_pointers_to_design_name_real_sections() -> None:
    headings = {m.group(1).strip() for m in re.finditer(r"^#+\s+(.+)$", DESIGN_DOC.read_text(encoding="utf-8"), re.M)}
    refs = []
    for path in repo_files():
        for m in SECTION_REF.finditer(path.read_text(encoding="utf-8")):
            for section in re.split(r"[\"'`]\s*(?:and|,)\s*[\"'`]", m.group(1)):
                refs.append((path.relative_to(ROOT), section.strip()))
    assert len(refs) >= 5
    missing = [f"{p}: {s!r}" for p, s in refs if s not in headings]
    assert not missing, f"docs/design.md has no such section (it has {sorted(headings)}): {missing}"


def test_the_readme_points_to_the_design() -> None:
    assert "docs/design.md" in (ROOT / "README.md").read_text(encoding="utf-8")
