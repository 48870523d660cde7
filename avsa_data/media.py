"""Reading and writing 360° media with the ffmpeg binary shipped by ``imageio-ffmpeg``.

Reading
    * :func:`probe` — streams, codecs, size, fps, sample rate, channel count and per-stream durations,
      parsed from ``ffmpeg -i`` plus one stream-copy packet scan (imageio-ffmpeg ships no ffprobe).
    * :func:`iter_video_frames` — equirect frames ``[H, W, 3]`` uint8 RGB at a fixed fps, streamed through
      one ffmpeg process.
    * :func:`read_audio` / :func:`read_foa` — audio ``[C, n_samples]`` float32, resampled by ffmpeg;
      :func:`read_foa` insists on 4 channels and returns ambiX (ACN W, Y, Z, X; SN3D).
    * :func:`find_audio_source` — the container itself or a same-stem sidecar ``.wav``/``.flac``.

Writing (used by the synthetic generator): :func:`write_video` (H.264 yuv420p + optional audio track, PCM or
AAC) and :func:`write_audio` (``.wav`` PCM s16le or ``.flac``). Outputs are bit-exact for identical inputs
(``-fflags +bitexact``, no metadata, single-threaded x264) and written atomically (temporary file, then
``os.replace``).

Every failure on bad input raises :class:`MediaError` with a one-line reason and a short ``kind`` code.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import ffmpeg
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .ambisonics import FOA_CHANNELS, fuma_to_ambix
from .fsutil import tmp_path

#: Sidecar audio extensions searched by :func:`find_audio_source`, in order of preference.
SIDECAR_EXTS = (".wav", ".flac")
AMBI_FORMATS = ("ambix", "fuma")
AUDIO_CODECS = {"pcm": "pcm_s16le", "aac": "aac"}
_MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".wav": "wav", ".flac": "flac"}
_BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


class FfmpegKilled(Exception):
    """ffmpeg was killed by a signal (the OOM killer, a user): a problem of the environment, not of the input,
    so it is never a :class:`MediaError`. ``str(e)`` is a one-line reason naming the file."""

    def __init__(self, signum: int, path: str | os.PathLike):
        name = signal.Signals(signum).name if signum in signal.valid_signals() else f"signal {signum}"
        super().__init__(f"ffmpeg was killed by {name} while reading {path}")
        self.signum = signum
        self.path = str(path)


def _raise_if_killed(returncode: int, path: str | os.PathLike) -> None:
    if returncode < 0:
        raise FfmpegKilled(-returncode, path)


class MediaError(Exception):
    """A media file cannot be used. ``str(e)`` is a one-line reason; ``kind`` is a short code.

    Kinds: ``missing``, ``unreadable``, ``truncated``, ``no_video``, ``no_audio``, ``channels``,
    ``duration``, ``decode``, ``encode``.
    """

    def __init__(self, reason: str, kind: str = "decode", path: str | os.PathLike | None = None):
        super().__init__(reason.splitlines()[0] if reason else kind)
        self.kind = kind
        self.path = None if path is None else str(path)


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable bundled with imageio-ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# ------------------------------------------------------------------------------------------------ errors

_FATAL = (
    ("partial file", "truncated", "truncated: the file ends before its streams do (partial file)"),
    ("moov atom not found", "unreadable", "unreadable: no MP4 index (moov atom not found); not a video or cut short"),
    ("Invalid data found when processing input", "unreadable", "unreadable: ffmpeg found invalid data"),
    ("No such file or directory", "missing", "no such file"),
    ("Permission denied", "unreadable", "unreadable: permission denied"),
)


def _classify(stderr: str, fallback: str = "decode") -> tuple[str, str]:
    """(kind, one-line reason) for ffmpeg's stderr."""
    for marker, kind, reason in _FATAL:
        if marker in stderr:
            return kind, reason
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return fallback, f"ffmpeg failed: {lines[-1] if lines else 'no message'}"


def _check_exists(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"no such file: {p}", "missing", p)
    return p


# ------------------------------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a container. Durations in seconds, fps in frames per second, sample rate in Hz."""

    index: int
    kind: str  # "video" | "audio" | "subtitle" | "data" | "attachment"
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    channel_layout: str | None = None
    duration: float | None = None  # from the packet scan; None when not scanned
    packets: int | None = None
    pix_fmt: str | None = None  # video: ffmpeg's pixel format, e.g. "yuv420p"
    color_tags: tuple[str, ...] = ()  # video: its annotations, e.g. ("tv", "bt709", "progressive")


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe` found. ``duration`` is the first video stream's duration (s) when known, else the
    container's; ``container_duration`` is what the container header says."""

    path: str
    format_name: str
    container_duration: float | None
    streams: tuple[StreamInfo, ...]

    def _first(self, kind: str) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == kind), None)

    @property
    def video(self) -> StreamInfo | None:
        return self._first("video")

    @property
    def audio(self) -> StreamInfo | None:
        return self._first("audio")

    @property
    def has_video(self) -> bool:
        return self.video is not None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    @property
    def width(self) -> int | None:
        return self.video.width if self.video else None

    @property
    def height(self) -> int | None:
        return self.video.height if self.video else None

    @property
    def fps(self) -> float | None:
        return self.video.fps if self.video else None

    @property
    def sample_rate(self) -> int | None:
        return self.audio.sample_rate if self.audio else None

    @property
    def channels(self) -> int | None:
        return self.audio.channels if self.audio else None

    @property
    def video_duration(self) -> float | None:
        return self.video.duration if self.video else None

    @property
    def audio_duration(self) -> float | None:
        return self.audio.duration if self.audio else None

    @property
    def duration(self) -> float:
        d = self.video_duration if self.video_duration is not None else self.container_duration
        return float(d or 0.0)


#: Channel counts of ffmpeg's named layouts (``ffmpeg -layouts``).
_LAYOUT_CHANNELS = {
    "mono": 1,
    "stereo": 2,
    "downmix": 2,
    "2.1": 3,
    "3.0": 3,
    "3.0(back)": 3,
    "4.0": 4,
    "quad": 4,
    "quad(side)": 4,
    "3.1": 4,
    "5.0": 5,
    "5.0(side)": 5,
    "4.1": 5,
    "5.1": 6,
    "5.1(side)": 6,
    "6.0": 6,
    "6.0(front)": 6,
    "3.1.2": 6,
    "hexagonal": 6,
    "6.1": 7,
    "6.1(back)": 7,
    "6.1(front)": 7,
    "7.0": 7,
    "7.0(front)": 7,
    "7.1": 8,
    "7.1(wide)": 8,
    "7.1(wide-side)": 8,
    "5.1.2": 8,
    "octagonal": 8,
    "cube": 8,
    "5.1.4": 10,
    "7.1.2": 10,
    "7.1.4": 12,
    "7.2.3": 12,
    "9.1.4": 14,
    "hexadecagonal": 16,
    "22.2": 24,
    "binaural": 2,
}

_STREAM_RE = re.compile(r"^\s*Stream #\d+:(\d+)[^:]*: (Video|Audio|Subtitle|Data|Attachment): ([A-Za-z0-9_]+)(.*)$")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_INPUT_RE = re.compile(r"^Input #0, ([^ ]+), from")


def _channels_from_layout(layout: str) -> int | None:
    layout = layout.strip()
    m = re.match(r"^(\d+) channels", layout)
    if m:
        return int(m.group(1))
    m = re.match(r"^ambisonic (\d+)", layout)
    if m:
        n = (int(m.group(1)) + 1) ** 2
        extra = re.search(r"\+(\d+)", layout)
        return n + (int(extra.group(1)) if extra else 0)
    return _LAYOUT_CHANNELS.get(layout.split("(")[0] if layout not in _LAYOUT_CHANNELS else layout)


def _parse_rate(text: str) -> float | None:
    t = text.strip()
    mult = 1000.0 if t.endswith("k") else 1.0
    try:
        return float(t.rstrip("k")) * mult
    except ValueError:
        return None


def _parse_stream(index: int, kind: str, codec: str, rest: str) -> StreamInfo:
    fields = [f.strip() for f in re.sub(r"\([^()]*\)", lambda m: m.group(0).replace(",", ";"), rest).split(",")]
    if kind == "video":
        w = h = None
        fps = tbr = None
        pix_fmt, tags = None, ()
        for f in fields[1:3]:  # the pixel format follows the codec's description: "yuv420p(tv; bt709; progressive)"
            m = re.match(r"^([a-z0-9_]+)(?:\((.*)\))?$", f)
            if m and pix_fmt is None and any(c in m.group(1) for c in ("yuv", "rgb", "gbr", "nv", "gray")):
                pix_fmt = m.group(1)
                tags = tuple(t.strip() for t in (m.group(2) or "").split(";") if t.strip())
        for f in fields:
            m = re.match(r"^(\d+)x(\d+)\b", f)
            if m and w is None:
                w, h = int(m.group(1)), int(m.group(2))
            if f.endswith(" fps"):
                fps = _parse_rate(f[:-4])
            if f.endswith(" tbr"):
                tbr = _parse_rate(f[:-4])
        return StreamInfo(index, "video", codec, width=w, height=h, fps=fps or tbr, pix_fmt=pix_fmt,
                          color_tags=tags)
    if kind == "audio":
        sr = layout = None
        for i, f in enumerate(fields):
            m = re.match(r"^(\d+) Hz$", f)
            if m:
                sr = int(m.group(1))
                layout = fields[i + 1].replace(";", ",") if i + 1 < len(fields) else None
                break
        return StreamInfo(
            index,
            "audio",
            codec,
            sample_rate=sr,
            channel_layout=layout,
            channels=_channels_from_layout(layout) if layout else None,
        )
    return StreamInfo(index, kind.lower(), codec)


def _parse_header(stderr: str) -> tuple[str, float | None, list[StreamInfo]]:
    fmt, dur, streams = "", None, []
    for line in stderr.splitlines():
        if line.startswith(("Output #", "Stream mapping:")):
            break  # only the input's description counts
        m = _INPUT_RE.match(line)
        if m:
            fmt = m.group(1).rstrip(",")
            continue
        m = _DURATION_RE.search(line)
        if m and dur is None:
            dur = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            continue
        m = _STREAM_RE.match(line)
        if m:
            streams.append(_parse_stream(int(m.group(1)), m.group(2).lower(), m.group(3), m.group(4)))
    return fmt, dur, streams


def _parse_packets(text: str) -> dict[int, tuple[float, int]]:
    """Per-stream (duration s, packets) from ``-f framecrc`` output (``stream, dts, pts, duration, …``)."""
    tb: dict[int, Fraction] = {}
    lo: dict[int, int] = {}
    hi: dict[int, int] = {}
    count: dict[int, int] = {}
    for line in text.splitlines():
        if line.startswith("#tb "):
            k, v = line[4:].split(":")
            num, den = v.strip().split("/")
            tb[int(k)] = Fraction(int(num), int(den))
        elif line and not line.startswith("#"):
            parts = line.split(",")
            try:
                s, pts, dur = int(parts[0]), int(parts[2]), int(parts[3])
            except (IndexError, ValueError):
                continue
            lo[s] = min(lo.get(s, pts), pts)
            hi[s] = max(hi.get(s, pts + dur), pts + dur)
            count[s] = count.get(s, 0) + 1
    return {s: (float((hi[s] - max(lo[s], 0)) * tb.get(s, Fraction(0))), count[s]) for s in count}


def _wav_channels(path: Path) -> int | None:
    """Channel count of the first audio stream, from the header of one decoded frame written as WAV."""
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-frames:a",
        "1",
        "-f",
        "wav",
        "-acodec",
        "pcm_f32le",
        "pipe:1",
    ]
    out = subprocess.run(cmd, capture_output=True)
    try:
        return _parse_wav(out.stdout)[0]
    except MediaError:
        return None


def probe(path: str | os.PathLike, scan_packets: bool = True) -> ProbeResult:
    """Describe a media file: container, streams (codec, W×H, fps, Hz, channels) and stream durations.

    One ffmpeg process reads the header and, with ``scan_packets`` (default), copies every packet to a
    checksum muxer to measure each stream's duration (seconds) and detect truncation — no decoding.
    Raises :class:`MediaError` (``missing``, ``unreadable``, ``truncated``) when the file cannot be used.
    """
    p = _check_exists(path)
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-i", str(p)]
    if scan_packets:
        cmd += ["-map", "0", "-c", "copy", "-f", "framecrc", "pipe:1"]
    out = subprocess.run(cmd, capture_output=True)
    _raise_if_killed(out.returncode, p)
    stderr = out.stderr.decode("utf-8", "replace")
    fmt, dur, streams = _parse_header(stderr)
    if not fmt or not streams:
        kind, reason = _classify(stderr, "unreadable")
        if kind == "decode":
            kind, reason = "unreadable", f"unreadable: {reason}"
        raise MediaError(reason, kind, p)
    if scan_packets:
        if "partial file" in stderr:
            raise MediaError(_FATAL[0][2], "truncated", p)
        if out.returncode == 0:
            packets = _parse_packets(out.stdout.decode("ascii", "replace"))
            streams = [
                StreamInfo(**{**s.__dict__, "duration": packets[s.index][0], "packets": packets[s.index][1]})
                if s.index in packets
                else s
                for s in streams
            ]
    streams = [
        StreamInfo(**{**s.__dict__, "channels": _wav_channels(p)}) if s.kind == "audio" and s.channels is None else s
        for s in streams
    ]
    return ProbeResult(str(p), fmt, dur, tuple(streams))


# ---------------------------------------------------------------------------------------------- reading


def find_audio_source(video_path: str | os.PathLike) -> Path:
    """The file holding a video's spatial audio: a same-stem sidecar (``.wav`` then ``.flac``) if one exists
    next to the video, else the video itself when it has an audio stream.

    A sidecar wins over the container's own track (containers beside a sidecar usually hold a stereo
    preview). Raises :class:`MediaError` (``no_audio``) when there is neither.
    """
    p = _check_exists(video_path)
    sidecar = sidecar_audio(p)
    if sidecar is not None:
        return sidecar
    if probe(p, scan_packets=False).has_audio:
        return p
    raise MediaError(
        f"no audio: the container has no audio stream and there is no sidecar {p.stem}.wav/.flac", "no_audio", p
    )


def sidecar_audio(video_path: str | os.PathLike) -> Path | None:
    """The same-stem sidecar audio file (``.wav`` then ``.flac``, either case) next to a video, if any."""
    p = Path(video_path)
    for ext in SIDECAR_EXTS:
        for cand in (p.with_suffix(ext), p.with_suffix(ext.upper())):
            if cand.is_file() and cand != p:
                return cand
    return None


class _StderrCollector(threading.Thread):
    """Drain a pipe in the background so ffmpeg never blocks on a full stderr.

    An exception while draining is kept in ``error`` (for the consumer to raise) and ``on_error`` is called —
    :func:`_frame_generator` kills ffmpeg there, which could otherwise block forever on the undrained pipe."""

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


def select_expression(indices: Sequence[int]) -> str:
    """An ffmpeg ``select`` expression true exactly for the frame numbers ``indices`` (after the fps filter).

    Runs of consecutive indices become ranges; when the ranges repeat with a fixed length and period (the
    usual stride plan) a single periodic term is used, so the expression stays short for hour-long videos.
    """
    idx = sorted(set(int(i) for i in indices))
    if not idx or idx[0] < 0:
        raise ValueError("select_expression needs non-negative frame indices")
    runs: list[list[int]] = [[idx[0], idx[0]]]
    for i in idx[1:]:
        if i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    lengths = {b - a for a, b in runs}
    periods = {runs[k + 1][0] - runs[k][0] for k in range(len(runs) - 1)}
    if len(runs) > 2 and len(lengths) == 1 and len(periods) == 1:
        a0, last, L, P = runs[0][0], runs[-1][1], lengths.pop() + 1, periods.pop()
        return f"between(n,{a0},{last})*lt(mod(n-{a0},{P}),{L})"
    return "+".join(f"between(n,{a},{b})" for a, b in runs)


def iter_video_frames_at(
    path: str | os.PathLike, fps: float, indices: Sequence[int], size: tuple[int, int] | None = None,
    threads: int | None = None, pix_fmt: str = "rgb24",
) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """Like :func:`iter_video_frames`, but yield only frames ``indices`` (at ``fps``) as ``(index, frame)``.

    ffmpeg still decodes every frame, but drops the unneeded ones before the RGB conversion and the pipe,
    which is most of the cost at 360° resolutions. Pairs come in increasing index order; indices past the
    end of the video are simply not yielded. ``pix_fmt="yuv420p"`` yields :class:`avsa_data.crops_yuv.YuvFrame`
    objects instead (the decoder's planes, half the pipe bytes, no colour conversion by ffmpeg).
    """
    wanted = sorted(set(int(i) for i in indices))
    frames = iter_video_frames(path, fps, size, threads, select=select_expression(wanted) if wanted else None,
                               pix_fmt=pix_fmt)
    return zip(wanted, frames)


def iter_video_frames(
    path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None, threads: int | None = None,
    select: str | None = None, pix_fmt: str = "rgb24",
) -> Iterator[NDArray[np.uint8]]:
    """Decode the first video stream as RGB frames ``[H, W, 3]`` uint8, resampled to ``fps`` frames per second.

    Frame ``i`` shows time ``i / fps`` seconds. ``size`` = (W, H) rescales (area filter); ``None`` keeps the
    native size. One ffmpeg process streams all frames (never the whole video in memory). Opening problems
    raise :class:`MediaError` immediately; a file that turns out truncated raises it after the last frame.
    ``pix_fmt`` is ``rgb24`` (default) or ``yuv420p`` (frames are :class:`avsa_data.crops_yuv.YuvFrame`, in the
    stream's own colour matrix and range, which they carry).
    """
    if pix_fmt not in ("rgb24", "yuv420p"):
        raise ValueError(f"iter_video_frames: pix_fmt must be rgb24 or yuv420p, got {pix_fmt!r}")
    if fps <= 0:
        raise ValueError(f"iter_video_frames: fps must be > 0 frames/s, got {fps}")
    p = _check_exists(path)
    info = probe(p, scan_packets=False)
    if not info.has_video:
        raise MediaError("no video stream", "no_video", p)
    w, h = size if size is not None else (info.width, info.height)
    if not w or not h:
        raise MediaError("cannot tell the video's frame size", "unreadable", p)
    stream = ffmpeg.input(str(p)).video.filter("fps", fps=fps)
    if select is not None:
        stream = stream.filter("select", select)
    if size is not None:
        stream = stream.filter("scale", int(w), int(h), flags="area")
    out = stream.output("pipe:", format="rawvideo", pix_fmt=pix_fmt, **({"fps_mode": "passthrough"} if select else {}))
    gargs = ["-nostdin", "-hide_banner", "-nostats", "-v", "error"]
    if threads is not None:
        gargs += ["-threads", str(int(threads))]
    cmd = out.global_args(*gargs).compile(cmd=ffmpeg_exe())
    if pix_fmt == "yuv420p":
        from .crops_yuv import ColorSpace, YuvFrame

        space = ColorSpace.from_tags(info.video.color_tags if info.video else ())
        nbytes = int(w) * int(h) + 2 * ((int(w) + 1) // 2) * ((int(h) + 1) // 2)
        return _frame_generator(cmd, p, int(w), int(h), nbytes,
                                lambda buf: YuvFrame.from_buffer(buf, int(w), int(h), space))
    return _frame_generator(cmd, p, int(w), int(h))


def _read_exact(stream, n: int) -> bytearray | None:
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


def _frame_generator(cmd: list[str], p: Path, w: int, h: int, nbytes: int | None = None,
                     shape: Callable[[bytearray], object] | None = None) -> Iterator[NDArray[np.uint8]]:
    """Frames from an ffmpeg rawvideo pipe. A reader thread keeps up to ``READ_AHEAD_FRAMES`` frames in hand so
    that ffmpeg decodes the next frames while the caller works on this one (a 64 kB pipe would otherwise
    make decoding and processing take turns).

    Any exception in a helper thread (e.g. ``MemoryError`` allocating a frame) is raised to the caller as is,
    after ffmpeg is killed and reaped; so is any exception of the caller (or closing the generator early)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = _StderrCollector(proc.stderr, on_error=proc.kill)
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
                buf = _read_exact(proc.stdout, nbytes)
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
        _raise_if_killed(rc, p)
        if rc != 0 or "partial file" in err.text:
            kind, reason = _classify(err.text)
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


def _parse_wav(data: bytes) -> tuple[int, int, NDArray[np.float32]]:
    """(channels, sample rate Hz, samples [n, C] float32) of a streamed 32-bit float WAV."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise MediaError("ffmpeg produced no audio", "decode")
    pos, channels, sr = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            sr = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            if bits != 32:
                raise MediaError(f"expected 32-bit float samples from ffmpeg, got {bits}-bit", "decode")
        elif cid == b"data":
            if not channels:
                break
            payload = data[body:] if size in (0, 0xFFFFFFFF) or body + size > len(data) else data[body : body + size]
            n = len(payload) // (4 * channels)
            return channels, sr, np.frombuffer(payload[: n * 4 * channels], dtype="<f4").reshape(n, channels)
        pos = body + size + (size & 1)
    raise MediaError("ffmpeg produced a WAV stream without audio data", "decode")


def read_audio(path: str | os.PathLike, sr: int) -> NDArray[np.float32]:
    """Decode the first audio stream of ``path`` (container or sidecar) to float32 ``[C, n_samples]`` at ``sr`` Hz.

    ffmpeg resamples; channels keep the file's order (no down/up-mixing). Raises :class:`MediaError`
    (``missing``, ``unreadable``, ``truncated``, ``no_audio``) on bad input.
    """
    if int(sr) <= 0:
        raise ValueError(f"read_audio: sample rate must be > 0 Hz, got {sr}")
    p = _check_exists(path)
    cmd = (
        ffmpeg.input(str(p))["a:0"]
        .output("pipe:", format="wav", acodec="pcm_f32le", ar=int(sr))
        .global_args("-nostdin", "-hide_banner", "-nostats", "-v", "error")
        .compile(cmd=ffmpeg_exe())
    )
    out = subprocess.run(cmd, capture_output=True)
    _raise_if_killed(out.returncode, p)
    stderr = out.stderr.decode("utf-8", "replace")
    if out.returncode != 0:
        if re.search(r"matches no streams|does not contain any stream|Output file does not contain", stderr):
            raise MediaError("no audio stream", "no_audio", p)
        kind, reason = _classify(stderr)
        raise MediaError(reason, kind, p)
    if "partial file" in stderr:
        raise MediaError(_FATAL[0][2], "truncated", p)
    channels, got_sr, samples = _parse_wav(out.stdout)
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


def check_durations(video_s: float, audio_s: float, tol: float) -> None:
    """Raise :class:`MediaError` (``duration``) if audio and video durations (seconds) differ by more than ``tol`` s."""
    if tol < 0:
        raise ValueError(f"check_durations: tolerance must be >= 0 s, got {tol}")
    if not abs(float(video_s) - float(audio_s)) <= tol:
        raise MediaError(
            f"duration mismatch: audio lasts {audio_s:.3f} s but video {video_s:.3f} s (tolerance {tol} s)",
            "duration",
        )


# ---------------------------------------------------------------------------------------------- writing


def _muxer(path: Path) -> str:
    try:
        return _MUXERS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"unsupported output extension {path.suffix!r}; expected one of {sorted(_MUXERS)}") from None


def _audio_array(audio: ArrayLike, name: str = "audio") -> NDArray[np.float32]:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[0] > 64 or a.shape[1] < 1:
        raise ValueError(f"{name}: expected audio shaped [channels, n_samples], got shape {tuple(a.shape)}")
    return a


def _raw_audio_args(channels: int, sr: int) -> list[str]:
    return ["-f", "f32le", "-ar", str(int(sr)), "-ac", str(int(channels))]


def _audio_codec_args(codec: str, channels: int, bitrate: str | None) -> list[str]:
    if codec not in AUDIO_CODECS:
        raise ValueError(f"audio codec must be one of {sorted(AUDIO_CODECS)}, got {codec!r}")
    args = ["-c:a", AUDIO_CODECS[codec]]
    if codec == "aac":
        args += ["-b:a", bitrate or f"{64 * channels}k"]
    return args


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
    64 kb/s per channel). Deterministic bytes; the file appears atomically. Returns the path.
    """
    out = Path(path)
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise ValueError(f"write_video: size must be positive even (W, H) for yuv420p, got {size}")
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "pipe:0",
    ]
    tmp_audio = None
    if audio is not None:
        a = _audio_array(audio)
        if not sr:
            raise ValueError("write_video: a sample rate (Hz) is needed with audio")
        fd, tmp_audio = tempfile.mkstemp(suffix=".f32", dir=out.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(np.ascontiguousarray(a.T, dtype="<f4").tobytes())
        cmd += _raw_audio_args(a.shape[0], sr) + ["-i", tmp_audio, "-map", "0:v", "-map", "1:a"]
        cmd += _audio_codec_args(audio_codec, a.shape[0], audio_bitrate)
    else:
        cmd += ["-map", "0:v"]
    cmd += [
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(int(crf)),
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(int(gop or max(1, round(fps)))),
        "-threads",
        "1",
    ]
    cmd += _BITEXACT
    if out.suffix.lower() in (".mp4", ".mov"):
        cmd += ["-movflags", "+faststart"]
    tmp = tmp_path(out)
    cmd += ["-f", _muxer(out), str(tmp)]
    try:
        with tempfile.TemporaryFile() as errf:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf)
            try:
                for frame in frames:
                    fr = np.asarray(frame)
                    if fr.shape != (h, w, 3) or fr.dtype != np.uint8:
                        raise ValueError(f"write_video: frames must be uint8 [{h}, {w}, 3], got {fr.dtype} {fr.shape}")
                    proc.stdin.write(np.ascontiguousarray(fr).tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            rc = proc.wait()
            if rc != 0:
                errf.seek(0)
                raise MediaError(_classify(errf.read().decode("utf-8", "replace"), "encode")[1], "encode", out)
        os.replace(tmp, out)
    finally:
        for t in (tmp, tmp_audio):
            if t is not None and os.path.exists(t):
                os.remove(t)
    return out


def write_audio(path: str | os.PathLike, audio: ArrayLike, sr: int) -> Path:
    """Write ``audio`` ``[C, n_samples]`` float in [-1, 1] at ``sr`` Hz as ``.wav`` (PCM s16le) or ``.flac``
    (16-bit), channels in the given order. Deterministic bytes; the file appears atomically."""
    out = Path(path)
    a = _audio_array(audio)
    muxer = _muxer(out)
    if muxer not in ("wav", "flac"):
        raise ValueError(f"write_audio: expected a .wav or .flac path, got {out.name!r}")
    tmp = tmp_path(out)
    codec = ["-c:a", "pcm_s16le"] if muxer == "wav" else ["-c:a", "flac", "-sample_fmt", "s16"]
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-v",
        "error",
        "-y",
        *_raw_audio_args(a.shape[0], sr),
        "-i",
        "pipe:0",
        *codec,
        *_BITEXACT,
        "-f",
        muxer,
        str(tmp),
    ]
    try:
        res = subprocess.run(cmd, input=np.ascontiguousarray(a.T, dtype="<f4").tobytes(), capture_output=True)
        if res.returncode != 0:
            raise MediaError(_classify(res.stderr.decode("utf-8", "replace"), "encode")[1], "encode", out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            os.remove(tmp)
    return out
