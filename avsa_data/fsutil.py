"""Atomic file output: write to a hidden ``.<name>.<pid>.tmp`` in the same folder, flush, fsync, then rename.

A reader (or a rerun after ``kill -9``) therefore sees either nothing or a complete file under the final
name, never a partial one.
"""

from __future__ import annotations

import os
from pathlib import Path


def tmp_path(path: str | os.PathLike) -> Path:
    """The temporary sibling ``.<name>.<pid>.tmp`` that :func:`atomic_write_bytes` renames into place
    (the pid keeps concurrent writers of the same name apart)."""
    p = Path(path)
    return p.with_name(f".{p.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    tmp = tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
