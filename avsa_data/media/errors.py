"""What can go wrong with a media file, as one-line errors: :class:`MediaError` (bad input, with a ``kind``)
and :class:`FfmpegKilled` (ffmpeg killed by a signal: the environment, not the input)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


class MediaError(Exception):
    """A media file cannot be used. ``str(e)`` is a one-line reason; ``kind`` is a short code.

    Kinds: ``missing``, ``unreadable``, ``truncated``, ``no_video``, ``no_audio``, ``channels``,
    ``duration``, ``decode``, ``encode``.
    """

    def __init__(self, reason: str, kind: str = "decode", path: str | os.PathLike | None = None):
        super().__init__(reason.splitlines()[0] if reason else kind)
        self.kind = kind
        self.path = None if path is None else str(path)


class FfmpegKilled(Exception):
    """ffmpeg was killed by a signal (the OOM killer, a user): a problem of the environment, not of the input,
    so it is never a :class:`MediaError`. ``str(e)`` is a one-line reason naming the file."""

    def __init__(self, signum: int, path: str | os.PathLike):
        name = signal.Signals(signum).name if signum in signal.valid_signals() else f"signal {signum}"
        super().__init__(f"ffmpeg was killed by {name} while reading {path}")
        self.signum = signum
        self.path = str(path)


def raise_if_killed(returncode: int, path: str | os.PathLike) -> None:
    """Raise :class:`FfmpegKilled` if ffmpeg's ``returncode`` says a signal ended it."""
    if returncode < 0:
        raise FfmpegKilled(-returncode, path)


#: What ffmpeg's stderr says for the common fatal problems: (marker, kind, one-line reason).
TRUNCATED = ("partial file", "truncated", "truncated: the file ends before its streams do (partial file)")
_FATAL = (
    TRUNCATED,
    ("moov atom not found", "unreadable", "unreadable: no MP4 index (moov atom not found); not a video or cut short"),
    ("Invalid data found when processing input", "unreadable", "unreadable: ffmpeg found invalid data"),
    ("No such file or directory", "missing", "no such file"),
    ("Permission denied", "unreadable", "unreadable: permission denied"),
)


def classify(stderr: str, fallback: str = "decode") -> tuple[str, str]:
    """(kind, one-line reason) for ffmpeg's stderr: a known fatal marker, else ``fallback`` with ffmpeg's last
    line."""
    for marker, kind, reason in _FATAL:
        if marker in stderr:
            return kind, reason
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return fallback, f"ffmpeg failed: {lines[-1] if lines else 'no message'}"


def check_truncated(stderr: str, path: str | os.PathLike) -> None:
    """Raise :class:`MediaError` (``truncated``) if ffmpeg's stderr says the file ends before its streams do."""
    marker, kind, reason = TRUNCATED
    if marker in stderr:
        raise MediaError(reason, kind, path)


def check_exists(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path`; :class:`MediaError` (``missing``) unless it is a file."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"no such file: {p}", "missing", p)
    return p
