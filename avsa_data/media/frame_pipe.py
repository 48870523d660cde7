"""Frames out of a running ffmpeg process: its stdout pipe read by a helper thread, its stderr drained by another.

:func:`stream_frames` is the one place that owns a decoding ffmpeg process: it yields fixed-size frames, turns
a failed or killed run into :class:`MediaError` / :class:`FfmpegKilled`, and kills and reaps ffmpeg whenever the
caller stops early or any thread fails.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .errors import TRUNCATED, MediaError, classify, raise_if_killed


class StderrCollector(threading.Thread):
    """Drain a pipe in the background so ffmpeg never blocks on a full stderr.

    An exception while draining is kept in ``error`` (for the consumer to raise) and ``on_error`` is called —
    :func:`stream_frames` kills ffmpeg there, which could otherwise block forever on the undrained pipe."""

    def __init__(self, stream, on_error: Callable[[], object] | None = None):
        super().__init__(daemon=True)
        self.stream, self.chunks = stream, []
        self.on_error = on_error
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for chunk in iter(lambda: self.stream.read(65536), b""):
                self.chunks.append(chunk)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            self.error = e
            if self.on_error is not None:
                self.on_error()

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


def read_exact(stream, n: int) -> bytearray | None:
    """Exactly ``n`` bytes from a pipe, or ``None`` at end of stream (a partial last frame is dropped)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            return None
        got += k
    return buf


#: Decoded frames ffmpeg may run ahead of the consumer (a frame of a 3840×1920 video is 22 MB).
READ_AHEAD_FRAMES = 4


class _ReaderFailed:
    """What the frame-reader thread queues instead of a frame when it fails: the exception, for the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def stream_frames(cmd: list[str], p: Path, w: int, h: int, nbytes: int | None = None,
                  shape: Callable[[bytearray], object] | None = None) -> Iterator[NDArray[np.uint8]]:
    """Frames of ``nbytes`` (default: ``w`` × ``h`` RGB24) from the rawvideo pipe of ffmpeg ``cmd`` decoding
    ``p``, each made into an array (or frame object) by ``shape``. A reader thread keeps up to
    ``READ_AHEAD_FRAMES`` frames in hand so that ffmpeg decodes the next frames while the caller works on this
    one (a 64 kB pipe would otherwise make decoding and processing take turns).

    Any exception in a helper thread (e.g. ``MemoryError`` allocating a frame) is raised to the caller as is,
    after ffmpeg is killed and reaped; so is any exception of the caller (or closing the generator early)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = StderrCollector(proc.stderr, on_error=proc.kill)
    err.start()
    nbytes = nbytes or w * h * 3
    if shape is None:
        def shape(buf: bytearray) -> NDArray[np.uint8]:
            return np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)  # writable: backed by a bytearray
    frames: queue.Queue = queue.Queue(maxsize=READ_AHEAD_FRAMES)
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                buf = read_exact(proc.stdout, nbytes)
                frames.put(buf)
                if buf is None:
                    return
        except BaseException as e:  # noqa: BLE001 - every failure reaches the consumer, which never waits forever
            stopped = stop.is_set() and isinstance(e, (OSError, ValueError))  # the consumer stopped early
            frames.put(None if stopped else _ReaderFailed(e))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    finished = False
    try:
        n = 0
        while True:
            buf = frames.get()
            if isinstance(buf, _ReaderFailed):
                raise buf.error
            if buf is None:
                break
            n += 1
            yield shape(buf)
        rc = proc.wait()
        err.join()
        finished = True
        if err.error is not None:
            raise err.error
        raise_if_killed(rc, p)
        if rc != 0 or TRUNCATED[0] in err.text:
            kind, reason = classify(err.text)
            raise MediaError(f"{reason} (after {n} frames)" if n else reason, kind, p)
        if n == 0:
            raise MediaError("the video stream decoded to no frames", "decode", p)
    finally:
        stop.set()
        if not finished:
            proc.kill()
            while th.is_alive():  # unblock a reader waiting on a full queue
                try:
                    frames.get_nowait()
                except queue.Empty:
                    th.join(0.05)
            proc.wait()
        th.join()
        err.join()
        proc.stdout.close()
