"""What a shard job remembers about each input file, so that a rerun notices added, changed or removed inputs.

An *identity* is a small JSON-able dict: the file's ``path`` (as discovered), ``size`` (bytes), ``mtime_ns``
(modification time, nanoseconds) and ``head_tail_sha256``, the SHA-256 of its first and last MiB (the whole
file when it is at most 2 MiB). A video with a sidecar audio file (``same-stem .wav/.flac``), or with a
separate FOA file (STARSS23 layout), also records that file's identity under ``audio``, and a video with a
sound-event CSV records the CSV's under ``events``. Hashing 2 MiB per file keeps a rerun over thousands of
videos cheap while catching an edit, a re-encode, a truncation or a replaced file; a file whose size and mtime
are unchanged is trusted without re-hashing (the usual build-tool rule), and one whose mtime alone changed (a
copy, ``touch``) counts as unchanged when its size and hash still match.
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


def video_identity(path: str | os.PathLike, previous: dict | None = None, audio: str | os.PathLike | None = None,
                   events: str | os.PathLike | None = None) -> dict:
    """The identity of a video, of its audio file (``audio``: the given one of a layout with separate audio,
    else the sidecar, if any) and of its sound-event CSV (``events``). An audio or event file that does not
    exist is left out (the video then fails, or has no labels, in phase 1)."""
    ident = file_identity(path, previous)
    audio = Path(audio) if audio is not None else sidecar_audio(Path(path))
    for name, extra in (("audio", audio), ("events", events)):
        if extra is not None and Path(extra).is_file():
            ident[name] = file_identity(extra, (previous or {}).get(name))
    return ident


def same_content(a: dict | None, b: dict | None) -> bool:
    """Whether two identities describe the same bytes at the same path (video, audio, event CSV); mtime aside."""
    if not a or not b:
        return False

    def key(i: dict | None):
        return None if i is None else (i.get("path"), i.get("size"), i.get("head_tail_sha256"))

    return all(key(x) == key(y) for x, y in ((a, b), (a.get("audio"), b.get("audio")),
                                              (a.get("events"), b.get("events"))))
