"""What a shard job remembers about each input file, so that a rerun notices added, changed or removed inputs.

An *identity* is a small JSON-able dict: the file's ``path`` (as discovered), ``size`` (bytes), ``mtime_ns``
(modification time, nanoseconds) and ``head_tail_sha256``, the SHA-256 of its first and last MiB (the whole
file when it is at most 2 MiB). A video with a sidecar audio file (``same-stem .wav/.flac``) also records the
sidecar's identity under ``audio``. Hashing 2 MiB per file keeps a rerun over thousands of videos cheap while
catching an edit, a re-encode, a truncation or a replaced file; a file whose size and mtime are unchanged is
trusted without re-hashing (the usual build-tool rule), and one whose mtime alone changed (a copy, ``touch``)
counts as unchanged when its size and hash still match.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .media import sidecar_audio

#: Bytes hashed at each end of a file.
END_BYTES = 1 << 20


def head_tail_sha256(path: str | os.PathLike, size: int) -> str:
    """SHA-256 (hex) of the first and last :data:`END_BYTES` of a file of ``size`` bytes (all of it if small)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= 2 * END_BYTES:
            h.update(f.read())
        else:
            h.update(f.read(END_BYTES))
            f.seek(size - END_BYTES)
            h.update(f.read(END_BYTES))
    return h.hexdigest()


def file_identity(path: str | os.PathLike, previous: dict | None = None) -> dict:
    """The identity of one file; ``previous`` (a stored identity) is reused when size and mtime still match.
    Raises OSError when the file cannot be read."""
    st = os.stat(path)
    if previous and previous.get("size") == st.st_size and previous.get("mtime_ns") == st.st_mtime_ns:
        return {k: previous[k] for k in ("path", "size", "mtime_ns", "head_tail_sha256")} | {"path": str(path)}
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "head_tail_sha256": head_tail_sha256(path, st.st_size)}


def video_identity(path: str | os.PathLike, previous: dict | None = None) -> dict:
    """The identity of a video and of its sidecar audio (``audio``), if it has one."""
    ident = file_identity(path, previous)
    audio = sidecar_audio(Path(path))
    if audio is not None:
        ident["audio"] = file_identity(audio, (previous or {}).get("audio"))
    return ident


def same_content(a: dict | None, b: dict | None) -> bool:
    """Whether two identities describe the same bytes at the same path (video and sidecar audio); mtime aside."""
    if not a or not b:
        return False

    def key(i: dict | None):
        return None if i is None else (i.get("path"), i.get("size"), i.get("head_tail_sha256"))

    return key(a) == key(b) and key(a.get("audio")) == key(b.get("audio"))
