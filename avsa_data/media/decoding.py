"""Decoding: equirect video frames and audio samples, each streamed out of one ffmpeg process.

* :func:`iter_video_frames` — frames ``[H, W, 3]`` uint8 RGB (or YUV 4:2:0 planes) at a fixed fps;
  :func:`iter_video_frames_at` only the frames a sampling plan needs.
* :func:`read_audio` — audio ``[C, n_samples]`` float32, resampled by ffmpeg, channels in the file's order;
  :func:`read_foa` insists on 4 channels and returns ambiX (ACN W, Y, Z, X; SN3D).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from ..ambisonics import FOA_CHANNELS, fuma_to_ambix
from . import commands
from .errors import MediaError, check_exists, check_truncated, classify, raise_if_killed
from .frame_pipe import stream_frames
from .probing import ProbeResult, probe
from .wav import parse_wav

#: Channel conventions :func:`read_foa` reads.
AMBI_FORMATS = ("ambix", "fuma")


def iter_video_frames_at(
    path: str | os.PathLike, fps: float, indices: Sequence[int], size: tuple[int, int] | None = None,
    threads: int | None = None, pix_fmt: str = "rgb24", info: ProbeResult | None = None,
) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """Like :func:`iter_video_frames`, but yield only frames ``indices`` (at ``fps``) as ``(index, frame)``.

    ffmpeg still decodes every frame, but drops the unneeded ones before the RGB conversion and the pipe,
    which is most of the cost at 360° resolutions. Pairs come in increasing index order; indices past the
    end of the video are simply not yielded. ``pix_fmt="yuv420p"`` yields :class:`avsa_data.crops_yuv.YuvFrame`
    objects instead (the decoder's planes, half the pipe bytes, no colour conversion by ffmpeg). ``info``: see
    :func:`iter_video_frames`.
    """
    wanted = sorted(set(int(i) for i in indices))
    frames = iter_video_frames(path, fps, size, threads, select=commands.select_expression(wanted) if wanted else None,
                               pix_fmt=pix_fmt, info=info)
    return zip(wanted, frames)


def iter_video_frames(
    path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None, threads: int | None = None,
    select: str | None = None, pix_fmt: str = "rgb24", info: ProbeResult | None = None,
) -> Iterator[NDArray[np.uint8]]:
    """Decode the first video stream as RGB frames ``[H, W, 3]`` uint8, resampled to ``fps`` frames per second.

    Frame ``i`` shows time ``i / fps`` seconds. ``size`` = (W, H) rescales (area filter); ``None`` keeps the
    native size. One ffmpeg process streams all frames (never the whole video in memory). Opening problems
    raise :class:`MediaError` immediately; a file that turns out truncated raises it after the last frame.
    ``pix_fmt`` is ``rgb24`` (default) or ``yuv420p`` (frames are :class:`avsa_data.crops_yuv.YuvFrame`, in the
    stream's own colour matrix and range, which they carry). ``threads``: ffmpeg's decoder threads (default:
    its own choice); ``select``: an ffmpeg ``select`` expression on the frame numbers (see
    :func:`~avsa_data.media.commands.select_expression`); ``info``: :func:`probe`'s result for ``path`` when the
    caller has it already (saves the header probe, an ffmpeg start: ~30 CPU-ms per video).
    """
    if pix_fmt not in ("rgb24", "yuv420p"):
        raise ValueError(f"iter_video_frames: pix_fmt must be rgb24 or yuv420p, got {pix_fmt!r}")
    if fps <= 0:
        raise ValueError(f"iter_video_frames: fps must be > 0 frames/s, got {fps}")
    p = check_exists(path)
    info = info if info is not None else probe(p, scan_packets=False)
    if not info.has_video:
        raise MediaError("no video stream", "no_video", p)
    w, h = size if size is not None else (info.width, info.height)
    if not w or not h:
        raise MediaError("cannot tell the video's frame size", "unreadable", p)
    w, h = int(w), int(h)
    cmd = commands.decode_video(str(p), fps, size, select, pix_fmt, threads)
    if pix_fmt == "yuv420p":
        from ..crops_yuv import ColorSpace, YuvFrame  # imports OpenCV: only when asked for

        space = ColorSpace.from_tags(info.video.color_tags if info.video else ())
        nbytes = w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2)
        return stream_frames(cmd, p, w, h, nbytes, lambda buf: YuvFrame.from_buffer(buf, w, h, space))
    return stream_frames(cmd, p, w, h)


def read_audio(path: str | os.PathLike, sr: int) -> NDArray[np.float32]:
    """Decode the first audio stream of ``path`` (container or sidecar) to float32 ``[C, n_samples]`` at ``sr`` Hz.

    ffmpeg resamples; channels keep the file's order (no down/up-mixing). Raises :class:`MediaError`
    (``missing``, ``unreadable``, ``truncated``, ``no_audio``) on bad input.
    """
    if int(sr) <= 0:
        raise ValueError(f"read_audio: sample rate must be > 0 Hz, got {sr}")
    p = check_exists(path)
    out = subprocess.run(commands.decode_audio(str(p), sr=int(sr)), capture_output=True)
    raise_if_killed(out.returncode, p)
    stderr = out.stderr.decode("utf-8", "replace")
    if out.returncode != 0:
        if re.search(r"matches no streams|does not contain any stream|Output file does not contain", stderr):
            raise MediaError("no audio stream", "no_audio", p)
        kind, reason = classify(stderr)
        raise MediaError(reason, kind, p)
    check_truncated(stderr, p)
    channels, got_sr, samples = parse_wav(out.stdout)
    if got_sr != int(sr):
        raise MediaError(f"ffmpeg returned {got_sr} Hz audio instead of {sr} Hz", "decode", p)
    if samples.shape[0] == 0:
        raise MediaError("the audio stream decoded to no samples", "decode", p)
    return np.ascontiguousarray(samples.T)


def read_foa(path: str | os.PathLike, sr: int, ambi_format: str = "ambix") -> NDArray[np.float32]:
    """First-order ambisonics of ``path`` as ambiX ``[4, n_samples]`` float32 (ACN W, Y, Z, X; SN3D) at ``sr`` Hz.

    ``ambi_format`` names the file's convention: ``"ambix"`` (used as is) or ``"fuma"`` (W, X, Y, Z with W at
    -3 dB; converted with :func:`avsa_data.ambisonics.fuma_to_ambix`). Raises :class:`MediaError`
    (``channels``) unless the stream has exactly 4 channels.
    """
    if ambi_format not in AMBI_FORMATS:
        raise ValueError(f"read_foa: ambi_format must be one of {AMBI_FORMATS}, got {ambi_format!r}")
    audio = read_audio(path, sr)
    if audio.shape[0] != FOA_CHANNELS:
        raise MediaError(
            f"expected 4-channel first-order ambisonics ({ambi_format}), got {audio.shape[0]} channel(s)",
            "channels",
            path,
        )
    if ambi_format == "fuma":
        audio = fuma_to_ambix(audio)
    return np.ascontiguousarray(audio, dtype=np.float32)
