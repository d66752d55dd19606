"""Build the API reference from the docstrings with pdoc: ``python -W error scripts/api_docs.py OUT``.

Every public module of the package gets a page (pdoc alone follows only what a package's
``__all__`` lists); private modules (``_name``), the CLI (documented in docs/cli.md) and the
pytest plugin are left out. Run with ``-W error`` (as ``make api-docs`` and the test suite do)
so a docstring pdoc cannot render fails the build instead of shipping a broken page.
"""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path

import pdoc
import pdoc.extract

import flowkit

SKIP = ("flowkit.cli", "flowkit.testing.pytest_plugin")


def public_modules() -> list[str]:
    names = ["flowkit"]
    for info in pkgutil.walk_packages(flowkit.__path__, "flowkit."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.name.startswith(SKIP):
            continue
        names.append(info.name)
    return sorted(names)


def specs() -> list[str]:
    """The public modules, minus those a package already brings along (pdoc adds the
    submodules a package's ``__all__`` names, and refuses a module given twice)."""
    seen: set[str] = set()
    out = []
    for name in public_modules():
        if name not in seen:
            seen.update(pdoc.extract.walk_specs([name]))
            out.append(name)
    return out


def main(out: str) -> None:
    pdoc.render.configure(docformat="restructuredtext", footer_text="flowkit API reference",
                          search=True, show_source=False)
    pdoc.pdoc(*specs(), output_directory=Path(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "site/api")
