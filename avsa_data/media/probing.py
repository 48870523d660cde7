"""What a media file holds, read from ffmpeg's own description (imageio-ffmpeg ships no ffprobe).

:func:`probe` runs ``ffmpeg -i`` (the header: container, streams, codecs, W×H, fps, Hz, channel layout) plus,
by default, one stream-copy packet scan that measures every stream's duration and detects truncation without
decoding. :func:`find_audio_source` locates a video's spatial audio (a same-stem sidecar, else the container's
track); :func:`check_durations` compares audio and video lengths.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from . import commands
from .errors import MediaError, check_exists, check_truncated, classify, raise_if_killed
from .wav import parse_wav

#: Sidecar audio extensions searched by :func:`find_audio_source`, in order of preference.
SIDECAR_EXTS = (".wav", ".flac")


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


def _field_of(kind: str, field: str, doc: str) -> property:
    """A :class:`ProbeResult` property: ``field`` of the first ``kind`` stream, ``None`` without one."""
    return property(lambda self: getattr(self._first(kind), field, None), doc=doc)


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
        """The first video stream."""
        return self._first("video")

    @property
    def audio(self) -> StreamInfo | None:
        """The first audio stream."""
        return self._first("audio")

    @property
    def has_video(self) -> bool:
        return self.video is not None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    width = _field_of("video", "width", "Frame width of the first video stream (pixels).")
    height = _field_of("video", "height", "Frame height of the first video stream (pixels).")
    fps = _field_of("video", "fps", "Frame rate of the first video stream (frames per second).")
    video_duration = _field_of("video", "duration", "Duration of the first video stream (s), from the packet scan.")
    sample_rate = _field_of("audio", "sample_rate", "Sample rate of the first audio stream (Hz).")
    channels = _field_of("audio", "channels", "Channel count of the first audio stream.")
    audio_duration = _field_of("audio", "duration", "Duration of the first audio stream (s), from the packet scan.")

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
    out = subprocess.run(commands.decode_audio(str(path), frames=1), capture_output=True)
    try:
        return parse_wav(out.stdout)[0]
    except MediaError:
        return None


def probe(path: str | os.PathLike, scan_packets: bool = True) -> ProbeResult:
    """Describe a media file: container, streams (codec, W×H, fps, Hz, channels) and stream durations.

    One ffmpeg process reads the header and, with ``scan_packets`` (default), copies every packet to a
    checksum muxer to measure each stream's duration (seconds) and detect truncation — no decoding.
    Raises :class:`MediaError` (``missing``, ``unreadable``, ``truncated``) when the file cannot be used.
    """
    p = check_exists(path)
    out = subprocess.run(commands.probe(str(p), scan_packets), capture_output=True)
    raise_if_killed(out.returncode, p)
    stderr = out.stderr.decode("utf-8", "replace")
    fmt, dur, streams = _parse_header(stderr)
    if not fmt or not streams:
        kind, reason = classify(stderr, "unreadable")
        if kind == "decode":
            kind, reason = "unreadable", f"unreadable: {reason}"
        raise MediaError(reason, kind, p)
    if scan_packets:
        check_truncated(stderr, p)
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


def find_audio_source(video_path: str | os.PathLike, info: ProbeResult | None = None) -> Path:
    """The file holding a video's spatial audio: a same-stem sidecar (``.wav`` then ``.flac``) if one exists
    next to the video, else the video itself when it has an audio stream.

    A sidecar wins over the container's own track (containers beside a sidecar usually hold a stereo
    preview). Raises :class:`MediaError` (``no_audio``) when there is neither. ``info``: :func:`probe`'s result
    for ``video_path`` when the caller has it already (saves an ffmpeg start).
    """
    p = check_exists(video_path)
    sidecar = sidecar_audio(p)
    if sidecar is not None:
        return sidecar
    if (info if info is not None else probe(p, scan_packets=False)).has_audio:
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


def check_durations(video_s: float, audio_s: float, tol: float) -> None:
    """Raise :class:`MediaError` (``duration``) if audio and video durations (seconds) differ by more than ``tol`` s."""
    if tol < 0:
        raise ValueError(f"check_durations: tolerance must be >= 0 s, got {tol}")
    if not abs(float(video_s) - float(audio_s)) <= tol:
        raise MediaError(
            f"duration mismatch: audio lasts {audio_s:.3f} s but video {video_s:.3f} s (tolerance {tol} s)",
            "duration",
        )
