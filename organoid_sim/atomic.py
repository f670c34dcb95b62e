"""Atomic file writes: a file appears complete under its name, or not at all.

Every writer of the package (recordings, models, protocols, figures, reports, JSON) goes through
:func:`atomic_path`, so an error or Ctrl-C half-way never leaves a truncated file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, make_parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one step.

    The temporary file lives in the same directory (so ``os.replace`` is an atomic rename) and keeps
    ``path``'s extension (so writers that pick a format from it still work). On any error (or
    Ctrl-C) it is removed and ``path`` is left untouched. ``make_parents`` creates missing folders;
    otherwise a missing folder raises ``FileNotFoundError``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    make_parents : bool
        Create missing parent folders.

    Yields
    ------
    Path
        The temporary path to write to.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if make_parents:
        directory.mkdir(parents=True, exist_ok=True)
    if not directory.is_dir():
        raise FileNotFoundError(f"{path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=directory)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file the permissions a plain open() would (umask applies)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating missing folders; returns the path.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    data : bytes
        Its content.

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_path(path, make_parents=True) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating missing folders; returns the path.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    text : str
        Its content.

    Returns
    -------
    Path
        ``path``.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))
