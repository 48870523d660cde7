"""The 32-bit float WAV stream that ffmpeg writes to a pipe (:func:`avsa_data.media.commands.decode_audio`)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .errors import MediaError


def parse_wav(data: bytes) -> tuple[int, int, NDArray[np.float32]]:
    """(channels, sample rate Hz, samples [n, C] float32) of a streamed 32-bit float WAV.

    A streamed header may give the data chunk's size as 0 or 0xFFFFFFFF (unknown when it was written): the
    samples then run to the end of ``data``; a partial last frame is dropped."""
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
