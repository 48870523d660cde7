"""Reading and writing 360° media with the ffmpeg binary shipped by ``imageio-ffmpeg``.

One module per job; every name below is importable from ``avsa_data.media`` directly:

* :mod:`.probing` — :func:`probe` (streams, codecs, size, fps, sample rate, channel count and per-stream
  durations, parsed from ``ffmpeg -i`` plus one stream-copy packet scan: imageio-ffmpeg ships no ffprobe),
  :func:`find_audio_source` (the container itself or a same-stem sidecar ``.wav``/``.flac``),
  :func:`check_durations`.
* :mod:`.decoding` — :func:`iter_video_frames` / :func:`iter_video_frames_at` (equirect frames ``[H, W, 3]``
  uint8 RGB at a fixed fps, streamed through one ffmpeg process), :func:`read_audio` / :func:`read_foa` (audio
  ``[C, n_samples]`` float32 resampled by ffmpeg; :func:`read_foa` insists on 4 channels and returns ambiX:
  ACN W, Y, Z, X; SN3D).
* :mod:`.encoding` — :func:`write_video` and :func:`write_audio`, used by the synthetic generator:
  bit-exact, atomic.
* :mod:`.commands` — every ffmpeg command line, built in one place; :mod:`.frame_pipe` — the decoding process
  and its reader threads; :mod:`.wav` — ffmpeg's WAV output; :mod:`.errors` — the errors below.

Every failure on bad input raises :class:`MediaError` with a one-line reason and a short ``kind`` code; ffmpeg
killed by a signal raises :class:`FfmpegKilled` (an environment problem, not bad input).
"""

from .commands import AUDIO_CODECS, ffmpeg_exe, select_expression
from .decoding import AMBI_FORMATS, iter_video_frames, iter_video_frames_at, read_audio, read_foa
from .encoding import write_audio, write_video
from .errors import FfmpegKilled, MediaError
from .frame_pipe import READ_AHEAD_FRAMES
from .probing import (
    SIDECAR_EXTS,
    ProbeResult,
    StreamInfo,
    check_durations,
    find_audio_source,
    probe,
    sidecar_audio,
)

__all__ = [
    "AMBI_FORMATS",
    "AUDIO_CODECS",
    "READ_AHEAD_FRAMES",
    "SIDECAR_EXTS",
    "FfmpegKilled",
    "MediaError",
    "ProbeResult",
    "StreamInfo",
    "check_durations",
    "ffmpeg_exe",
    "find_audio_source",
    "iter_video_frames",
    "iter_video_frames_at",
    "probe",
    "read_audio",
    "read_foa",
    "select_expression",
    "sidecar_audio",
    "write_audio",
    "write_video",
]
