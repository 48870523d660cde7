"""Every ffmpeg command line avsa runs, built in one place as plain argument lists.

Each builder returns ``[ffmpeg, global options, inputs…, output options…, output]`` for one job; the callers
only run them. Paths are passed as separate arguments (no shell), so no quoting is ever needed; the one
string ffmpeg parses itself, the filter graph of :func:`decode_video`, is escaped by :func:`_filter_arg`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

#: Options of every run: no terminal input, no banner, no progress line, only errors on stderr.
QUIET = ["-nostdin", "-hide_banner", "-nostats", "-v", "error"]
#: Options that make an encoder's bytes depend only on its input (no version string, no metadata).
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]
#: Output muxer by file extension.
MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".wav": "wav", ".flac": "flac"}
#: Audio codecs :func:`encode_video` can put in a container: short name → ffmpeg encoder.
AUDIO_CODECS = {"pcm": "pcm_s16le", "aac": "aac"}


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable bundled with imageio-ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# --------------------------------------------------------------------------------------------- reading


def probe(path: str, scan_packets: bool) -> list[str]:
    """Describe ``path`` on stderr (``-i``); with ``scan_packets`` also stream-copy every packet to a
    ``framecrc`` checksum list on stdout (one line per packet: stream, dts, pts, duration, …) — no decoding.
    Not quiet: the stream description *is* what :func:`avsa_data.media.probe` reads."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-i", path]
    if scan_packets:
        cmd += ["-map", "0", "-c", "copy", "-f", "framecrc", "pipe:1"]
    return cmd


def decode_audio(path: str, sr: int | None = None, frames: int | None = None) -> list[str]:
    """The first audio stream of ``path`` as a 32-bit float WAV stream on stdout, resampled to ``sr`` Hz
    (``None``: the file's rate), channels in the file's order; ``frames`` stops after that many audio frames."""
    cmd = [ffmpeg_exe(), *QUIET, "-i", path, "-map", "0:a:0"]
    if frames is not None:
        cmd += ["-frames:a", str(int(frames))]
    cmd += ["-f", "wav", "-acodec", "pcm_f32le"]
    if sr is not None:
        cmd += ["-ar", str(int(sr))]
    return cmd + ["pipe:1"]


def seek_video_frames(path: str, start: float, count: int) -> list[str]:
    """Up to ``count`` RGB24 frames of the first video stream at its native size and rate on stdout, from the
    first frame at or after ``start`` seconds (input seek; microsecond precision)."""
    return [ffmpeg_exe(), *QUIET, "-ss", f"{start:.6f}", "-i", path, "-map", "0:v:0", "-frames:v", str(int(count)),
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def _filter_arg(value: str) -> str:
    """``value`` escaped for a filter graph: ``\\ ' = :`` inside an option value, then ``\\ ' [ ] , ;`` of the
    graph (ffmpeg's two escaping levels; a ``select`` expression's commas become ``\\,``)."""
    for level in ("\\'=:", "\\'[],;"):
        for ch in level:
            value = value.replace(ch, "\\" + ch)
    return value


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


def decode_video(path: str, fps: float, size: tuple[int, int] | None, select: str | None, pix_fmt: str,
                 threads: int | None = None) -> list[str]:
    """The first video stream of ``path`` as raw ``pix_fmt`` frames on stdout: resampled to ``fps`` frames/s,
    then only the frames the ``select`` expression keeps (numbered after the fps filter, each passed through
    with its own timestamp), then scaled to ``size`` = (W, H) pixels with the area filter. ``threads`` sets the
    decoder's thread count (ffmpeg's default: one per core)."""
    chain = [f"fps=fps={_filter_arg(str(fps))}"]
    if select is not None:
        chain.append(f"select={_filter_arg(select)}")
    if size is not None:
        chain.append(f"scale={int(size[0])}:{int(size[1])}:flags=area")
    cmd = [ffmpeg_exe(), *QUIET]
    if threads is not None:
        cmd += ["-threads", str(int(threads))]  # an input option: before -i
    cmd += ["-i", path, "-filter_complex", f"[0:v]{','.join(chain)}[frames]", "-map", "[frames]",
            "-f", "rawvideo"]
    if select is not None:
        cmd += ["-fps_mode", "passthrough"]  # keep the selected frames' timestamps: no duplicates fill the gaps
    return cmd + ["-pix_fmt", pix_fmt, "pipe:1"]


# --------------------------------------------------------------------------------------------- writing


def raw_audio_input(source: str, channels: int, sr: int) -> list[str]:
    """An input of interleaved little-endian float32 samples (``pipe:0`` or a file), ``channels`` at ``sr`` Hz."""
    return ["-f", "f32le", "-ar", str(int(sr)), "-ac", str(int(channels)), "-i", source]


def audio_codec_options(codec: str, channels: int, bitrate: str | None) -> list[str]:
    """Encoder options of a container's audio track: ``codec`` ``pcm`` or ``aac`` (``bitrate``, default
    64 kb/s per channel)."""
    if codec not in AUDIO_CODECS:
        raise ValueError(f"audio codec must be one of {sorted(AUDIO_CODECS)}, got {codec!r}")
    args = ["-c:a", AUDIO_CODECS[codec]]
    if codec == "aac":
        args += ["-b:a", bitrate or f"{64 * channels}k"]
    return args


def encode_video(out: str, muxer: str, size: tuple[int, int], fps: float, crf: int, preset: str, gop: int,
                 audio_file: str | None = None, channels: int = 0, sr: int = 0, audio_codec: str = "aac",
                 audio_bitrate: str | None = None) -> list[str]:
    """RGB24 frames ``size`` = (W, H) from ``pipe:0`` at ``fps`` frames/s → H.264 yuv420p in ``out``
    (``muxer``), single-threaded and bit-exact, one keyframe every ``gop`` frames. With ``audio_file`` (raw
    float32, ``channels`` at ``sr`` Hz) a second stream is muxed in, encoded as :func:`audio_codec_options`."""
    w, h = size
    cmd = [ffmpeg_exe(), *QUIET, "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
           "-i", "pipe:0"]
    if audio_file is not None:
        cmd += [*raw_audio_input(audio_file, channels, sr), "-map", "0:v", "-map", "1:a",
                *audio_codec_options(audio_codec, channels, audio_bitrate)]
    else:
        cmd += ["-map", "0:v"]
    cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-g", str(int(gop)),
            "-threads", "1", *BITEXACT]
    if muxer in ("mp4", "mov"):
        cmd += ["-movflags", "+faststart"]  # the index first: players can start before the download ends
    return cmd + ["-f", muxer, out]


def encode_audio(out: str, muxer: str, channels: int, sr: int) -> list[str]:
    """float32 samples from ``pipe:0`` (``channels`` interleaved at ``sr`` Hz) → 16-bit ``.wav`` (PCM s16le) or
    ``.flac`` in ``out``, bit-exact."""
    codec = ["-c:a", "pcm_s16le"] if muxer == "wav" else ["-c:a", "flac", "-sample_fmt", "s16"]
    return [ffmpeg_exe(), *QUIET, "-y", *raw_audio_input("pipe:0", channels, sr), *codec, *BITEXACT,
            "-f", muxer, out]
