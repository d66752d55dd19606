"""Files and directories only their owner may read: backups, exports, Redis data.

They hold personal data (phone numbers, answers), so they are created 0600 / 0700 whatever
the process umask is: the mode is set with ``fchmod``/``chmod`` after creation, because
``open(..., mode)`` and ``mkdir(mode)`` only ever remove bits from the umask's result, and
a file that already existed (a resumed backup) keeps its old mode otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700

_FLAGS = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
          "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}


def open_private(path: str | os.PathLike[str], mode: str = "w", **kw: Any) -> IO[Any]:
    """``open(path, mode)`` for writing ("w", "a", "x", with "b" or "t"), the file made 0600."""
    base = mode.replace("b", "").replace("t", "")
    if base not in _FLAGS:
        raise ValueError(f"open_private writes only (w, a, x), not {mode!r}")
    fd = os.open(path, _FLAGS[base] | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kw)
    except BaseException:
        os.close(fd)
        raise


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) and make ``path`` itself 0700."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(p, DIR_MODE)
    return p


def private_file(path: str | os.PathLike[str]) -> None:
    """Make a file another library wrote (pyarrow) 0600; its directory is 0700 already."""
    os.chmod(path, FILE_MODE)


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` atomically (temp file + rename), mode 0600."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open_private(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
