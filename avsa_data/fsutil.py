"""Atomic file output: write to a hidden ``.<name>.<pid>.tmp`` in the same folder, flush, fsync, then rename.

A reader (or a rerun after ``kill -9``) therefore sees either nothing or a complete file under the final
name, never a partial one; :func:`remove_stale_tmp` collects the temporary files of killed writers. Also
:func:`write_json` (the one atomic JSON writer), :func:`read_json`: a JSON file whose corruption is reported in
one line naming the file, and :func:`sha256_file`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


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


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` durably and atomically (:func:`atomic_write_bytes`) as JSON text: sorted keys, indent 2, one
    trailing newline (the format of the metrics and state files of avsa_train). ``obj`` must hold plain JSON
    values (NaN is written as ``NaN``: convert it first where a strict reader follows)."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Durably and atomically create ``path`` with ``write(file)``: temporary sibling (:func:`tmp_path`), fsync
    of the file, ``os.replace``, fsync of the folder. The temporary file is removed if anything fails; after a
    ``kill -9`` it is left behind for :func:`remove_stale_tmp` to collect on the next run."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    return path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def remove_stale_tmp(folder: str | os.PathLike, keep: Callable[[str], bool] = lambda name: True) -> list[Path]:
    """Delete the ``.<name>.<pid>.tmp`` files of :func:`tmp_path` in ``folder`` (not below it) whose writer
    process is gone (killed during a write) and for which ``keep(name)`` is true. Returns the removed paths."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.glob(".*.tmp")):
        m = _TMP_NAME.match(p.name)
        if m is None or not keep(m["name"]) or pid_alive(int(m["pid"])) or not p.is_file():
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        removed.append(p)
    return removed


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON document in ``path``; a malformed or truncated file raises ``ValueError`` in one line that names
    the file, where parsing stopped and ``what`` was expected (e.g. ``"the shard manifest written by avsa-data
    shard"``). A missing file raises ``FileNotFoundError`` as usual."""
    return parse_json(Path(path).read_bytes(), str(path), what)


def parse_json(data: bytes | str, name: str, what: str) -> Any:
    """``data`` parsed as JSON, or one clear ``ValueError`` line naming ``name`` and ``what`` was expected."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not UTF-8 text (byte {e.start}); expected {what}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if not text.strip():
            why = "empty file"
        elif e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string"):
            end = text.rstrip()
            line, column = end.count("\n") + 1, len(end) - end.rfind("\n") - 1
            why = f"truncated JSON (it stops inside a value after line {line} column {column})"
        else:
            why = f"malformed JSON at line {e.lineno} column {e.colno} ({e.msg})"
        raise ValueError(f"{name}: {why}; expected {what}") from None


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the whole file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
