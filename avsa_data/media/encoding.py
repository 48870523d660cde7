"""Encoding, used by the synthetic generator: :func:`write_video` (H.264 yuv420p + optional audio track, PCM or
AAC) and :func:`write_audio` (``.wav`` PCM s16le or ``.flac``).

Outputs are bit-exact for identical inputs (``-fflags +bitexact``, no metadata, single-threaded x264) and
written atomically (a temporary file, then ``os.replace``): a failed write leaves nothing under the final name.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..fsutil import tmp_path
from . import commands
from .errors import MediaError, classify


def _muxer(path: Path) -> str:
    try:
        return commands.MUXERS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"unsupported output extension {path.suffix!r}; expected one of {sorted(commands.MUXERS)}"
        ) from None


def _audio_array(audio: ArrayLike, name: str = "audio") -> NDArray[np.float32]:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[0] > 64 or a.shape[1] < 1:
        raise ValueError(f"{name}: expected audio shaped [channels, n_samples], got shape {tuple(a.shape)}")
    return a


def _interleaved(audio: NDArray[np.float32]) -> bytes:
    """``[C, n]`` samples as ffmpeg's ``f32le`` input: little-endian float32, channels interleaved."""
    return np.ascontiguousarray(audio.T, dtype="<f4").tobytes()


def write_video(
    path: str | os.PathLike,
    frames: Iterable[ArrayLike],
    fps: float,
    size: tuple[int, int],
    audio: ArrayLike | None = None,
    sr: int | None = None,
    audio_codec: str = "aac",
    audio_bitrate: str | None = None,
    crf: int = 23,
    preset: str = "veryfast",
    gop: int | None = None,
) -> Path:
    """Encode RGB frames ``[H, W, 3]`` uint8 (``size`` = (W, H)) as H.264 yuv420p at ``fps`` frames/s.

    With ``audio`` ``[C, n_samples]`` float in [-1, 1] at ``sr`` Hz, a C-channel track is added in channel
    order: ``audio_codec`` ``"pcm"`` (s16le, lossless up to 16-bit) or ``"aac"`` (``audio_bitrate``, default
    64 kb/s per channel). One keyframe every ``gop`` frames (default: one a second). Deterministic bytes; the
    file appears atomically. Returns the path.
    """
    out = Path(path)
    w, h = _even_size(size)
    a = _checked_audio(audio, sr, audio_codec, audio_bitrate)
    muxer = _muxer(out)
    tmp, tmp_audio = tmp_path(out), None
    try:
        if a is not None:  # the audio goes in as a second input file: stdin carries the frames
            tmp_audio = _write_audio_input(a, out.parent)
        cmd = commands.encode_video(
            str(tmp), muxer, (w, h), fps, crf, preset, int(gop or max(1, round(fps))), tmp_audio,
            channels=a.shape[0] if a is not None else 0, sr=int(sr or 0), audio_codec=audio_codec,
            audio_bitrate=audio_bitrate,
        )
        _encode_frames(cmd, frames, (w, h), out)
        os.replace(tmp, out)
    finally:
        for t in (tmp, tmp_audio):
            if t is not None and os.path.exists(t):
                os.remove(t)
    return out


def _even_size(size: tuple[int, int]) -> tuple[int, int]:
    """``(W, H)`` as ints; both must be positive and even (yuv420p halves them)."""
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise ValueError(f"write_video: size must be positive even (W, H) for yuv420p, got {size}")
    return w, h


def _checked_audio(audio: ArrayLike | None, sr: int | None, audio_codec: str,
                   audio_bitrate: str | None) -> NDArray[np.float32] | None:
    """The video's audio track as ``[C, n]`` float32 (``None`` without one), checked with its sample rate and
    codec before anything is written."""
    if audio is None:
        return None
    a = _audio_array(audio)
    if not sr:
        raise ValueError("write_video: a sample rate (Hz) is needed with audio")
    commands.audio_codec_options(audio_codec, a.shape[0], audio_bitrate)  # a bad codec fails before any write
    return a


def _write_audio_input(a: NDArray[np.float32], folder: Path) -> str:
    """Write ``a`` as raw f32le to a new temporary file in ``folder`` (ffmpeg's second input); returns its path."""
    fd, tmp_audio = tempfile.mkstemp(suffix=".f32", dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.write(_interleaved(a))
    return tmp_audio


def _frame_bytes(frame: ArrayLike, w: int, h: int) -> bytes:
    """One RGB frame as ffmpeg's rawvideo input; it must be uint8 ``[h, w, 3]``."""
    fr = np.asarray(frame)
    if fr.shape != (h, w, 3) or fr.dtype != np.uint8:
        raise ValueError(f"write_video: frames must be uint8 [{h}, {w}, 3], got {fr.dtype} {fr.shape}")
    return np.ascontiguousarray(fr).tobytes()


def _encode_frames(cmd: list[str], frames: Iterable[ArrayLike], size: tuple[int, int], out: Path) -> None:
    """Run the encoder ``cmd`` with ``frames`` (``size`` = (W, H)) on its stdin; a failure is a
    :class:`MediaError` about ``out`` (from ffmpeg's stderr), and an error of the caller's frames kills it."""
    w, h = size
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf)
        try:
            for frame in frames:
                proc.stdin.write(_frame_bytes(frame, w, h))
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status and stderr say why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0:
            errf.seek(0)
            raise MediaError(classify(errf.read().decode("utf-8", "replace"), "encode")[1], "encode", out)


def write_audio(path: str | os.PathLike, audio: ArrayLike, sr: int) -> Path:
    """Write ``audio`` ``[C, n_samples]`` float in [-1, 1] at ``sr`` Hz as ``.wav`` (PCM s16le) or ``.flac``
    (16-bit), channels in the given order. Deterministic bytes; the file appears atomically."""
    out = Path(path)
    a = _audio_array(audio)
    muxer = _muxer(out)
    if muxer not in ("wav", "flac"):
        raise ValueError(f"write_audio: expected a .wav or .flac path, got {out.name!r}")
    tmp = tmp_path(out)
    try:
        res = subprocess.run(commands.encode_audio(str(tmp), muxer, a.shape[0], sr), input=_interleaved(a),
                             capture_output=True)
        if res.returncode != 0:
            raise MediaError(classify(res.stderr.decode("utf-8", "replace"), "encode")[1], "encode", out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            os.remove(tmp)
    return out
