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


class _FrameReader(threading.Thread):
    """Reads frames of ``nbytes`` from a pipe into a queue of :data:`READ_AHEAD_FRAMES`: a ``bytearray`` per
    frame, then ``None`` at the end of the stream (or when the consumer stopped early), or a
    :class:`_ReaderFailed`."""

    def __init__(self, stream, nbytes: int):
        super().__init__(daemon=True)
        self.stream, self.nbytes = stream, nbytes
        self.frames: queue.Queue = queue.Queue(maxsize=READ_AHEAD_FRAMES)
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                buf = read_exact(self.stream, self.nbytes)
                self.frames.put(buf)
                if buf is None:
                    return
        except BaseException as e:  # noqa: BLE001 - every failure reaches the consumer, which never waits forever
            stopped = self.stop.is_set() and isinstance(e, (OSError, ValueError))  # the consumer stopped early
            self.frames.put(None if stopped else _ReaderFailed(e))

    def next_frame(self) -> bytearray | None:
        """The next frame's bytes (waiting for it), ``None`` at the end; raises what failed the reader."""
        buf = self.frames.get()
        if isinstance(buf, _ReaderFailed):
            raise buf.error
        return buf

    def drain(self) -> None:
        """Empty the queue until the thread ends (it may be waiting on a full queue)."""
        while self.is_alive():
            try:
                self.frames.get_nowait()
            except queue.Empty:
                self.join(0.05)


def _rgb24_frame(w: int, h: int) -> Callable[[bytearray], NDArray[np.uint8]]:
    """A frame's bytes as an ``(h, w, 3)`` uint8 array (writable: backed by the bytearray)."""
    def shape(buf: bytearray) -> NDArray[np.uint8]:
        return np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
    return shape


def _raise_for_exit(rc: int, err: StderrCollector, p: Path, n: int) -> None:
    """Raise what ended a decode of ``p`` that gave ``n`` frames, if anything went wrong: a stderr-thread error,
    a killed ffmpeg, a failed or truncated decode (its stderr classified), or no frames at all."""
    if err.error is not None:
        raise err.error
    raise_if_killed(rc, p)
    if rc != 0 or TRUNCATED[0] in err.text:
        kind, reason = classify(err.text)
        raise MediaError(f"{reason} (after {n} frames)" if n else reason, kind, p)
    if n == 0:
        raise MediaError("the video stream decoded to no frames", "decode", p)


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
    shape = shape or _rgb24_frame(w, h)
    reader = _FrameReader(proc.stdout, nbytes or w * h * 3)
    reader.start()
    finished = False
    try:
        n = 0
        while (buf := reader.next_frame()) is not None:
            n += 1
            yield shape(buf)
        rc = proc.wait()
        err.join()
        finished = True
        _raise_for_exit(rc, err, p, n)
    finally:
        reader.stop.set()
        if not finished:
            proc.kill()
            reader.drain()
            proc.wait()
        reader.join()
        err.join()
        proc.stdout.close()
